#include "SensorlogStatus.h"

#include "SensorlogBoard.h"

namespace sensorlog {

void addStatusFields(LineBuilder &line, const BoardStatus &s) {
  line.addUnsigned("fw_taken", (unsigned long)s.taken);
  line.addUnsigned("fw_dropped", (unsigned long)s.dropped);
  line.addUnsigned("fw_skipped", (unsigned long)s.skipped);
  line.addUnsigned("fw_reconnects", (unsigned long)s.reconnects);
  line.addUnsigned("fw_uptime_s", (unsigned long)s.uptimeS);
  line.addUnsigned("fw_heap", (unsigned long)s.freeHeap);
  line.addUnsigned("fw_boots", (unsigned long)s.boots);
  line.addUnsigned("fw_reset", (unsigned long)s.resetCause);
}

bool ReadingSchedule::due(uint32_t nowMs, uint32_t *skippedNow) {
  *skippedNow = 0;
  if (!reached(nowMs, nextMs_)) return false;
  // nowMs is in [nextMs_, nextMs_ + intervalMs_) normally; each further whole
  // interval is a reading whose time passed while the board was blocked.
  const uint32_t late = nowMs - nextMs_;
  const uint32_t missed = late / intervalMs_;
  skipped_ += missed;
  *skippedNow = missed;
  nextMs_ += (missed + 1) * intervalMs_;
  return true;
}

}  // namespace sensorlog
