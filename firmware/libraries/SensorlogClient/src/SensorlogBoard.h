// Small helpers both sketches need around the link: the device name, a wrap-safe
// deadline test, and an uptime that survives millis() wrapping every 49.7 days.
#ifndef SENSORLOG_BOARD_H
#define SENSORLOG_BOARD_H

#include <Arduino.h>
#include <stddef.h>
#include <stdint.h>

namespace sensorlog {

// true once now has reached deadline, across the millis() wrap-around (for
// deadlines less than 24.8 days ahead).
inline bool reached(uint32_t now, uint32_t deadline) {
  return (int32_t)(now - deadline) >= 0;
}

// The device name of the greeting: `configured` if not empty, with every
// character other than A-Z a-z 0-9 _ - . replaced by '-' (a space would end the
// name in "HELLO <device> ..."), else "<prefix>-<last three MAC bytes in hex>".
void makeDeviceName(char *out, size_t size, const char *configured, const char *prefix,
                    const uint8_t mac[6]);

// A host name for DHCP (WiFi.hostname()) from the device name: letters, digits
// and '-' only (RFC 952/1123: no '_' or '.', the ESP8266 core refuses them), no
// '-' first or last, at most kMaxHostnameLength characters; "sensorlog" if
// nothing is left. Lowercase, as DNS compares names without case anyway.
static const size_t kMaxHostnameLength = 32;
void makeHostname(char *out, size_t size, const char *device);

// Waits for a USB serial monitor at most timeoutMs, never forever: a headless
// Feather M0 has none and `while (!Serial) {}` would hang it for good.
template<typename SerialPort>
void waitForSerial(SerialPort &serial, uint32_t timeoutMs) {
  const uint32_t start = millis();
  while (!serial && millis() - start < timeoutMs) delay(10);
}

// Free RAM in bytes: on the ESP8266 the free heap (ESP.getFreeHeap()); on the
// SAMD21, which has no such call, the gap between the top of the heap (sbrk(0))
// and the stack pointer, what both can still grow into.
#if defined(ESP8266)
inline uint32_t freeMemory() {
  return ESP.getFreeHeap();
}
#else
uint32_t freeMemory();
#endif

// Milliseconds since boot in 64 bits; update() must run at least every 49 days
// (every loop() does).
class Uptime {
public:
  Uptime()
    : lastMs_(0), wraps_(0) {}
  void update(uint32_t nowMs);
  uint32_t seconds() const;

private:
  uint32_t lastMs_;
  uint32_t wraps_;
};

}  // namespace sensorlog

#endif
