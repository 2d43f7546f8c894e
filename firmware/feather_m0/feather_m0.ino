// sensorlog board: Adafruit Feather M0 WiFi (SAMD21 + ATWINC1500, WiFi101).
//
// Takes a reading every SENSORLOG_INTERVAL_MS (analog pin A0, battery voltage,
// Wi-Fi RSSI, uptime; optionally a DHT22), keeps it in a RAM ring buffer and
// sends it to `sensorlog serve` over TCP until the daemon acknowledges it. The
// server may be down, the Wi-Fi may drop: readings go on being taken on
// schedule and are sent, oldest first, when the link is back. loop() is a state
// machine timed with millis(); the one long call is WiFi101's WiFi.begin(),
// bounded by WiFi.setTimeout(). See firmware/README.md for flashing and the
// serial log, docs/protocol.md for the wire protocol.
//
// Settings: config.h (and your secrets.h, from secrets.h.example).
// Shared code: the SensorlogClient library in firmware/libraries.

#include <SPI.h>
#include <WiFi101.h>
#include <SensorlogClient.h>

#include "config.h"

#if SENSORLOG_WITH_DHT22
#include <DHT.h>
#endif

#if !defined(ARDUINO_ARCH_SAMD)
#error "This sketch is for the Feather M0 WiFi: select Tools > Board > Adafruit Feather M0 (SAMD21)."
#endif

static_assert(SENSORLOG_BUFFER_READINGS >= 1, "SENSORLOG_BUFFER_READINGS must be at least 1");

namespace {

// How the Feather M0 WiFi wires its ATWINC1500.
const int8_t kWincChipSelect = 8;
const int8_t kWincIrq = 7;
const int8_t kWincReset = 4;
const int8_t kWincEnable = 2;
// VBAT through a 1:2 divider on A7 (PA07, also D9); 12-bit readings of 0..3.3 V.
const uint8_t kBatteryPin = A7;
const int kAnalogBits = 12;

const uint32_t kReadingIntervalMs = SENSORLOG_INTERVAL_MS;

const sensorlog::LinkSettings kLinkSettings = {
  SENSORLOG_SERVER_HOST,
  SENSORLOG_SERVER_PORT,
  SENSORLOG_ACKS != 0,
  SENSORLOG_WINDOW,
  SENSORLOG_RETRY_MIN_MS,
  SENSORLOG_RETRY_MAX_MS,
  SENSORLOG_GREETING_TIMEOUT_MS,
  SENSORLOG_ACK_TIMEOUT_MS,
};

WiFiClient client;
sensorlog::Reading slots[SENSORLOG_BUFFER_READINGS];
sensorlog::ReadingBuffer buffer(slots, SENSORLOG_BUFFER_READINGS);
sensorlog::Link uplink(client, buffer, Serial, kLinkSettings);

enum WifiState {
  kWifiNoModule,  // no ATWINC1500 answered: readings stay in RAM
  kWifiWaiting,   // until wifiAtMs, then WiFi.begin()
  kWifiUp,
};
WifiState wifiState = kWifiWaiting;
uint32_t wifiAtMs = 0;
sensorlog::Backoff wifiBackoff(SENSORLOG_RETRY_MIN_MS, SENSORLOG_RETRY_MAX_MS);
sensorlog::Jitter jitter(1);

char deviceName[sensorlog::kMaxDeviceLength + 1];
char bootId[sensorlog::kBootIdLength + 1];
sensorlog::Uptime uptime;
uint32_t nextReadingMs = 0;

#if SENSORLOG_WITH_DHT22
DHT dht(SENSORLOG_DHT_PIN, DHT22);
uint32_t dhtErrors = 0;
#endif

// WiFi101 blocks in begin() until joined or until WiFi.setTimeout() passes, and
// needs a new begin() after the access point is lost.
void pollWifi(uint32_t now) {
  switch (wifiState) {
    case kWifiNoModule:
      break;
    case kWifiWaiting:
      if (sensorlog::reached(now, wifiAtMs)) {
        sensorlog::logf(Serial, "Joining Wi-Fi \"%s\" (waits up to %lu ms).", SENSORLOG_WIFI_SSID,
                        (unsigned long)SENSORLOG_WIFI_JOIN_TIMEOUT_MS);
        const uint8_t status = WiFi.begin(SENSORLOG_WIFI_SSID, SENSORLOG_WIFI_PASSWORD);
        if (status == WL_CONNECTED) {
          wifiState = kWifiUp;
          wifiBackoff.reset();
          const IPAddress ip = WiFi.localIP();
          sensorlog::logf(Serial, "Wi-Fi up: IP %u.%u.%u.%u, RSSI %ld dBm.", ip[0], ip[1], ip[2],
                          ip[3], (long)WiFi.RSSI());
        } else {
          const uint32_t delayMs = wifiBackoff.next(jitter.next());
          wifiAtMs = millis() + delayMs;
          sensorlog::logf(Serial, "Wi-Fi not joined (status %u); next attempt in %lu ms.",
                          (unsigned)status, (unsigned long)delayMs);
        }
      }
      break;
    case kWifiUp:
      if (WiFi.status() != WL_CONNECTED) {
        wifiState = kWifiWaiting;
        wifiAtMs = now;
        sensorlog::logf(Serial, "Wi-Fi lost; rejoining.");
      }
      break;
  }
}

void takeReading() {
  char fields[sensorlog::kMaxFieldsLength + 1];
  sensorlog::LineBuilder line(fields, sizeof(fields));
  line.add("a0", analogRead(A0));
  const float volts = analogRead(kBatteryPin) * 2.0f * 3.3f / (1 << kAnalogBits);
  line.addFixed("vbat_v", volts, 2);
  if (wifiState == kWifiUp) line.add("rssi", (long)WiFi.RSSI());
  line.addUnsigned("uptime_s", uptime.seconds());
  line.addUnsigned("backlog", (unsigned long)uplink.waiting());
  line.addUnsigned("dropped", (unsigned long)uplink.dropped());
#if SENSORLOG_WITH_DHT22
  const float celsius = dht.readTemperature();
  const float humidity = dht.readHumidity();
  if (celsius != celsius || humidity != humidity) dhtErrors++;  // NaN: no answer
  line.addFixed("temp_c", celsius, 1).addFixed("humidity", humidity, 1);
  line.addUnsigned("dht_errors", (unsigned long)dhtErrors);
#endif
  uplink.record(fields);
}

}  // namespace

void setup() {
  Serial.begin(SENSORLOG_SERIAL_BAUD);
  sensorlog::waitForSerial(Serial, SENSORLOG_SERIAL_WAIT_MS);

  analogReadResolution(kAnalogBits);
  WiFi.setPins(kWincChipSelect, kWincIrq, kWincReset, kWincEnable);

  // No RNG on the SAMD21: the boot id comes from timing jitter, ADC noise and the MAC.
  sensorlog::EntropyPool pool;
  pool.add(micros());
  const uint8_t moduleStatus = WiFi.status();  // resets and starts the ATWINC1500
  pool.add(micros());
  for (int i = 0; i < 32; i++) {
    pool.add(((uint32_t)analogRead(SENSORLOG_ENTROPY_PIN) << 16) ^ micros());
  }
  uint8_t mac[6] = { 0, 0, 0, 0, 0, 0 };
  if (moduleStatus != WL_NO_SHIELD) WiFi.macAddress(mac);
  for (int i = 0; i < 6; i++) pool.add(mac[i]);
  pool.add(micros());

  sensorlog::makeDeviceName(deviceName, sizeof(deviceName), SENSORLOG_DEVICE_NAME, "feather", mac);
  sensorlog::formatBootId(pool.value(), bootId);

  sensorlog::logf(Serial, "Boot: device=%s boot=%s board=feather_m0 server=%s:%u interval_ms=%lu buffer=%u acks=%d window=%u.",
                  deviceName, bootId, SENSORLOG_SERVER_HOST, (unsigned)SENSORLOG_SERVER_PORT,
                  (unsigned long)kReadingIntervalMs, (unsigned)SENSORLOG_BUFFER_READINGS,
                  SENSORLOG_ACKS, (unsigned)SENSORLOG_WINDOW);
  if (!SENSORLOG_HAVE_SECRETS_H) {
    sensorlog::logf(Serial, "No secrets.h: using the Wi-Fi settings built in (copy secrets.h.example to secrets.h).");
  }

  if (moduleStatus == WL_NO_SHIELD) {
    wifiState = kWifiNoModule;
    sensorlog::logf(Serial, "No ATWINC1500 answered: readings stay in RAM (%u at most).",
                    (unsigned)SENSORLOG_BUFFER_READINGS);
  } else {
    sensorlog::logf(Serial, "ATWINC1500 firmware %s.", WiFi.firmwareVersion());
    WiFi.setTimeout(SENSORLOG_WIFI_JOIN_TIMEOUT_MS);
    wifiState = kWifiWaiting;
    wifiAtMs = millis();
  }

#if SENSORLOG_WITH_DHT22
  dht.begin();
#endif

  const uint32_t seed = (uint32_t)(pool.value() >> 32);
  uplink.begin(deviceName, bootId, seed);
  jitter = sensorlog::Jitter(seed ^ 0x5bd1e995u);
  nextReadingMs = millis();
}

void loop() {
  const uint32_t now = millis();
  uptime.update(now);
  pollWifi(now);

  if (sensorlog::reached(millis(), nextReadingMs)) {
    takeReading();
    nextReadingMs += kReadingIntervalMs;
    if (sensorlog::reached(millis(), nextReadingMs)) {
      // More than a whole interval behind (WiFi.begin() blocked): skip ahead.
      sensorlog::logf(Serial, "Reading schedule fell behind; next reading in %lu ms.",
                      (unsigned long)kReadingIntervalMs);
      nextReadingMs = millis() + kReadingIntervalMs;
    }
  }

  uplink.poll(wifiState == kWifiUp);
}
