// Host shim: Arduino's IPv4 IPAddress (bytes in network order, as on the boards).
#ifndef HOST_IPADDRESS_H
#define HOST_IPADDRESS_H

#include <stdint.h>

#include "Printable.h"

class IPAddress : public Printable {
public:
  IPAddress();
  IPAddress(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
  IPAddress(uint32_t address);  // NOLINT: implicit, as in the cores

  bool fromString(const char *address);
  operator uint32_t() const;
  uint8_t operator[](int index) const {
    return bytes_[index];
  }
  uint8_t *raw_address() {
    return bytes_;
  }
  size_t printTo(Print &p) const override;

private:
  uint8_t bytes_[4];
};

#endif
