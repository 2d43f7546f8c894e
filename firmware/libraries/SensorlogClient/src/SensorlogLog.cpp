#include "SensorlogLog.h"

#include <stdarg.h>
#include <stdio.h>

namespace sensorlog {

void logf(Print &out, const char *format, ...) {
  char line[kMaxLogLine + 1];
  const unsigned long now = millis();
  int n = snprintf(line, sizeof(line), "[%6lu.%03lu] ", now / 1000, now % 1000);
  if (n < 0) n = 0;
  if ((size_t)n < sizeof(line)) {
    va_list args;
    va_start(args, format);
    vsnprintf(line + n, sizeof(line) - (size_t)n, format, args);
    va_end(args);
  }
  out.println(line);
}

}  // namespace sensorlog
