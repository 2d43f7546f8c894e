// Host shim: the simulated board around the sketch. Everything is configured by
// environment variables, read once at start-up (documented in firmware/README.md):
//
//   SIM_SERVER=host:port   where every TCP connect of the board goes: the address
//                          that stands for "the server, as seen from the board's
//                          network" (unset: the host and port the sketch asks for)
//   SIM_CHIP_ID=hex        the chip id (ESP8266) and the low MAC bytes, so that
//                          several simulated boards differ (default: from the pid)
//   SIM_RUN_MS=n           stop cleanly after n ms (default 120000; bounded always)
//   SIM_WIFI_JOIN_MS=n     how long joining the access point takes (default 200)
//   SIM_WIFI_DOWN_FILE=p   while this file exists the access point is out of range:
//                          Wi-Fi drops and the board's sockets are closed
//   SIM_MILLIS_START=n     millis() at power-on (default 0); set near 4294967295
//                          to run the sketch through the 49.7-day wrap-around
//   SIM_FLASH_FILE=p       the board's flash that survives power cycles (EEPROM
//                          emulation, FlashStorage): this file (unset: none, as
//                          a board freshly flashed at every power-on)
//   SIM_ENTROPY=none       no randomness at all: ESP.random() and the OS random
//                          numbers are 0, analog inputs have no noise, micros()
//                          counts whole seconds; a board's boot id then depends on
//                          its chip id and its boot counter only
//   SIM_CONNECT_DELAY_MS=n every TCP connect takes n ms longer (a slow module or
//                          network: WiFi101's connect() may take up to 20 s)
//   SIM_WRITE_HANG_AFTER_MS=n  from n ms after power-on, every write() to a socket
//                          never returns (as WiFi101's write loop retrying a full
//                          buffer forever): only a watchdog gets the board out
//
// SIGTERM and SIGINT stop the main loop cleanly after the current loop().
#ifndef HOST_SIM_H
#define HOST_SIM_H

#include <stdint.h>

namespace host {

void init();
bool stopRequested();
// Called by main() between two loop() calls: advances the simulated Wi-Fi and
// runs the hooks registered below (event callbacks of the ESP8266 core).
void afterLoop();
void addAfterLoopHook(void (*hook)());

uint32_t chipId();
uint64_t monotonicMs();
// Where connect(host, port) really goes: SIM_SERVER if set. Returns false if the
// address cannot be resolved.
bool resolveTarget(const char *host, uint16_t port, void *sockaddrIn);
// A random 32-bit value from the operating system (0 with SIM_ENTROPY=none).
uint32_t osRandom();
bool noEntropy();

// SIM_CONNECT_DELAY_MS: sleeps that long (until a stop signal at most).
void connectDelay();
// SIM_WRITE_HANG_AFTER_MS: true once writes should hang.
bool writeHangs();

// The persistent flash (SIM_FLASH_FILE): reads size bytes at offset 0 into data
// (0xFF, as erased flash, where the file has none); writes them back. Both
// return false without a flash file or on an I/O error.
bool flashRead(void *data, unsigned size);
bool flashWrite(const void *data, unsigned size);

// The simulated access point and association.
enum WifiEvent { kWifiNone,
                 kWifiGotIp,
                 kWifiLost };
void wifiBegin();       // start joining (and keep rejoining while wanted)
void wifiDisconnect();  // leave, and stop rejoining
bool wifiAssociated();  // joined and has an IP address
bool wifiWanted();
void wifiPoll();
WifiEvent wifiTakeEvent();  // the oldest event not yet taken
unsigned long wifiJoinMs();

// Open sockets, closed all at once when the simulated Wi-Fi drops.
class SocketOwner {
public:
  virtual void dropConnection() = 0;

protected:
  ~SocketOwner() {}
};
void registerSocket(SocketOwner *owner);
void unregisterSocket(SocketOwner *owner);

}  // namespace host

#endif
