#include "SensorlogBootId.h"

namespace sensorlog {

void EntropyPool::add(uint32_t word) {
  uint64_t z = state_ + 0x9E3779B97F4A7C15ull + word;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  state_ = z ^ (z >> 31);
}

namespace {
uint32_t checkOf(uint32_t count) {
  return ~(count * 2654435761u) ^ kBootRecordMagic;
}
}  // namespace

uint32_t nextBootCount(const BootRecord &stored, BootRecord *next) {
  const bool valid = stored.magic == kBootRecordMagic && stored.check == checkOf(stored.count);
  uint32_t count = valid ? stored.count + 1 : 1;
  if (count == 0) count = 1;  // after 4 billion boots: the entropy carries on alone
  next->magic = kBootRecordMagic;
  next->count = count;
  next->check = checkOf(count);
  return count;
}

uint64_t bootIdFor(EntropyPool pool, uint32_t bootCount) {
  pool.add(bootCount);
  return pool.value();
}

void formatBootId(uint64_t id, char out[kBootIdLength + 1]) {
  static const char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < kBootIdLength; i++) {
    out[kBootIdLength - 1 - i] = kHex[id & 0xF];
    id >>= 4;
  }
  out[kBootIdLength] = '\0';
}

}  // namespace sensorlog
