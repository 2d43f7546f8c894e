// Host shim: the subset of the WiFi101 library (0.16+) for the ATWINC1500 on the
// Adafruit Feather M0 WiFi that the sketch uses. As in the real library,
// WiFi.begin() blocks until joined or until the WiFi.setTimeout() limit
// (60 s by default), and a lost access point closes every socket.
#ifndef HOST_WIFI101_H
#define HOST_WIFI101_H

#include "Arduino.h"
#include "HostTcpClient.h"

#if !defined(ARDUINO_ARCH_SAMD)
#error "WiFi101.h is built for the Feather M0 here: build with -DARDUINO_ARCH_SAMD."
#endif

typedef enum {
  WL_NO_SHIELD = 255,
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL,
  WL_SCAN_COMPLETED,
  WL_CONNECTED,
  WL_CONNECT_FAILED,
  WL_CONNECTION_LOST,
  WL_DISCONNECTED,
  WL_AP_LISTENING,
  WL_AP_CONNECTED,
  WL_AP_FAILED,
  WL_PROVISIONING,
  WL_PROVISIONING_FAILED
} wl_status_t;

class WiFiClient : public HostTcpClient {
protected:
  // WiFiSocket::connect() waits up to 20 s for the module's answer.
  unsigned long connectTimeoutMs() const override {
    return 20000;
  }
};

class WiFiClass {
public:
  WiFiClass();

  void setPins(int8_t cs, int8_t irq, int8_t rst, int8_t en = -1);
  void setTimeout(unsigned long timeout);
  char *firmwareVersion();
  uint8_t begin(const char *ssid, const char *key);
  void disconnect();
  uint8_t status();
  int32_t RSSI();
  uint8_t *macAddress(uint8_t *mac);
  uint32_t localIP();
  void lowPowerMode();
  void noLowPowerMode();

private:
  unsigned long timeout_;
  bool everConnected_;
  char version_[9];
};

extern WiFiClass WiFi;

#endif
