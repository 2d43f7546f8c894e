#include "IPAddress.h"

#include <string.h>

#include "Print.h"

IPAddress::IPAddress() {
  memset(bytes_, 0, sizeof(bytes_));
}

IPAddress::IPAddress(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  bytes_[0] = a;
  bytes_[1] = b;
  bytes_[2] = c;
  bytes_[3] = d;
}

IPAddress::IPAddress(uint32_t address) {
  memcpy(bytes_, &address, sizeof(bytes_));
}

IPAddress::operator uint32_t() const {
  uint32_t address;
  memcpy(&address, bytes_, sizeof(address));
  return address;
}

bool IPAddress::fromString(const char *address) {
  uint8_t parts[4];
  int part = 0;
  unsigned value = 0;
  bool digits = false;
  for (const char *p = address;; p++) {
    if (*p >= '0' && *p <= '9') {
      value = value * 10 + (unsigned)(*p - '0');
      if (value > 255) return false;
      digits = true;
    } else if (*p == '.' || *p == '\0') {
      if (!digits || part > 3) return false;
      parts[part++] = (uint8_t)value;
      value = 0;
      digits = false;
      if (*p == '\0') break;
    } else {
      return false;
    }
  }
  if (part != 4) return false;
  memcpy(bytes_, parts, sizeof(bytes_));
  return true;
}

size_t IPAddress::printTo(Print &p) const {
  size_t n = 0;
  for (int i = 0; i < 4; i++) {
    n += p.print((unsigned int)bytes_[i], DEC);
    if (i < 3) n += p.print('.');
  }
  return n;
}
