// Host shim: the board's serial port is the process's standard output, written
// line by line and flushed at every newline, so a test can follow the serial
// log as it happens.
#ifndef HOST_HARDWARE_SERIAL_H
#define HOST_HARDWARE_SERIAL_H

#include "Stream.h"

class HardwareSerial : public Stream {
public:
  void begin(unsigned long baud);
  void end() {}
  // Like the ESP8266 UART (always true) and a USB CDC port once a host opened it.
  operator bool() const {
    return true;
  }

  size_t write(uint8_t c) override;
  size_t write(const uint8_t *buffer, size_t size) override;
  using Print::write;
  void flush() override;

  int available() override {
    return 0;
  }
  int read() override {
    return -1;
  }
  int peek() override {
    return -1;
  }
};

extern HardwareSerial Serial;

#endif
