// sensorlog board: Adafruit Feather M0 WiFi (SAMD21 + ATWINC1500, WiFi101).
//
// Takes a reading every SENSORLOG_INTERVAL_MS (analog pin A0, battery voltage,
// Wi-Fi RSSI, uptime; optionally a DHT22), keeps it in a RAM ring buffer and
// sends it to `sensorlog serve` over TCP until the daemon acknowledges it. The
// server may be down, the Wi-Fi may drop: readings go on being taken on
// schedule and are sent, oldest first, when the link is back. loop() is a state
// machine timed with millis(); the long calls are WiFi101's WiFi.begin(),
// bounded by WiFi.setTimeout(), and WiFiClient::connect(), a fixed 20 s. See
// firmware/README.md for flashing and the serial log, docs/protocol.md for the
// wire protocol.
//
// Never hang: the SAMD21 watchdog (Adafruit_SleepyDog, SENSORLOG_WATCHDOG_MS,
// about 16 s at most) resets the board unless loop() pats it. WiFi.begin() and
// connect() may take longer than that without being stuck: each runs inside a
// sensorlog::BlockingCall, during which the SysTick hook below pats the
// watchdog, but only until the call's own limit has passed; a call stuck past
// it resets the board one watchdog period later (SensorlogWatchdog.h).
//
// Settings: config.h (and your secrets.h, from secrets.h.example).
// Shared code: the SensorlogClient library in firmware/libraries.

#include <Adafruit_SleepyDog.h>
#include <FlashStorage.h>
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
static_assert(sizeof(SENSORLOG_TOKEN) <= sensorlog::kMaxTokenLength + 1, "SENSORLOG_TOKEN is too long");

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
  sensorlog::kWifi101ConnectMaxMs,
  SENSORLOG_TOKEN,
};

#if SENSORLOG_TLS
// TLS by the ATWINC1500 itself: it checks the server's certificate against the
// root certificates uploaded to it (README, "TLS").
WiFiSSLClient client;
#else
WiFiClient client;
#endif
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
uint32_t bootCount = 0;
uint8_t resetCause = 0;
sensorlog::Uptime uptime;
sensorlog::ReadingSchedule schedule(kReadingIntervalMs);
uint32_t taken = 0;
uint32_t nextStatusMs = 0;

// The boot counter: one flash row, rewritten once per boot. Uploading a sketch
// erases it (it is part of the image): the count starts again at 1.
FlashStorage(bootStore, sensorlog::BootRecord);

// An open BlockingCall: the SysTick hook pats the watchdog until blockingUntilMs.
volatile bool blockingOpen = false;
volatile uint32_t blockingUntilMs = 0;

void blockingBegin(uint32_t maxMs) {
  Watchdog.reset();
  blockingUntilMs = millis() + maxMs;
  blockingOpen = true;
}

void blockingEnd() {
  blockingOpen = false;
  Watchdog.reset();
}

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
        SENSORLOG_LOG(Serial, "Joining Wi-Fi \"%s\" (waits up to %lu ms).", SENSORLOG_WIFI_SSID,
                      (unsigned long)SENSORLOG_WIFI_JOIN_TIMEOUT_MS);
        uint8_t status;
        {
          sensorlog::BlockingCall guard(SENSORLOG_WIFI_JOIN_TIMEOUT_MS + 2000);
          status = WiFi.begin(SENSORLOG_WIFI_SSID, SENSORLOG_WIFI_PASSWORD);
        }
        if (status == WL_CONNECTED) {
          wifiState = kWifiUp;
          wifiBackoff.reset();
          const IPAddress ip = WiFi.localIP();
          SENSORLOG_LOG(Serial, "Wi-Fi up: IP %u.%u.%u.%u, RSSI %ld dBm.", ip[0], ip[1], ip[2],
                        ip[3], (long)WiFi.RSSI());
        } else {
          const uint32_t delayMs = wifiBackoff.next(jitter.next());
          wifiAtMs = millis() + delayMs;
          SENSORLOG_LOG(Serial, "Wi-Fi not joined (status %u); next attempt in %lu ms.",
                        (unsigned)status, (unsigned long)delayMs);
        }
      }
      break;
    case kWifiUp:
      if (WiFi.status() != WL_CONNECTED) {
        wifiState = kWifiWaiting;
        wifiAtMs = now;
        SENSORLOG_LOG(Serial, "Wi-Fi lost; rejoining.");
      }
      break;
  }
}

uint32_t countBoot() {
  sensorlog::BootRecord stored;
  sensorlog::BootRecord next;
  bootStore.read(&stored);
  const uint32_t count = sensorlog::nextBootCount(stored, &next);
  bootStore.write(next);
  return count;
}

void recordStatus() {
  sensorlog::BoardStatus status;
  status.taken = taken;
  status.dropped = uplink.dropped();
  status.skipped = schedule.skipped();
  status.reconnects = uplink.reconnects();
  status.uptimeS = uptime.seconds();
  status.freeHeap = sensorlog::freeMemory();
  status.boots = bootCount;
  status.resetCause = resetCause;
  char fields[sensorlog::kMaxFieldsLength + 1];
  sensorlog::LineBuilder line(fields, sizeof(fields));
  sensorlog::addStatusFields(line, status);
  uplink.record(fields);
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
  taken++;
}

}  // namespace

// Called by the core's SysTick handler every millisecond (a weak function of
// the SAMD core); returning 0 lets the core count the tick.
extern "C" int sysTickHook(void) {
  static uint16_t ticks = 0;
  if (blockingOpen && ++ticks >= 1000) {
    ticks = 0;
    if (!sensorlog::reached(millis(), blockingUntilMs)) Watchdog.reset();
  }
  return 0;
}

void setup() {
  Serial.begin(SENSORLOG_SERIAL_BAUD);
  sensorlog::waitForSerial(Serial, SENSORLOG_SERIAL_WAIT_MS);

  resetCause = Watchdog.resetCause();
  const int watchdogMs = Watchdog.enable(SENSORLOG_WATCHDOG_MS);
  const sensorlog::BlockingHooks hooks = { blockingBegin, blockingEnd };
  sensorlog::setBlockingHooks(hooks);
  bootCount = countBoot();

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
  // The boot counter, mixed in last, keeps the id new even if this pool
  // happened to come out as at an earlier power-on.
  sensorlog::formatBootId(sensorlog::bootIdFor(pool, bootCount), bootId);

  SENSORLOG_LOG(Serial, "Boot: device=%s boot=%s boots=%lu board=feather_m0 server=%s:%u interval_ms=%lu buffer=%u acks=%d window=%u token=%s tls=%d.",
                deviceName, bootId, (unsigned long)bootCount, SENSORLOG_SERVER_HOST,
                (unsigned)SENSORLOG_SERVER_PORT, (unsigned long)kReadingIntervalMs,
                (unsigned)SENSORLOG_BUFFER_READINGS, SENSORLOG_ACKS, (unsigned)SENSORLOG_WINDOW,
                SENSORLOG_TOKEN[0] ? "set" : "none", SENSORLOG_TLS);
  SENSORLOG_LOG(Serial, "Watchdog: %d ms (reset cause 0x%02x).", watchdogMs, (unsigned)resetCause);
  if (!SENSORLOG_HAVE_SECRETS_H) {
    SENSORLOG_LOG(Serial, "No secrets.h: using the Wi-Fi settings built in (copy secrets.h.example to secrets.h).");
  }

  if (moduleStatus == WL_NO_SHIELD) {
    wifiState = kWifiNoModule;
    SENSORLOG_LOG(Serial, "No ATWINC1500 answered: readings stay in RAM (%u at most).",
                  (unsigned)SENSORLOG_BUFFER_READINGS);
  } else {
    SENSORLOG_LOG(Serial, "ATWINC1500 firmware %s.", WiFi.firmwareVersion());
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
  schedule.start(millis());
  nextStatusMs = millis();
}

void loop() {
  Watchdog.reset();
  const uint32_t now = millis();
  uptime.update(now);
  pollWifi(now);

  uint32_t skippedNow = 0;
  if (schedule.due(millis(), &skippedNow)) {
    if (skippedNow > 0) {
      // More than a whole interval behind (WiFi.begin() or connect() blocked).
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
