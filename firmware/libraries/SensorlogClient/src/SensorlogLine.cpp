#include "SensorlogLine.h"

#include <stdio.h>
#include <string.h>

namespace sensorlog {

LineBuilder::LineBuilder(char *buffer, size_t size)
  : buffer_(buffer), size_(size), length_(0), skipped_(0) {
  if (size_ > 0) buffer_[0] = '\0';
}

LineBuilder &LineBuilder::add(const char *key, long value) {
  char text[24];
  snprintf(text, sizeof(text), "%ld", value);
  append(key, text);
  return *this;
}

LineBuilder &LineBuilder::addUnsigned(const char *key, unsigned long value) {
  char text[24];
  snprintf(text, sizeof(text), "%lu", value);
  append(key, text);
  return *this;
}

LineBuilder &LineBuilder::addFixed(const char *key, float value, uint8_t decimals) {
  // NaN compares unequal to itself; infinity minus itself is NaN.
  if (value != value || (value - value) != (value - value)) {
    skipped_++;
    return *this;
  }
  if (decimals > 6) decimals = 6;
  unsigned long scale = 1;
  for (uint8_t i = 0; i < decimals; i++) scale *= 10;
  const bool negative = value < 0;
  const float magnitude = negative ? -value : value;
  if (magnitude >= 2.0e9f / scale) {  // would not fit in an unsigned long
    skipped_++;
    return *this;
  }
  const unsigned long scaled = (unsigned long)(magnitude * scale + 0.5f);
  const unsigned long whole = scaled / scale;
  const unsigned long frac = scaled % scale;
  char text[24];
  if (decimals == 0) {
    snprintf(text, sizeof(text), "%s%lu", negative && scaled ? "-" : "", whole);
  } else {
    snprintf(text, sizeof(text), "%s%lu.%0*lu", negative && scaled ? "-" : "", whole, (int)decimals, frac);
  }
  append(key, text);
  return *this;
}

void LineBuilder::append(const char *key, const char *value) {
  const size_t keyLen = strlen(key);
  const size_t valueLen = strlen(value);
  const size_t sep = length_ > 0 ? 1 : 0;
  const size_t need = sep + keyLen + 1 + valueLen;
  if (size_ == 0 || length_ + need + 1 > size_) {
    skipped_++;
    return;
  }
  char *p = buffer_ + length_;
  if (sep) *p++ = ' ';
  memcpy(p, key, keyLen);
  p += keyLen;
  *p++ = '=';
  memcpy(p, value, valueLen);
  p += valueLen;
  *p = '\0';
  length_ += need;
}

}  // namespace sensorlog
