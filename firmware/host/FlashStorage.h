// Host shim: cmaglie's FlashStorage for the SAMD21 (a variable in a flash row),
// over the simulated flash (SIM_FLASH_FILE, see HostSim.h). Without a flash
// file, read() gives erased flash (0xFF) and write() is lost, as on a board
// flashed again at every power-on. One FlashStorage per sketch here.
#ifndef HOST_FLASH_STORAGE_H
#define HOST_FLASH_STORAGE_H

#include "HostSim.h"

#if !defined(ARDUINO_ARCH_SAMD)
#error "FlashStorage.h is for the SAMD21: build with -DARDUINO_ARCH_SAMD."
#endif

template<class T>
class FlashStorageClass {
public:
  void read(T *data) {
    host::flashRead(data, sizeof(T));
  }
  void write(T data) {
    host::flashWrite(&data, sizeof(T));
  }
};

#define FlashStorage(name, T) FlashStorageClass<T> name

#endif
