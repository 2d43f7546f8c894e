// SensorlogClient: the code both sensorlog sketches share, written once.
//
//   LineBuilder    the fields of a reading as one key=value line
//   ReadingBuffer  bounded RAM ring buffer of readings not yet acknowledged
//   Backoff        exponential backoff with jitter for Wi-Fi and TCP retries
//   Link           TCP connection state machine: greeting, send window, ACKs,
//                  reconnect and resend (docs/protocol.md, "Acknowledgements")
//   logf           the serial log, one timestamped sentence per line
//   EntropyPool    boot id from whatever randomness the board has
//   makeDeviceName, Uptime, reached: device name, 64-bit uptime, wrap-safe timing
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

#endif
