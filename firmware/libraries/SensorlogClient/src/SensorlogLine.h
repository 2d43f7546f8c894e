// The fields of one reading as a key=value line (docs/protocol.md, format 2):
//
//   rssi=-61 a0=512 heap=41234 uptime_s=3600 backlog=0 dropped=0
//
// Keys are ASCII letters, digits and '_', starting with a letter. Values are
// numbers, so the daemon stores them with type "number". A field that does not
// fit in the buffer is left out whole (never cut in the middle) and counted in
// skipped(); a float that is not a number (a failed sensor read) is left out too.
#ifndef SENSORLOG_LINE_H
#define SENSORLOG_LINE_H

#include <stddef.h>
#include <stdint.h>

namespace sensorlog {

class LineBuilder {
public:
  // size includes the terminating NUL.
  LineBuilder(char *buffer, size_t size);

  LineBuilder &add(const char *key, long value);
  LineBuilder &addUnsigned(const char *key, unsigned long value);
  // value with a fixed number of decimals (0..6), without printf's %f, which
  // newlib-nano on the SAMD core leaves out.
  LineBuilder &addFixed(const char *key, float value, uint8_t decimals);

  const char *c_str() const {
    return buffer_;
  }
  size_t length() const {
    return length_;
  }
  // Fields left out because they did not fit or were not a number.
  uint8_t skipped() const {
    return skipped_;
  }

private:
  void append(const char *key, const char *value);

  char *buffer_;
  size_t size_;
  size_t length_;
  uint8_t skipped_;
};

}  // namespace sensorlog

#endif
