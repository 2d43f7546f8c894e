// Settings of the Adafruit Feather M0 WiFi (ATWINC1500) sketch.
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

// Readings kept in RAM while the server is unreachable: about 132 bytes each,
// out of the SAMD21's 32 KB.
#ifndef SENSORLOG_BUFFER_READINGS
#define SENSORLOG_BUFFER_READINGS 48
#endif

// WiFi101's WiFi.begin() blocks until joined or this long (WiFi.setTimeout());
// readings due meanwhile are taken right after it returns.
#ifndef SENSORLOG_WIFI_JOIN_TIMEOUT_MS
#define SENSORLOG_WIFI_JOIN_TIMEOUT_MS 15000UL
#endif

// The SAMD21 watchdog period (Adafruit_SleepyDog rounds down to a power of two
// of its ~1 kHz clock; 16000 or more: about 16 s, the longest it has).
#ifndef SENSORLOG_WATCHDOG_MS
#define SENSORLOG_WATCHDOG_MS 16000
#endif

// An analog input whose noise goes into the boot id (the SAMD21 has no RNG).
#ifndef SENSORLOG_ENTROPY_PIN
#define SENSORLOG_ENTROPY_PIN A5
#endif

// DHT22 data pin when SENSORLOG_WITH_DHT22 is 1 (pin 6 is free on the Feather M0 WiFi).
#ifndef SENSORLOG_DHT_PIN
#define SENSORLOG_DHT_PIN 6
#endif

#include <SensorlogDefaults.h>

#endif
