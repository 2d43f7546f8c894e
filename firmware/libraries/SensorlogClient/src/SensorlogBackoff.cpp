#include "SensorlogBackoff.h"

namespace sensorlog {

Backoff::Backoff(uint32_t minMs, uint32_t maxMs)
  : minMs_(minMs ? minMs : 1), maxMs_(maxMs < minMs ? minMs : maxMs), currentMs_(minMs_), failures_(0) {}

uint32_t Backoff::next(uint32_t random) {
  const uint32_t d = currentMs_;
  const uint32_t half = d / 2;
  const uint32_t delay = half + random % (d - half + 1);
  currentMs_ = (d > maxMs_ / 2) ? maxMs_ : d * 2;
  if (failures_ < 0xFFFF) failures_++;
  return delay;
}

void Backoff::reset() {
  currentMs_ = minMs_;
  failures_ = 0;
}

uint32_t Jitter::next() {
  uint32_t x = state_;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  state_ = x;
  return x;
}

}  // namespace sensorlog
