#include "SensorlogBoard.h"

#include <stdio.h>
#include <string.h>

#if defined(ARDUINO_ARCH_SAMD) && defined(__arm__)
extern "C" char *sbrk(int increment);
#endif

namespace sensorlog {

#if defined(ARDUINO_ARCH_SAMD) && defined(__arm__)
uint32_t freeMemory() {
  char top;
  return (uint32_t)(&top - sbrk(0));
}
#endif
// (Inline on the ESP8266; the host shim defines it for its simulated Feather M0.)

void makeDeviceName(char *out, size_t size, const char *configured, const char *prefix,
                    const uint8_t mac[6]) {
  if (size == 0) return;
  if (configured && configured[0] != '\0') {
    size_t i = 0;
    for (; configured[i] != '\0' && i + 1 < size; i++) {
      const char c = configured[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                      || c == '_' || c == '-' || c == '.';
      out[i] = ok ? c : '-';
    }
    out[i] = '\0';
    return;
  }
  snprintf(out, size, "%s-%02x%02x%02x", prefix, mac[3], mac[4], mac[5]);
}

void makeHostname(char *out, size_t size, const char *device) {
  if (size == 0) return;
  const size_t limit = size - 1 < kMaxHostnameLength ? size - 1 : kMaxHostnameLength;
  size_t n = 0;
  for (size_t i = 0; device && device[i] != '\0' && n < limit; i++) {
    char c = device[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!ok) c = '-';
    if (c == '-' && (n == 0 || out[n - 1] == '-')) continue;  // none first, no runs
    out[n++] = c;
  }
  while (n > 0 && out[n - 1] == '-') n--;
  if (n == 0) {
    strncpy(out, "sensorlog", size - 1);
    out[size - 1] = '\0';
    return;
  }
  out[n] = '\0';
}

void Uptime::update(uint32_t nowMs) {
  if (nowMs < lastMs_) wraps_++;
  lastMs_ = nowMs;
}

uint32_t Uptime::seconds() const {
  const uint64_t ms = ((uint64_t)wraps_ << 32) | lastMs_;
  return (uint32_t)(ms / 1000u);
}

}  // namespace sensorlog
