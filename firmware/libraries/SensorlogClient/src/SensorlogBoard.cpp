#include "SensorlogBoard.h"

#include <stdio.h>
#include <string.h>

namespace sensorlog {

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

void Uptime::update(uint32_t nowMs) {
  if (nowMs < lastMs_) wraps_++;
  lastMs_ = nowMs;
}

uint32_t Uptime::seconds() const {
  const uint64_t ms = ((uint64_t)wraps_ << 32) | lastMs_;
  return (uint32_t)(ms / 1000u);
}

}  // namespace sensorlog
