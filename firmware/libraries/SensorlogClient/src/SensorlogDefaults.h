// Defaults of the settings both sketches share. Each sketch's config.h includes
// this last, after the user's secrets.h and its own board settings, so any value
// here can be set there instead, or with -D on the compiler command line
// (arduino-cli --build-property compiler.cpp.extra_flags=..., PlatformIO
// build_flags, the host Makefile's DEFS). firmware/README.md lists them all.
#ifndef SENSORLOG_DEFAULTS_H
#define SENSORLOG_DEFAULTS_H

// Wi-Fi credentials: placeholders, so that CI compiles without a secrets.h.
#ifndef SENSORLOG_WIFI_SSID
#define SENSORLOG_WIFI_SSID "your-ssid"
#endif
#ifndef SENSORLOG_WIFI_PASSWORD
#define SENSORLOG_WIFI_PASSWORD "your-password"
#endif

// The machine running `sensorlog serve`, as the board sees it on the LAN.
#ifndef SENSORLOG_SERVER_HOST
#define SENSORLOG_SERVER_HOST "192.168.1.10"
#endif
#ifndef SENSORLOG_SERVER_PORT
#define SENSORLOG_SERVER_PORT 8090
#endif

// Empty: "<board>-<last three MAC bytes>", e.g. esp8266-a1b2c3.
#ifndef SENSORLOG_DEVICE_NAME
#define SENSORLOG_DEVICE_NAME ""
#endif

// One reading every SENSORLOG_INTERVAL_MS, whether the server is reachable or not.
#ifndef SENSORLOG_INTERVAL_MS
#define SENSORLOG_INTERVAL_MS 60000UL
#endif

// 1: greet with ack=1, keep each reading until its ACK, resend after reconnects.
// 0: send and forget, as the original boards did (for a daemon without acks).
#ifndef SENSORLOG_ACKS
#define SENSORLOG_ACKS 1
#endif

// Readings on their way without an ACK yet, at most.
#ifndef SENSORLOG_WINDOW
#define SENSORLOG_WINDOW 4
#endif

// Reconnect backoff (Wi-Fi joins and TCP connects): doubles from MIN to MAX.
#ifndef SENSORLOG_RETRY_MIN_MS
#define SENSORLOG_RETRY_MIN_MS 1000UL
#endif
#ifndef SENSORLOG_RETRY_MAX_MS
#define SENSORLOG_RETRY_MAX_MS 60000UL
#endif

// Wait this long for "OK HELLO" after the greeting, and for an ACK while readings
// are on their way, before dropping the connection and trying again.
#ifndef SENSORLOG_GREETING_TIMEOUT_MS
#define SENSORLOG_GREETING_TIMEOUT_MS 5000UL
#endif
#ifndef SENSORLOG_ACK_TIMEOUT_MS
#define SENSORLOG_ACK_TIMEOUT_MS 15000UL
#endif

// A status line (fields fw_taken, fw_dropped, ... : docs/protocol.md, "Board
// status line") right after boot and then every this many ms.
#ifndef SENSORLOG_STATUS_INTERVAL_MS
#define SENSORLOG_STATUS_INTERVAL_MS 600000UL
#endif

// The device token from `sensorlog token add <device>`, sent in the greeting as
// token=...; empty: none (a daemon without a tokens file needs none).
#ifndef SENSORLOG_TOKEN
#define SENSORLOG_TOKEN ""
#endif

// 1: connect over TLS (the daemon's [tls] listener; set SENSORLOG_SERVER_PORT to
// its port). ESP8266: also SENSORLOG_TLS_FINGERPRINT or SENSORLOG_TLS_TRUST_ANCHOR;
// Feather M0: the certificate uploaded to the ATWINC1500 (firmware/README.md, "TLS").
#ifndef SENSORLOG_TLS
#define SENSORLOG_TLS 0
#endif

#ifndef SENSORLOG_SERIAL_BAUD
#define SENSORLOG_SERIAL_BAUD 115200
#endif
// setup() waits at most this long for a USB serial monitor, never forever.
#ifndef SENSORLOG_SERIAL_WAIT_MS
#define SENSORLOG_SERIAL_WAIT_MS 2000UL
#endif

// 1: also read a DHT22 (temp_c, humidity) on SENSORLOG_DHT_PIN, set in config.h.
// Needs Adafruit's "DHT sensor library" (and "Adafruit Unified Sensor").
#ifndef SENSORLOG_WITH_DHT22
#define SENSORLOG_WITH_DHT22 0
#endif

#endif
