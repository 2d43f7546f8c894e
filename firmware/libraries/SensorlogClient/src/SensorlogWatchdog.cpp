#include "SensorlogWatchdog.h"

namespace sensorlog {

namespace {
BlockingHooks gHooks = { nullptr, nullptr };
}  // namespace

void setBlockingHooks(const BlockingHooks &hooks) {
  gHooks = hooks;
}

BlockingCall::BlockingCall(uint32_t maxMs) {
  if (gHooks.begin) gHooks.begin(maxMs);
}

BlockingCall::~BlockingCall() {
  if (gHooks.end) gHooks.end();
}

}  // namespace sensorlog
