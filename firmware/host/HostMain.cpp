// Host shim: the board's main(): setup() once, then loop() until SIGTERM/SIGINT
// or until SIM_RUN_MS have passed, sleeping 1 ms between two loop() calls
// instead of the core's background work (as the ESP8266 core's tests/host does).
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "Arduino.h"
#include "HostSim.h"

int main() {
  host::init();
  const char *runText = getenv("SIM_RUN_MS");
  const unsigned long runMs = runText && *runText ? strtoul(runText, nullptr, 10) : 120000ul;
  const uint64_t deadline = host::monotonicMs() + runMs;
  millis();  // starts the board's clock

  setup();
  const char *reason = "run time (SIM_RUN_MS) is over";
  for (;;) {
    if (host::stopRequested()) {
      reason = "stop signal received";
      break;
    }
    if (host::monotonicMs() >= deadline) break;
    loop();
    host::afterLoop();
    usleep(1000);
  }
  Serial.flush();
  fprintf(stderr, "[host] Stopping: %s.\n", reason);
  return 0;
}
