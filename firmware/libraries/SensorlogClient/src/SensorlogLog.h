// The serial log: one sentence per line, prefixed with the uptime in seconds.
//
//   [   12.345] Connected to 192.168.1.10:8090 in 31 ms; greeting sent.
//
// Integers only in format strings: printf's %f is missing from newlib-nano
// (SAMD core). Lines longer than kMaxLogLine characters are cut.
//
// Write log lines with SENSORLOG_LOG(out, "format", ...): on the ESP8266 the
// format string then stays in flash (PSTR), where the core's vsnprintf_P reads
// it, because constant data (.rodata) is copied to its 80 KB of RAM otherwise;
// the other boards keep it as it is (their .rodata is in flash already). The
// host build and the Feather build check the formats against the arguments.
#ifndef SENSORLOG_LOG_H
#define SENSORLOG_LOG_H

#include <Arduino.h>

namespace sensorlog {

static const size_t kMaxLogLine = 200;

// format in RAM (or, on boards other than the ESP8266, in flash mapped as RAM).
void logf(Print &out, const char *format, ...) __attribute__((format(printf, 2, 3)));

// Other constant text the same way: SENSORLOG_TEXT("...") is a string in flash on
// the ESP8266, to be read with copyTextOut() (never handed to %s directly: flash
// there can only be read in 32-bit words); SENSORLOG_SNPRINTF(buffer, size,
// "format", ...) is snprintf with its format in flash.
#if defined(ESP8266)
// format in flash (PSTR).
void logfP(Print &out, const char *format, ...) __attribute__((format(printf, 2, 3)));
#define SENSORLOG_LOG(out, format, ...) ::sensorlog::logfP(out, PSTR(format), ##__VA_ARGS__)
#define SENSORLOG_TEXT(text) PSTR(text)
#define SENSORLOG_SNPRINTF(buffer, size, format, ...) snprintf_P(buffer, size, PSTR(format), ##__VA_ARGS__)
#else
#define SENSORLOG_LOG(out, format, ...) ::sensorlog::logf(out, format, ##__VA_ARGS__)
#define SENSORLOG_TEXT(text) (text)
#define SENSORLOG_SNPRINTF(buffer, size, format, ...) snprintf(buffer, size, format, ##__VA_ARGS__)
#endif

// Copies a SENSORLOG_TEXT (at most size - 1 characters) into a RAM buffer.
void copyTextOut(char *out, size_t size, const char *text);

}  // namespace sensorlog

#endif
