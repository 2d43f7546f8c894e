#include "ESP8266WiFi.h"

#include <stdio.h>
#include <string.h>

#include <vector>

#include "HostSim.h"

namespace {

template<typename Event>
struct Handler : WiFiEventHandlerOpaque {
  explicit Handler(std::function<void(const Event &)> f)
    : callback(f) {}
  std::function<void(const Event &)> callback;
};

std::vector<std::weak_ptr<Handler<WiFiEventStationModeGotIP> > > gGotIp;
std::vector<std::weak_ptr<Handler<WiFiEventStationModeDisconnected> > > gDisconnected;

template<typename Event>
void fire(std::vector<std::weak_ptr<Handler<Event> > > &handlers, const Event &event) {
  for (size_t i = 0; i < handlers.size(); i++) {
    std::shared_ptr<Handler<Event> > h = handlers[i].lock();
    if (h) h->callback(event);
  }
}

bool gDefaultNoDelay = false;  // the core's default: Nagle on

}  // namespace

void WiFiClient::setDefaultNoDelay(bool noDelay) {
  gDefaultNoDelay = noDelay;
}

bool WiFiClient::getDefaultNoDelay() {
  return gDefaultNoDelay;
}

EspClass ESP;

uint32_t EspClass::getChipId() {
  return host::chipId() & 0xFFFFFFu;
}

uint32_t EspClass::getFreeHeap() {
  return 41000u - (host::osRandom() % 64u) * 8u;
}

rst_info *EspClass::getResetInfoPtr() {
  static rst_info info = { REASON_DEFAULT_RST, 0, 0, 0, 0, 0, 0 };
  return &info;
}

uint32_t EspClass::random() const {
  return host::osRandom();
}

ESP8266WiFiClass WiFi;

ESP8266WiFiClass::ESP8266WiFiClass()
  : autoReconnect_(true), everConnected_(false) {
  host::addAfterLoopHook(&ESP8266WiFiClass::dispatchEvents);
}

bool ESP8266WiFiClass::mode(WiFiMode_t) {
  return true;
}

void ESP8266WiFiClass::persistent(bool) {}

bool ESP8266WiFiClass::setAutoReconnect(bool autoReconnect) {
  autoReconnect_ = autoReconnect;
  return true;
}

// As the core 3.x: at most 32 characters, letters, digits and '-' only, not
// starting or ending with '-' (it refuses the name otherwise and returns false).
bool ESP8266WiFiClass::hostname(const char *name) {
  const size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > 32 || name[0] == '-' || name[n - 1] == '-') {
    fprintf(stderr, "[host] WiFi.hostname(\"%s\") refused.\n", name ? name : "");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      fprintf(stderr, "[host] WiFi.hostname(\"%s\") refused.\n", name);
      return false;
    }
  }
  return true;
}

wl_status_t ESP8266WiFiClass::begin(const char *, const char *) {
  // Returns at once; the SDK joins in the background (status() tells).
  host::wifiBegin();
  return status();
}

bool ESP8266WiFiClass::disconnect(bool) {
  host::wifiDisconnect();
  return true;
}

wl_status_t ESP8266WiFiClass::status() {
  if (host::wifiAssociated()) {
    everConnected_ = true;
    return WL_CONNECTED;
  }
  if (!host::wifiWanted()) return WL_IDLE_STATUS;
  return everConnected_ ? WL_CONNECTION_LOST : WL_DISCONNECTED;
}

bool ESP8266WiFiClass::isConnected() {
  return status() == WL_CONNECTED;
}

int32_t ESP8266WiFiClass::RSSI() {
  if (!host::wifiAssociated()) return 31;  // the SDK's "no value"
  return -45 - (int32_t)(host::chipId() % 20u) - (int32_t)(host::osRandom() % 4u);
}

IPAddress ESP8266WiFiClass::localIP() {
  if (!host::wifiAssociated()) return IPAddress();
  return IPAddress(192, 168, 4, (uint8_t)(10 + host::chipId() % 200u));
}

uint8_t *ESP8266WiFiClass::macAddress(uint8_t *mac) {
  const uint32_t id = host::chipId();
  mac[0] = 0x5C;  // Espressif OUI 5C:CF:7F; the low three bytes are the chip id
  mac[1] = 0xCF;
  mac[2] = 0x7F;
  mac[3] = (uint8_t)(id >> 16);
  mac[4] = (uint8_t)(id >> 8);
  mac[5] = (uint8_t)id;
  return mac;
}

WiFiEventHandler ESP8266WiFiClass::onStationModeGotIP(std::function<void(const WiFiEventStationModeGotIP &)> f) {
  std::shared_ptr<Handler<WiFiEventStationModeGotIP> > h(new Handler<WiFiEventStationModeGotIP>(f));
  gGotIp.push_back(h);
  return h;
}

WiFiEventHandler ESP8266WiFiClass::onStationModeDisconnected(std::function<void(const WiFiEventStationModeDisconnected &)> f) {
  std::shared_ptr<Handler<WiFiEventStationModeDisconnected> > h(new Handler<WiFiEventStationModeDisconnected>(f));
  gDisconnected.push_back(h);
  return h;
}

void ESP8266WiFiClass::dispatchEvents() {
  for (;;) {
    const host::WifiEvent e = host::wifiTakeEvent();
    if (e == host::kWifiNone) return;
    if (e == host::kWifiGotIp) {
      WiFiEventStationModeGotIP event;
      event.ip = WiFi.localIP();
      event.mask = IPAddress(255, 255, 255, 0);
      event.gw = IPAddress(192, 168, 4, 1);
      fire(gGotIp, event);
    } else {
      WiFiEventStationModeDisconnected event;
      memset(event.bssid, 0, sizeof(event.bssid));
      event.reason = host::wifiWanted() ? WIFI_DISCONNECT_REASON_BEACON_TIMEOUT : WIFI_DISCONNECT_REASON_ASSOC_LEAVE;
      fire(gDisconnected, event);
    }
  }
}
