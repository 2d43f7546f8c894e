// The boot id: a fresh random value at every power-on, sent in the greeting so
// that the daemon can tell a resent reading (same device, boot and seq) from a
// new one after a reboot (docs/protocol.md, "Resends and duplicates").
//
// The ESP8266 has a hardware random number generator (ESP.random()). The
// Feather M0 has none, so its sketch feeds this pool with what varies from one
// power-on to the next: micros() around the Wi-Fi module's start-up, the noise
// of an unconnected analog pin, and the MAC address (so two boards never share
// a pool). 64 bits are kept; the id is 16 lowercase hex digits.
#ifndef SENSORLOG_BOOT_ID_H
#define SENSORLOG_BOOT_ID_H

#include <stdint.h>

namespace sensorlog {

static const unsigned kBootIdLength = 16;

class EntropyPool {
public:
  EntropyPool()
    : state_(0x9E3779B97F4A7C15ull) {}
  // Mixes one more word in (SplitMix64 finaliser over the running state).
  void add(uint32_t word);
  uint64_t value() const {
    return state_;
  }

private:
  uint64_t state_;
};

// Writes the id as kBootIdLength hex digits and a NUL into out.
void formatBootId(uint64_t id, char out[kBootIdLength + 1]);

}  // namespace sensorlog

#endif
