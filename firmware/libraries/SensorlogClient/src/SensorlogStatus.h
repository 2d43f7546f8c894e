// What lets people see a struggling board: the reading schedule with its count
// of skipped readings, and the periodic status line.
//
// The status line is an ordinary reading (same seq numbering, buffered and
// acknowledged like the others, key=value format 2), so that every daemon that
// stores readings stores it, as fields of the board, with no change to the
// daemon: its fields all start with "fw_" (docs/protocol.md, "Board status
// line"):
//
//   fw_taken=1440 fw_dropped=0 fw_skipped=2 fw_reconnects=3 fw_uptime_s=86400 fw_heap=40112 fw_boots=12 fw_reset=4
//
// Fields are added in that order; one that no longer fits the reading (about 119
// characters, for very large counts) is left out, the later ones first.
#ifndef SENSORLOG_STATUS_H
#define SENSORLOG_STATUS_H

#include <stdint.h>

#include "SensorlogLine.h"

namespace sensorlog {

struct BoardStatus {
  uint32_t taken;       // readings taken since boot (status lines not counted)
  uint32_t dropped;     // dropped because the buffer was full
  uint32_t skipped;     // never taken: a blocking call overran their time
  uint32_t reconnects;  // connections to the server after the first
  uint32_t uptimeS;     // seconds since boot
  uint32_t freeHeap;    // bytes (Feather M0: between the heap and the stack)
  uint32_t boots;       // the boot counter in flash
  uint32_t resetCause;  // the board's own code for why it started (README)
};

void addStatusFields(LineBuilder &line, const BoardStatus &status);

// One reading every intervalMs, on a fixed grid from the first one. When a call
// blocked past one or more whole intervals, the readings that fell in that time
// are skipped (not taken late in a burst) and counted.
class ReadingSchedule {
public:
  explicit ReadingSchedule(uint32_t intervalMs)
    : intervalMs_(intervalMs ? intervalMs : 1), nextMs_(0), skipped_(0) {}
  void start(uint32_t nowMs) {
    nextMs_ = nowMs;
  }
  // true when a reading is due at nowMs; the schedule then moves on.
  // *skippedNow: readings skipped just now (0 normally).
  bool due(uint32_t nowMs, uint32_t *skippedNow);
  uint32_t skipped() const {
    return skipped_;
  }
  uint32_t nextMs() const {
    return nextMs_;
  }

private:
  uint32_t intervalMs_;
  uint32_t nextMs_;
  uint32_t skipped_;
};

}  // namespace sensorlog

#endif
