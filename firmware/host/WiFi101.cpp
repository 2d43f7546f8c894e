#include "WiFi101.h"

#include <string.h>

#include "HostSim.h"

WiFiClass WiFi;

WiFiClass::WiFiClass()
  : timeout_(60000), everConnected_(false) {
  strcpy(version_, "19.6.1");
}

void WiFiClass::setPins(int8_t, int8_t, int8_t, int8_t) {}

void WiFiClass::setTimeout(unsigned long timeout) {
  timeout_ = timeout;
}

char *WiFiClass::firmwareVersion() {
  return version_;
}

uint8_t WiFiClass::begin(const char *, const char *) {
  host::wifiBegin();
  const uint64_t start = host::monotonicMs();
  while (!host::wifiAssociated()) {
    if (host::monotonicMs() - start >= timeout_ || host::stopRequested()) {
      // The real library gives up here and stops trying until the next begin().
      host::wifiDisconnect();
      return WL_IDLE_STATUS;
    }
    delay(5);
  }
  everConnected_ = true;
  return WL_CONNECTED;
}

void WiFiClass::disconnect() {
  host::wifiDisconnect();
}

uint8_t WiFiClass::status() {
  if (host::wifiAssociated()) return WL_CONNECTED;
  if (host::wifiWanted()) {
    // Lost: WiFi101 closes all sockets and needs a new begin().
    host::wifiDisconnect();
  }
  return everConnected_ ? WL_DISCONNECTED : WL_IDLE_STATUS;
}

int32_t WiFiClass::RSSI() {
  if (!host::wifiAssociated()) return -100;
  return -50 - (int32_t)(host::chipId() % 20u) - (int32_t)(host::osRandom() % 4u);
}

uint8_t *WiFiClass::macAddress(uint8_t *mac) {
  const uint32_t id = host::chipId();
  mac[0] = 0xF8;  // Microchip (Atmel) OUI F8:F0:05 of the ATWINC1500
  mac[1] = 0xF0;
  mac[2] = 0x05;
  mac[3] = (uint8_t)(id >> 16);
  mac[4] = (uint8_t)(id >> 8);
  mac[5] = (uint8_t)id;
  return mac;
}

uint32_t WiFiClass::localIP() {
  if (!host::wifiAssociated()) return 0;
  return (uint32_t)IPAddress(192, 168, 4, (uint8_t)(10 + host::chipId() % 200u));
}

void WiFiClass::lowPowerMode() {}

void WiFiClass::noLowPowerMode() {}
