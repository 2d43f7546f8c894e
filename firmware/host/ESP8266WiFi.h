// Host shim: the station-mode subset of the ESP8266 core's ESP8266WiFi library
// (core 3.x signatures). Joining is simulated (HostSim.h); WiFiClient is a POSIX
// socket. Event handlers run between two loop() calls, as the core runs them
// from its system task, and are unsubscribed when the returned handle is dropped.
#ifndef HOST_ESP8266WIFI_H
#define HOST_ESP8266WIFI_H

#include <functional>
#include <memory>

#include "Arduino.h"
#include "HostTcpClient.h"

#if !defined(ESP8266)
#error "ESP8266WiFi.h is the ESP8266 library: build the esp8266 sketch with -DESP8266."
#endif

typedef enum {
  WL_NO_SHIELD = 255,
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL = 1,
  WL_SCAN_COMPLETED = 2,
  WL_CONNECTED = 3,
  WL_CONNECT_FAILED = 4,
  WL_CONNECTION_LOST = 5,
  WL_WRONG_PASSWORD = 6,
  WL_DISCONNECTED = 7
} wl_status_t;

typedef enum WiFiMode {
  WIFI_OFF = 0,
  WIFI_STA = 1,
  WIFI_AP = 2,
  WIFI_AP_STA = 3
} WiFiMode_t;

enum WiFiDisconnectReason {
  WIFI_DISCONNECT_REASON_UNSPECIFIED = 1,
  WIFI_DISCONNECT_REASON_ASSOC_LEAVE = 8,
  WIFI_DISCONNECT_REASON_BEACON_TIMEOUT = 200,
  WIFI_DISCONNECT_REASON_NO_AP_FOUND = 201,
  WIFI_DISCONNECT_REASON_AUTH_FAIL = 202,
};

struct WiFiEventStationModeGotIP {
  IPAddress ip;
  IPAddress mask;
  IPAddress gw;
};

struct WiFiEventStationModeDisconnected {
  uint8_t bssid[6];
  WiFiDisconnectReason reason;
};

struct WiFiEventHandlerOpaque {
  virtual ~WiFiEventHandlerOpaque() {}
};
typedef std::shared_ptr<WiFiEventHandlerOpaque> WiFiEventHandler;

class WiFiClient : public HostTcpClient {
public:
  WiFiClient() {
    _timeout = 5000;  // the core's default, also the connect() limit
  }
  void setNoDelay(bool noDelay) {
    setNoDelayOption(noDelay);
  }
  bool getNoDelay() const {
    return noDelayOption();
  }
  // Applied by every connect(), as in the core (which resets a per-client
  // setNoDelay() at connect).
  static void setDefaultNoDelay(bool noDelay);
  static bool getDefaultNoDelay();

protected:
  unsigned long connectTimeoutMs() const override {
    return _timeout;
  }
  void afterConnect() override {
    setNoDelayOption(getDefaultNoDelay());
  }
};

class ESP8266WiFiClass {
public:
  ESP8266WiFiClass();

  bool mode(WiFiMode_t mode);
  void persistent(bool persistent);
  bool setAutoReconnect(bool autoReconnect);
  bool hostname(const char *name);
  wl_status_t begin(const char *ssid, const char *passphrase = nullptr);
  bool disconnect(bool wifioff = false);
  wl_status_t status();
  bool isConnected();
  int32_t RSSI();
  IPAddress localIP();
  uint8_t *macAddress(uint8_t *mac);

  WiFiEventHandler onStationModeGotIP(std::function<void(const WiFiEventStationModeGotIP &)> f);
  WiFiEventHandler onStationModeDisconnected(std::function<void(const WiFiEventStationModeDisconnected &)> f);

  // Host only: runs the event handlers; called by the shim after each loop().
  static void dispatchEvents();

private:
  bool autoReconnect_;
  bool everConnected_;
};

extern ESP8266WiFiClass WiFi;

#endif
