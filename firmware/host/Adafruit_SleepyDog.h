// Host shim: Adafruit_SleepyDog's SAMD21 watchdog. enable() starts a thread that
// plays both the watchdog and the SysTick interrupt: every millisecond it calls
// the sketch's sysTickHook(), and when reset() has not been called for the
// period it does what the chip would, restarting the board, here: it says so on
// stderr ("[host] Watchdog reset: ...") and ends the process with exit code 3.
#ifndef HOST_ADAFRUIT_SLEEPYDOG_H
#define HOST_ADAFRUIT_SLEEPYDOG_H

#include <stdint.h>

#if !defined(ARDUINO_ARCH_SAMD)
#error "Adafruit_SleepyDog.h is the SAMD21 flavour here: build with -DARDUINO_ARCH_SAMD."
#endif

// The SAMD core calls this from its SysTick handler; the sketch may define it.
extern "C" int sysTickHook(void);

class WatchdogSAMD {
public:
  // As the library: the period it really uses (a power of two of the ~1 kHz
  // watchdog clock, 16 s at most), in ms.
  int enable(int maxPeriodMS = 0, bool isForSleep = false);
  void reset();
  void disable();
  // PM->RCAUSE: always 0x01 (power-on reset) here.
  uint8_t resetCause();
};

extern WatchdogSAMD Watchdog;

#endif
