#include "SensorlogBuffer.h"

#include <string.h>

namespace sensorlog {

ReadingBuffer::ReadingBuffer(Reading *slots, size_t capacity)
  : slots_(slots), capacity_(capacity), head_(0), count_(0), dropped_(0) {}

bool ReadingBuffer::push(uint32_t seq, uint32_t takenMs, const char *fields, uint32_t *droppedSeq) {
  if (capacity_ == 0) {
    if (droppedSeq) *droppedSeq = seq;
    dropped_++;
    return true;
  }
  bool dropped = false;
  if (count_ == capacity_) {
    if (droppedSeq) *droppedSeq = slots_[head_].seq;
    popOldest();
    dropped_++;
    dropped = true;
  }
  Reading &r = slots_[(head_ + count_) % capacity_];
  r.seq = seq;
  r.takenMs = takenMs;
  r.sends = 0;
  strncpy(r.fields, fields ? fields : "", kMaxFieldsLength);
  r.fields[kMaxFieldsLength] = '\0';
  count_++;
  return dropped;
}

Reading &ReadingBuffer::at(size_t i) {
  return slots_[(head_ + i) % capacity_];
}

const Reading &ReadingBuffer::at(size_t i) const {
  return slots_[(head_ + i) % capacity_];
}

void ReadingBuffer::popOldest() {
  if (count_ == 0) return;
  head_ = (head_ + 1) % capacity_;
  count_--;
}

}  // namespace sensorlog
