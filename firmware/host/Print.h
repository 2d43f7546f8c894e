// Host shim: Arduino's Print (the common subset of the ESP8266 and SAMD cores).
#ifndef HOST_PRINT_H
#define HOST_PRINT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "Printable.h"

#define DEC 10
#define HEX 16
#define OCT 8
#define BIN 2

class Print {
public:
  Print()
    : writeError_(0) {}
  virtual ~Print() {}

  virtual size_t write(uint8_t) = 0;
  virtual size_t write(const uint8_t *buffer, size_t size);
  size_t write(const char *str) {
    return str ? write((const uint8_t *)str, strlen(str)) : 0;
  }
  size_t write(const char *buffer, size_t size) {
    return write((const uint8_t *)buffer, size);
  }
  virtual void flush() {}

  size_t print(const char str[]);
  size_t print(char c);
  size_t print(unsigned char n, int base = DEC);
  size_t print(int n, int base = DEC);
  size_t print(unsigned int n, int base = DEC);
  size_t print(long n, int base = DEC);
  size_t print(unsigned long n, int base = DEC);
  size_t print(double n, int digits = 2);
  size_t print(const Printable &p);

  size_t println();
  size_t println(const char str[]);
  size_t println(char c);
  size_t println(unsigned char n, int base = DEC);
  size_t println(int n, int base = DEC);
  size_t println(unsigned int n, int base = DEC);
  size_t println(long n, int base = DEC);
  size_t println(unsigned long n, int base = DEC);
  size_t println(double n, int digits = 2);
  size_t println(const Printable &p);

  int getWriteError() {
    return writeError_;
  }
  void clearWriteError() {
    writeError_ = 0;
  }

protected:
  void setWriteError(int err = 1) {
    writeError_ = err;
  }

private:
  size_t printNumber(unsigned long n, int base, bool negative);
  int writeError_;
};

#endif
