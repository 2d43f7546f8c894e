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
// Watchdogs: the core's software watchdog (about 3 s) and the chip's hardware
// one (about 8 s) reset the board if loop() stops returning. Nothing here waits
// past them: loop() returns within milliseconds, and the calls that can block
// (WiFiClient::connect() and write(), up to SENSORLOG_TCP_TIMEOUT_MS) wait
// inside the core's esp_delay(), which yields and so feeds both. The boot
// counter's one flash write (EEPROM.commit()) takes tens of ms at setup().
//
// Every log format string is in flash (SENSORLOG_LOG: PSTR), as .rodata is
// copied to RAM on this chip.
//
// Settings: config.h (and your secrets.h, from secrets.h.example).
// Shared code: the SensorlogClient library in firmware/libraries.

#include <EEPROM.h>
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
static_assert(sizeof(SENSORLOG_TOKEN) <= sensorlog::kMaxTokenLength + 1, "SENSORLOG_TOKEN is too long");

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
  SENSORLOG_TCP_TIMEOUT_MS,
  SENSORLOG_TOKEN,
};

#if SENSORLOG_TLS
// TLS (BearSSL), the server pinned by the SHA-1 fingerprint of its certificate
// or by its certificate as trust anchor (secrets.h; README, "TLS").
BearSSL::WiFiClientSecure client;
#if defined(SENSORLOG_TLS_TRUST_ANCHOR)
BearSSL::X509List trustAnchor(SENSORLOG_TLS_TRUST_ANCHOR);
#elif !defined(SENSORLOG_TLS_FINGERPRINT)
#error "SENSORLOG_TLS 1 needs SENSORLOG_TLS_FINGERPRINT or SENSORLOG_TLS_TRUST_ANCHOR in secrets.h (sensorlog tls fingerprint prints the former)."
#endif
#else
WiFiClient client;
#endif
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
char hostName[sensorlog::kMaxHostnameLength + 1];
char bootId[sensorlog::kBootIdLength + 1];
uint32_t bootCount = 0;
sensorlog::Uptime uptime;
sensorlog::ReadingSchedule schedule(kReadingIntervalMs);
uint32_t taken = 0;
uint32_t nextStatusMs = 0;

#if SENSORLOG_WITH_DHT22
DHT dht(SENSORLOG_DHT_PIN, DHT22);
uint32_t dhtErrors = 0;
#endif

void logWifiUp() {
  const IPAddress ip = WiFi.localIP();
  SENSORLOG_LOG(Serial, "Wi-Fi up: IP %u.%u.%u.%u, RSSI %ld dBm.", ip[0], ip[1], ip[2], ip[3],
                (long)WiFi.RSSI());
}

void startJoin(uint32_t now) {
  SENSORLOG_LOG(Serial, "Joining Wi-Fi \"%s\".", SENSORLOG_WIFI_SSID);
  WiFi.begin(SENSORLOG_WIFI_SSID, SENSORLOG_WIFI_PASSWORD);
  wifiState = kWifiJoining;
  wifiAtMs = now;
}

// Joins, notices a lost access point, and starts over with backoff when a
// join takes too long. The core itself rejoins after a drop (setAutoReconnect).
void pollWifi(uint32_t now) {
  if (disconnectedEvent) {
    disconnectedEvent = false;
    SENSORLOG_LOG(Serial, "Wi-Fi disconnected (reason %u).", (unsigned)disconnectReason);
  }
  if (gotIpEvent) {
    gotIpEvent = false;
    SENSORLOG_LOG(Serial, "Wi-Fi got an IP address.");
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
        SENSORLOG_LOG(Serial, "Wi-Fi not joined after %lu ms (status %d); next attempt in %lu ms.",
                      (unsigned long)kWifiJoinTimeoutMs, (int)status, (unsigned long)delayMs);
      }
      break;
    case kWifiUp:
      if (status != WL_CONNECTED) {
        wifiState = kWifiJoining;
        wifiAtMs = now;
        SENSORLOG_LOG(Serial, "Wi-Fi lost (status %d); rejoining.", (int)status);
      }
      break;
  }
}

// The boot counter in the core's EEPROM emulation (a flash sector, written
// once per boot): returns this boot's count.
uint32_t countBoot() {
  sensorlog::BootRecord stored;
  sensorlog::BootRecord next;
  EEPROM.begin(sizeof(stored));
  EEPROM.get(0, stored);
  const uint32_t count = sensorlog::nextBootCount(stored, &next);
  EEPROM.put(0, next);
  if (!EEPROM.commit()) {
    SENSORLOG_LOG(Serial, "Could not write the boot counter to flash: boot %lu is not remembered.",
                  (unsigned long)count);
  }
  EEPROM.end();
  return count;
}

void recordStatus() {
  const rst_info *reset = ESP.getResetInfoPtr();
  sensorlog::BoardStatus status;
  status.taken = taken;
  status.dropped = uplink.dropped();
  status.skipped = schedule.skipped();
  status.reconnects = uplink.reconnects();
  status.uptimeS = uptime.seconds();
  status.freeHeap = sensorlog::freeMemory();
  status.boots = bootCount;
  status.resetCause = reset ? reset->reason : 0;
  char fields[sensorlog::kMaxFieldsLength + 1];
  sensorlog::LineBuilder line(fields, sizeof(fields));
  sensorlog::addStatusFields(line, status);
  uplink.record(fields);
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
  taken++;
}

}  // namespace

void setup() {
  Serial.begin(SENSORLOG_SERIAL_BAUD);
  sensorlog::waitForSerial(Serial, SENSORLOG_SERIAL_WAIT_MS);
  Serial.println();

  uint8_t mac[6];
  WiFi.macAddress(mac);
  sensorlog::makeDeviceName(deviceName, sizeof(deviceName), SENSORLOG_DEVICE_NAME, "esp8266", mac);
  sensorlog::makeHostname(hostName, sizeof(hostName), deviceName);
  bootCount = countBoot();

  WiFi.persistent(false);  // do not write the credentials to flash at every boot
  WiFi.mode(WIFI_STA);
  // Only now: the core warns that the hardware RNG may be pseudo-random while
  // the radio is off. The boot counter keeps the id new even if it were.
  sensorlog::EntropyPool pool;
  for (int i = 0; i < 4; i++) pool.add(ESP.random());
  pool.add(ESP.getChipId());
  sensorlog::formatBootId(sensorlog::bootIdFor(pool, bootCount), bootId);

  SENSORLOG_LOG(Serial, "Boot: device=%s boot=%s boots=%lu board=esp8266 server=%s:%u interval_ms=%lu buffer=%u acks=%d window=%u token=%s tls=%d.",
                deviceName, bootId, (unsigned long)bootCount, SENSORLOG_SERVER_HOST,
                (unsigned)SENSORLOG_SERVER_PORT, (unsigned long)kReadingIntervalMs,
                (unsigned)SENSORLOG_BUFFER_READINGS, SENSORLOG_ACKS, (unsigned)SENSORLOG_WINDOW,
                SENSORLOG_TOKEN[0] ? "set" : "none", SENSORLOG_TLS);
  if (!SENSORLOG_HAVE_SECRETS_H) {
    SENSORLOG_LOG(Serial, "No secrets.h: using the Wi-Fi settings built in (copy secrets.h.example to secrets.h).");
  }

  WiFi.setAutoReconnect(true);
  if (!WiFi.hostname(hostName)) {
    SENSORLOG_LOG(Serial, "The Wi-Fi refused the host name \"%s\"; DHCP goes without it.", hostName);
  }
  gotIpHandler = WiFi.onStationModeGotIP([](const WiFiEventStationModeGotIP &) {
    gotIpEvent = true;
  });
  disconnectedHandler = WiFi.onStationModeDisconnected([](const WiFiEventStationModeDisconnected &event) {
    disconnectReason = (uint8_t)event.reason;
    disconnectedEvent = true;
  });
  client.setTimeout(SENSORLOG_TCP_TIMEOUT_MS);
#if SENSORLOG_TLS && defined(SENSORLOG_TLS_TRUST_ANCHOR)
  client.setTrustAnchors(&trustAnchor);
#elif SENSORLOG_TLS
  if (!client.setFingerprint(SENSORLOG_TLS_FINGERPRINT)) {
    SENSORLOG_LOG(Serial, "SENSORLOG_TLS_FINGERPRINT is not 20 hex bytes: every TLS connection will fail.");
  }
#endif
  WiFiClient::setDefaultNoDelay(true);  // one line per packet, no Nagle delay

#if SENSORLOG_WITH_DHT22
  dht.begin();
#endif

  uplink.begin(deviceName, bootId, ESP.random() ^ (uint32_t)pool.value());
  jitter = sensorlog::Jitter(ESP.random() ^ (uint32_t)(pool.value() >> 32));
  wifiAtMs = millis();
  schedule.start(millis());
  nextStatusMs = millis();
}

void loop() {
  const uint32_t now = millis();
  uptime.update(now);
  pollWifi(now);

  uint32_t skippedNow = 0;
  if (schedule.due(millis(), &skippedNow)) {
    if (skippedNow > 0) {
      // More than a whole interval behind (a long blocking call).
      SENSORLOG_LOG(Serial, "Reading schedule fell behind: %lu readings skipped, %lu since boot.",
                    (unsigned long)skippedNow, (unsigned long)schedule.skipped());
    }
    takeReading();
    if (sensorlog::reached(millis(), nextStatusMs)) {
      recordStatus();
      nextStatusMs = millis() + SENSORLOG_STATUS_INTERVAL_MS;
    }
  }

  uplink.poll(wifiState == kWifiUp);
}
