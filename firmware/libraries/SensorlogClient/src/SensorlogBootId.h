// The boot id: a value that is new at every power-on, sent in the greeting so
// that the daemon can tell a resent reading (same device, boot and seq) from a
// new one after a reboot (docs/protocol.md, "Resends and duplicates"). If a
// board ever repeated one, the daemon would take its new readings for resends
// and not write them, so the id must never repeat, even without entropy:
//
// A boot counter kept in flash (ESP8266: EEPROM emulation; Feather M0:
// FlashStorage) goes up by one at every power-on and is mixed into the pool
// last. EntropyPool::add() is a bijection of the 64-bit state for a given
// word, so for the same entropy two different counts always give two different
// ids; with real entropy the 64 bits stay as random as the entropy was. One
// flash write per boot: about 10,000 (ESP8266 sector) or 25,000 (SAMD21 row)
// erase cycles are years of daily reboots, but a board stuck in a reset loop
// wears its counter's sector faster (firmware/README.md, "Boot counter").
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

// The boot counter as it lies in flash. Anything without the magic and a
// matching check (erased flash reads 0xFF..., a new FlashStorage image 0) counts
// as "never booted": the count starts again at 1, and the entropy must keep
// that boot's id apart from the ones before the flash was erased.
struct BootRecord {
  uint32_t magic;
  uint32_t count;
  uint32_t check;
};
static const uint32_t kBootRecordMagic = 0x534c4231u;  // "SLB1"

// The count of this boot (stored count + 1, or 1 if nothing valid was stored),
// and in *next the record to write back to flash.
uint32_t nextBootCount(const BootRecord &stored, BootRecord *next);

// The boot id of this power-on: the pool with the boot count mixed in last.
uint64_t bootIdFor(EntropyPool pool, uint32_t bootCount);

// Writes the id as kBootIdLength hex digits and a NUL into out.
void formatBootId(uint64_t id, char out[kBootIdLength + 1]);

}  // namespace sensorlog

#endif
