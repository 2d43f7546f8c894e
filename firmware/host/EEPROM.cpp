#include "EEPROM.h"

#include "HostSim.h"

EEPROMClass EEPROM;

void EEPROMClass::begin(size_t size) {
  size_ = size <= kSector ? size : kSector;
  host::flashRead(data_, (unsigned)size_);
  dirty_ = false;
}

bool EEPROMClass::commit() {
  if (size_ == 0) return false;
  if (!dirty_) return true;
  if (!host::flashWrite(data_, (unsigned)size_)) return false;
  dirty_ = false;
  return true;
}

bool EEPROMClass::end() {
  const bool ok = commit();
  size_ = 0;
  return ok;
}

uint8_t EEPROMClass::read(int address) const {
  return address >= 0 && (size_t)address < size_ ? data_[address] : 0;
}

void EEPROMClass::write(int address, uint8_t value) {
  if (address >= 0 && (size_t)address < size_) {
    data_[address] = value;
    dirty_ = true;
  }
}
