// Host shim: the ESP8266 core's ESP object (the parts the sketch uses).
#ifndef HOST_ESP_H
#define HOST_ESP_H

#include <stdint.h>

class EspClass {
public:
  uint32_t getChipId();
  uint32_t getFreeHeap();
  // The hardware random number generator (RANDOM_REG32) on the real chip.
  uint32_t random() const;
};

extern EspClass ESP;

#endif
