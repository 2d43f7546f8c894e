// sensorlog board: ESP8266 NodeMCU 1.0 (ESP-12E).
//
// Takes a reading every SENSORLOG_INTERVAL_MS (analog pin A0, Wi-Fi RSSI, free
// heap, uptime; optionally a DHT22), keeps it in a RAM ring buffer and sends it
// to `sensorlog serve` over TCP until the daemon acknowledges it. The server may
// be down, the Wi-Fi may drop: readings go on being taken on schedule and are
// sent, oldest first, when the link is back. loop() never waits: it is a state
// machine timed with millis(). See firmware/README.md for flashing and the
// serial log, docs/protocol.md for the wire protocol.
//
// Settings: config.h (and your secrets.h, from secrets.h.example).
// Shared code: the SensorlogClient library in firmware/libraries.

#include <ESP8266WiFi.h>
#include <SensorlogClient.h>

#include "config.h"

#if SENSORLOG_WITH_DHT22
#include <DHT.h>
#endif

#if !defined(ESP8266)
#error "This sketch is for the ESP8266: select Tools > Board > NodeMCU 1.0 (ESP-12E Module)."
#endif

static_assert(SENSORLOG_BUFFER_READINGS >= 1, "SENSORLOG_BUFFER_READINGS must be at least 1");

namespace {

const uint32_t kReadingIntervalMs = SENSORLOG_INTERVAL_MS;
const uint32_t kWifiJoinTimeoutMs = SENSORLOG_WIFI_JOIN_TIMEOUT_MS;

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
  kWifiWaiting,  // until wifiAtMs, then WiFi.begin()
  kWifiJoining,  // since wifiAtMs; the core joins in the background
  kWifiUp,
};
WifiState wifiState = kWifiWaiting;
uint32_t wifiAtMs = 0;
sensorlog::Backoff wifiBackoff(SENSORLOG_RETRY_MIN_MS, SENSORLOG_RETRY_MAX_MS);
sensorlog::Jitter jitter(1);

// Set only by the core's Wi-Fi event handlers; loop() reads and clears them.
volatile bool gotIpEvent = false;
volatile bool disconnectedEvent = false;
volatile uint8_t disconnectReason = 0;
WiFiEventHandler gotIpHandler;
WiFiEventHandler disconnectedHandler;

char deviceName[sensorlog::kMaxDeviceLength + 1];
char bootId[sensorlog::kBootIdLength + 1];
sensorlog::Uptime uptime;
uint32_t nextReadingMs = 0;

#if SENSORLOG_WITH_DHT22
DHT dht(SENSORLOG_DHT_PIN, DHT22);
uint32_t dhtErrors = 0;
#endif

void logWifiUp() {
  const IPAddress ip = WiFi.localIP();
  sensorlog::logf(Serial, "Wi-Fi up: IP %u.%u.%u.%u, RSSI %ld dBm.", ip[0], ip[1], ip[2], ip[3],
                  (long)WiFi.RSSI());
}

void startJoin(uint32_t now) {
  sensorlog::logf(Serial, "Joining Wi-Fi \"%s\".", SENSORLOG_WIFI_SSID);
  WiFi.begin(SENSORLOG_WIFI_SSID, SENSORLOG_WIFI_PASSWORD);
  wifiState = kWifiJoining;
  wifiAtMs = now;
}

// Joins, notices a lost access point, and starts over with backoff when a
// join takes too long. The core itself rejoins after a drop (setAutoReconnect).
void pollWifi(uint32_t now) {
  if (disconnectedEvent) {
    disconnectedEvent = false;
    sensorlog::logf(Serial, "Wi-Fi disconnected (reason %u).", (unsigned)disconnectReason);
  }
  if (gotIpEvent) {
    gotIpEvent = false;
    sensorlog::logf(Serial, "Wi-Fi got an IP address.");
  }
  const wl_status_t status = WiFi.status();
  switch (wifiState) {
    case kWifiWaiting:
      if (sensorlog::reached(now, wifiAtMs)) startJoin(now);
      break;
    case kWifiJoining:
      if (status == WL_CONNECTED) {
        wifiState = kWifiUp;
        wifiBackoff.reset();
        logWifiUp();
      } else if (now - wifiAtMs >= kWifiJoinTimeoutMs) {
        const uint32_t delayMs = wifiBackoff.next(jitter.next());
        WiFi.disconnect();
        wifiState = kWifiWaiting;
        wifiAtMs = now + delayMs;
        sensorlog::logf(Serial, "Wi-Fi not joined after %lu ms (status %d); next attempt in %lu ms.",
                        (unsigned long)kWifiJoinTimeoutMs, (int)status, (unsigned long)delayMs);
      }
      break;
    case kWifiUp:
      if (status != WL_CONNECTED) {
        wifiState = kWifiJoining;
        wifiAtMs = now;
        sensorlog::logf(Serial, "Wi-Fi lost (status %d); rejoining.", (int)status);
      }
      break;
  }
}

void takeReading() {
  char fields[sensorlog::kMaxFieldsLength + 1];
  sensorlog::LineBuilder line(fields, sizeof(fields));
  line.add("a0", analogRead(A0));
  if (wifiState == kWifiUp) line.add("rssi", (long)WiFi.RSSI());
  line.addUnsigned("heap", (unsigned long)ESP.getFreeHeap());
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
  Serial.println();

  uint8_t mac[6];
  WiFi.macAddress(mac);
  sensorlog::makeDeviceName(deviceName, sizeof(deviceName), SENSORLOG_DEVICE_NAME, "esp8266", mac);
  const uint64_t id = ((uint64_t)ESP.random() << 32) | ESP.random();
  sensorlog::formatBootId(id, bootId);

  sensorlog::logf(Serial, "Boot: device=%s boot=%s board=esp8266 server=%s:%u interval_ms=%lu buffer=%u acks=%d window=%u.",
                  deviceName, bootId, SENSORLOG_SERVER_HOST, (unsigned)SENSORLOG_SERVER_PORT,
                  (unsigned long)kReadingIntervalMs, (unsigned)SENSORLOG_BUFFER_READINGS,
                  SENSORLOG_ACKS, (unsigned)SENSORLOG_WINDOW);
  if (!SENSORLOG_HAVE_SECRETS_H) {
    sensorlog::logf(Serial, "No secrets.h: using the Wi-Fi settings built in (copy secrets.h.example to secrets.h).");
  }

  WiFi.persistent(false);  // do not write the credentials to flash at every boot
  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.hostname(deviceName);
  gotIpHandler = WiFi.onStationModeGotIP([](const WiFiEventStationModeGotIP &) {
    gotIpEvent = true;
  });
  disconnectedHandler = WiFi.onStationModeDisconnected([](const WiFiEventStationModeDisconnected &event) {
    disconnectReason = (uint8_t)event.reason;
    disconnectedEvent = true;
  });
  client.setTimeout(SENSORLOG_TCP_TIMEOUT_MS);
  WiFiClient::setDefaultNoDelay(true);  // one line per packet, no Nagle delay

#if SENSORLOG_WITH_DHT22
  dht.begin();
#endif

  uplink.begin(deviceName, bootId, ESP.random());
  jitter = sensorlog::Jitter(ESP.random());
  wifiAtMs = millis();
  nextReadingMs = millis();
}

void loop() {
  const uint32_t now = millis();
  uptime.update(now);
  pollWifi(now);

  if (sensorlog::reached(now, nextReadingMs)) {
    takeReading();
    nextReadingMs += kReadingIntervalMs;
    if (sensorlog::reached(millis(), nextReadingMs)) {
      // More than a whole interval behind (a long blocking call): skip ahead.
      sensorlog::logf(Serial, "Reading schedule fell behind; next reading in %lu ms.",
                      (unsigned long)kReadingIntervalMs);
      nextReadingMs = millis() + kReadingIntervalMs;
    }
  }

  uplink.poll(wifiState == kWifiUp);
}
