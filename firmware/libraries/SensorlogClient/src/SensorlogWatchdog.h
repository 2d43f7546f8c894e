// Calls that block longer than the board's watchdog period, made safe.
//
// The Feather M0 runs under the SAMD21 watchdog (Adafruit_SleepyDog, at most
// about 16 s), and loop() pats it. Two WiFi101 calls can legitimately block
// longer than that, and nothing can be done inside them: WiFiClient::connect()
// waits a fixed 20 s for the ATWINC1500's answer, and WiFi.begin() waits for the
// join. The sketch wraps each in a BlockingCall with the longest time the call
// may take; while one is open, the board's hook (the Feather's SysTick hook)
// keeps patting the watchdog, but only until that deadline. So a call that
// returns in time never resets the board, and one that hangs (a wedged SPI bus,
// a module that never answers) still does: at the deadline plus one watchdog
// period. Calls that are not wrapped (WiFi101's write(), which retries a full
// send buffer with no time limit of its own) are covered by the watchdog alone.
//
// The ESP8266 needs none of this: its blocking calls (connect(), write(),
// bounded by WiFiClient::setTimeout()) yield to the core inside, which feeds its
// software and hardware watchdogs. With no hooks set, a BlockingCall does nothing.
#ifndef SENSORLOG_WATCHDOG_H
#define SENSORLOG_WATCHDOG_H

#include <stdint.h>

namespace sensorlog {

struct BlockingHooks {
  void (*begin)(uint32_t maxMs);  // a call that may take up to maxMs starts
  void (*end)();                  // it returned
};

// Set once in setup(), before the Link's first poll().
void setBlockingHooks(const BlockingHooks &hooks);

// RAII: open for the duration of one blocking call. Not nested.
class BlockingCall {
public:
  explicit BlockingCall(uint32_t maxMs);
  ~BlockingCall();
  BlockingCall(const BlockingCall &) = delete;
  BlockingCall &operator=(const BlockingCall &) = delete;
};

// WiFi101's WiFiSocket::connect() waits up to 20 s; a little more for the
// socket set-up around it.
static const uint32_t kWifi101ConnectMaxMs = 21000;

}  // namespace sensorlog

#endif
