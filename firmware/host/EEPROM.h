// Host shim: the ESP8266 core's EEPROM library (EEPROM emulation in one flash
// sector), over the simulated flash (SIM_FLASH_FILE, see HostSim.h): begin()
// reads it, commit() writes it back. Without a flash file every power-on
// starts from erased flash, and commit() fails, as on a board whose flash
// cannot be written.
#ifndef HOST_EEPROM_H
#define HOST_EEPROM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(ESP8266)
#error "EEPROM.h is the ESP8266 core's here: build with -DESP8266."
#endif

class EEPROMClass {
public:
  void begin(size_t size);
  bool commit();
  bool end();
  uint8_t read(int address) const;
  void write(int address, uint8_t value);

  template<typename T>
  T &get(int address, T &t) {
    if (address >= 0 && (size_t)address + sizeof(T) <= size_) memcpy(&t, data_ + address, sizeof(T));
    return t;
  }
  template<typename T>
  const T &put(int address, const T &t) {
    if (address >= 0 && (size_t)address + sizeof(T) <= size_) {
      memcpy(data_ + address, &t, sizeof(T));
      dirty_ = true;
    }
    return t;
  }

private:
  static const size_t kSector = 4096;
  uint8_t data_[kSector] = {};
  size_t size_ = 0;
  bool dirty_ = false;
};

extern EEPROMClass EEPROM;

#endif
