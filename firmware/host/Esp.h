// Host shim: the ESP8266 core's ESP object (the parts the sketch uses).
#ifndef HOST_ESP_H
#define HOST_ESP_H

#include <stdint.h>

// user_interface.h: why the chip started (rst_info.reason).
enum rst_reason {
  REASON_DEFAULT_RST = 0,  // power on
  REASON_WDT_RST = 1,      // hardware watchdog
  REASON_EXCEPTION_RST = 2,
  REASON_SOFT_WDT_RST = 3,
  REASON_SOFT_RESTART = 4,
  REASON_DEEP_SLEEP_AWAKE = 5,
  REASON_EXT_SYS_RST = 6,
};
struct rst_info {
  uint32_t reason;
  uint32_t exccause, epc1, epc2, epc3, excvaddr, depc;
};

class EspClass {
public:
  uint32_t getChipId();
  uint32_t getFreeHeap();
  // The hardware random number generator (RANDOM_REG32) on the real chip.
  uint32_t random() const;
  // Always a power-on here.
  rst_info *getResetInfoPtr();
};

extern EspClass ESP;

#endif
