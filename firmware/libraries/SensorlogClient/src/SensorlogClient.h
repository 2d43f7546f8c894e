// SensorlogClient: the code both sensorlog sketches share, written once.
//
//   LineBuilder    the fields of a reading as one key=value line
//   ReadingBuffer  bounded RAM ring buffer of readings not yet acknowledged
//   Backoff        exponential backoff with jitter for Wi-Fi and TCP retries
//   Link           TCP connection state machine: greeting, send window, ACKs,
//                  reconnect and resend (docs/protocol.md, "Acknowledgements")
//   logf           the serial log, one timestamped sentence per line
//   EntropyPool    boot id from whatever randomness the board has
//   makeDeviceName, makeHostname, Uptime, reached: names, 64-bit uptime, wrap-safe timing
//   BootRecord, bootIdFor  boot counter in flash mixed into the boot id
//   ReadingSchedule, BoardStatus  skipped readings and the periodic status line
//   BlockingCall   lets the watchdog outlast a long blocking call, and no longer
//   SENSORLOG_LOG  the log with its format strings in flash on the ESP8266
//   SensorlogDefaults.h: the settings both boards share (#ifndef defaults)
//
// Nothing here blocks except what the board's Client does inside connect() and
// write(); everything is timed with millis().
#ifndef SENSORLOG_CLIENT_H
#define SENSORLOG_CLIENT_H

#include "SensorlogBackoff.h"
#include "SensorlogBoard.h"
#include "SensorlogBootId.h"
#include "SensorlogBuffer.h"
#include "SensorlogLine.h"
#include "SensorlogLink.h"
#include "SensorlogLog.h"
#include "SensorlogReply.h"
#include "SensorlogStatus.h"
#include "SensorlogWatchdog.h"

#endif
