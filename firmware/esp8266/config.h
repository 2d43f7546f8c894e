// Settings of the ESP8266 (NodeMCU 1.0) sketch.
//
// Read in this order, the first definition wins:
//   1. -D flags of the build (arduino-cli, PlatformIO build_flags, host Makefile)
//   2. secrets.h: your Wi-Fi and server, copied from secrets.h.example and never
//      committed (git-ignored); it may also set anything below
//   3. the board settings here
//   4. <SensorlogDefaults.h>: the settings both boards share
// Defining SENSORLOG_NO_SECRETS_H skips secrets.h (the host build and CI do).
#ifndef SENSORLOG_CONFIG_H
#define SENSORLOG_CONFIG_H

#define SENSORLOG_HAVE_SECRETS_H 0
#if !defined(SENSORLOG_NO_SECRETS_H) && defined(__has_include)
#if __has_include("secrets.h")
#include "secrets.h"
#undef SENSORLOG_HAVE_SECRETS_H
#define SENSORLOG_HAVE_SECRETS_H 1
#endif
#endif

// Readings kept in RAM while the server is unreachable: about 132 bytes each.
#ifndef SENSORLOG_BUFFER_READINGS
#define SENSORLOG_BUFFER_READINGS 64
#endif

// The ESP8266 joins in the background; start over if it has not joined after this.
#ifndef SENSORLOG_WIFI_JOIN_TIMEOUT_MS
#define SENSORLOG_WIFI_JOIN_TIMEOUT_MS 30000UL
#endif

// WiFiClient::setTimeout(): the most connect() and write() may block.
#ifndef SENSORLOG_TCP_TIMEOUT_MS
#define SENSORLOG_TCP_TIMEOUT_MS 5000UL
#endif

// DHT22 data pin when SENSORLOG_WITH_DHT22 is 1: D2 (GPIO4) on a NodeMCU.
#ifndef SENSORLOG_DHT_PIN
#define SENSORLOG_DHT_PIN D2
#endif

#include <SensorlogDefaults.h>

#endif
