// The serial log: one sentence per line, prefixed with the uptime in seconds.
//
//   [   12.345] Connected to 192.168.1.10:8090 in 31 ms; greeting sent.
//
// Integers only in format strings: printf's %f is missing from newlib-nano
// (SAMD core). Lines longer than kMaxLogLine characters are cut.
#ifndef SENSORLOG_LOG_H
#define SENSORLOG_LOG_H

#include <Arduino.h>

namespace sensorlog {

static const size_t kMaxLogLine = 200;

void logf(Print &out, const char *format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace sensorlog

#endif
