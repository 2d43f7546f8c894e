// Bounded RAM ring buffer of readings that the daemon has not acknowledged yet.
//
// The sketch owns the storage (an array sized by SENSORLOG_BUFFER_READINGS in its
// config.h), so the library needs no heap and no compile-time size. Readings stay
// in order of their sequence numbers; the oldest is dropped, and counted, only when
// a new reading arrives while the buffer is full.
#ifndef SENSORLOG_BUFFER_H
#define SENSORLOG_BUFFER_H

#include <stddef.h>
#include <stdint.h>

namespace sensorlog {

// Longest fields text of one reading (without seq= and ts=, which are added when
// the line is sent). LineBuilder never produces more.
static const size_t kMaxFieldsLength = 119;

struct Reading {
  uint32_t seq;      // 1, 2, 3, ... within one boot
  uint32_t takenMs;  // millis() when taken; sent as ts=
  uint8_t sends;     // how many times it went out (0 = never)
  char fields[kMaxFieldsLength + 1];
};

class ReadingBuffer {
public:
  ReadingBuffer(Reading *slots, size_t capacity);

  // Appends a reading. If the buffer is full the oldest reading is dropped first:
  // returns true and stores its seq in *droppedSeq.
  bool push(uint32_t seq, uint32_t takenMs, const char *fields, uint32_t *droppedSeq);

  // The i-th waiting reading, 0 being the oldest. i must be < size().
  Reading &at(size_t i);
  const Reading &at(size_t i) const;

  void popOldest();

  bool empty() const {
    return count_ == 0;
  }
  size_t size() const {
    return count_;
  }
  size_t capacity() const {
    return capacity_;
  }
  // Readings dropped because the buffer was full, since boot.
  uint32_t dropped() const {
    return dropped_;
  }

private:
  Reading *slots_;
  size_t capacity_;
  size_t head_;
  size_t count_;
  uint32_t dropped_;
};

}  // namespace sensorlog

#endif
