#include "SensorlogLog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

namespace sensorlog {

namespace {

// "[   12.345] " into line; returns its length.
size_t prefix(char *line, size_t size) {
  const unsigned long now = millis();
  const int n = snprintf(line, size, "[%6lu.%03lu] ", now / 1000, now % 1000);
  if (n < 0) return 0;
  return (size_t)n < size ? (size_t)n : size - 1;
}

}  // namespace

void logf(Print &out, const char *format, ...) {
  char line[kMaxLogLine + 1];
  const size_t n = prefix(line, sizeof(line));
  va_list args;
  va_start(args, format);
  vsnprintf(line + n, sizeof(line) - n, format, args);
  va_end(args);
  out.println(line);
}

void copyTextOut(char *out, size_t size, const char *text) {
  if (size == 0) return;
#if defined(ESP8266)
  strncpy_P(out, text, size - 1);
#else
  strncpy(out, text, size - 1);
#endif
  out[size - 1] = '\0';
}

#if defined(ESP8266)
void logfP(Print &out, const char *format, ...) {
  char line[kMaxLogLine + 1];
  const size_t n = prefix(line, sizeof(line));
  va_list args;
  va_start(args, format);
  vsnprintf_P(line + n, sizeof(line) - n, format, args);
  va_end(args);
  out.println(line);
}
#endif

}  // namespace sensorlog
