#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "Adafruit_SleepyDog.h"
#include "Arduino.h"
#include "HostSim.h"

WatchdogSAMD Watchdog;

namespace {
std::atomic<uint64_t> gLastPatMs(0);
std::atomic<uint32_t> gPeriodMs(0);
std::atomic<bool> gThreadStarted(false);

void watch() {
  for (;;) {
    usleep(1000);
    sysTickHook();
    const uint32_t period = gPeriodMs.load();
    if (period == 0) continue;
    const uint64_t quiet = host::monotonicMs() - gLastPatMs.load();
    if (quiet >= period) {
      Serial.flush();
      fprintf(stderr, "[host] Watchdog reset: not patted for %lu ms (period %lu ms).\n",
              (unsigned long)quiet, (unsigned long)period);
      fflush(stderr);
      _exit(3);
    }
  }
}
}  // namespace

int WatchdogSAMD::enable(int maxPeriodMS, bool) {
  // Adafruit_SleepyDog: cycles of the 1024 Hz clock, a power of two from 8 to 16384.
  long cycles = maxPeriodMS <= 0 || maxPeriodMS >= 16000 ? 16384 : (maxPeriodMS * 1024L + 500) / 1000;
  long power = 8;
  while (power * 2 <= cycles && power < 16384) power *= 2;
  const int periodMs = (int)((power * 1000L + 512) / 1024);
  gLastPatMs = host::monotonicMs();
  gPeriodMs = (uint32_t)periodMs;
  if (!gThreadStarted.exchange(true)) std::thread(watch).detach();
  return periodMs;
}

void WatchdogSAMD::reset() {
  gLastPatMs = host::monotonicMs();
}

void WatchdogSAMD::disable() {
  gPeriodMs = 0;
}

uint8_t WatchdogSAMD::resetCause() {
  return 0x01;
}
