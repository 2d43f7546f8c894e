// Exponential backoff with jitter, for Wi-Fi joins and TCP connects.
//
// The delay doubles after every failure, from minMs up to maxMs, and each delay
// is drawn from [d/2, d] ("equal jitter") so that boards that lost the server at
// the same moment do not all come back at the same moment.
#ifndef SENSORLOG_BACKOFF_H
#define SENSORLOG_BACKOFF_H

#include <stdint.h>

namespace sensorlog {

class Backoff {
public:
  Backoff(uint32_t minMs, uint32_t maxMs);

  // The delay before the next attempt, given a random number; counts a failure.
  uint32_t next(uint32_t random);
  // After a success: the next failure waits minMs again.
  void reset();
  // Failures since the last reset.
  uint16_t failures() const {
    return failures_;
  }

private:
  uint32_t minMs_;
  uint32_t maxMs_;
  uint32_t currentMs_;
  uint16_t failures_;
};

// A small xorshift generator for jitter; not for anything secret.
class Jitter {
public:
  explicit Jitter(uint32_t seed)
    : state_(seed ? seed : 0x2545F491u) {}
  uint32_t next();

private:
  uint32_t state_;
};

}  // namespace sensorlog

#endif
