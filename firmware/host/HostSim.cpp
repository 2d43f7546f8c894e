#include "HostSim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace host {

namespace {

volatile sig_atomic_t gStop = 0;

struct Settings {
  bool haveServer = false;
  char serverHost[256] = { 0 };
  char serverPort[16] = { 0 };
  uint32_t chipId = 0;
  unsigned long joinMs = 200;
  const char *downFile = nullptr;
};

Settings gSettings;

const int kMaxHooks = 8;
void (*gHooks[kMaxHooks])() = {};
int gHookCount = 0;

const int kMaxSockets = 16;
SocketOwner *gSockets[kMaxSockets] = {};

// Simulated association.
bool gWanted = false;
bool gAssociated = false;
uint64_t gJoinStartMs = 0;
bool gJoining = false;
const int kMaxEvents = 8;
WifiEvent gEvents[kMaxEvents] = {};
int gEventCount = 0;
uint64_t gLastDownCheckMs = 0;
bool gDownCached = false;

void onSignal(int) {
  gStop = 1;
}

[[noreturn]] void die(const char *what, const char *value) {
  fprintf(stderr, "[host] Bad %s: \"%s\".\n", what, value ? value : "");
  exit(2);
}

unsigned long envNumber(const char *name, unsigned long fallback, int base = 10) {
  const char *text = getenv(name);
  if (!text || !*text) return fallback;
  char *end = nullptr;
  errno = 0;
  const unsigned long long value = strtoull(text, &end, base);
  if (errno || !end || *end) die(name, text);
  return (unsigned long)value;
}

void pushEvent(WifiEvent e) {
  if (gEventCount < kMaxEvents) gEvents[gEventCount++] = e;
}

bool apOutOfRange() {
  if (!gSettings.downFile) return false;
  const uint64_t now = monotonicMs();
  if (now - gLastDownCheckMs >= 20 || gLastDownCheckMs == 0) {
    struct stat st;
    gDownCached = stat(gSettings.downFile, &st) == 0;
    gLastDownCheckMs = now;
  }
  return gDownCached;
}

void dropAllSockets() {
  for (int i = 0; i < kMaxSockets; i++) {
    if (gSockets[i]) gSockets[i]->dropConnection();
  }
}

}  // namespace

void init() {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const char *server = getenv("SIM_SERVER");
  if (server && *server) {
    const char *colon = strrchr(server, ':');
    if (!colon || colon == server || !colon[1]) die("SIM_SERVER (want host:port)", server);
    const size_t hostLen = (size_t)(colon - server);
    if (hostLen >= sizeof(gSettings.serverHost) || strlen(colon + 1) >= sizeof(gSettings.serverPort)) {
      die("SIM_SERVER", server);
    }
    memcpy(gSettings.serverHost, server, hostLen);
    strcpy(gSettings.serverPort, colon + 1);
    gSettings.haveServer = true;
    struct sockaddr_in probe;
    if (!resolveTarget("", 0, &probe)) die("SIM_SERVER (cannot resolve)", server);
    fprintf(stderr, "[host] Every connection of this board goes to %s (SIM_SERVER).\n", server);
  }
  gSettings.chipId = (uint32_t)envNumber("SIM_CHIP_ID", ((unsigned long)getpid() * 2654435761ul) & 0xFFFFFFul, 16);
  gSettings.joinMs = envNumber("SIM_WIFI_JOIN_MS", 200);
  const char *down = getenv("SIM_WIFI_DOWN_FILE");
  if (down && *down) gSettings.downFile = down;
}

bool stopRequested() {
  return gStop != 0;
}

void addAfterLoopHook(void (*hook)()) {
  if (gHookCount < kMaxHooks) gHooks[gHookCount++] = hook;
}

void afterLoop() {
  wifiPoll();
  for (int i = 0; i < gHookCount; i++) gHooks[i]();
}

uint32_t chipId() {
  return gSettings.chipId;
}

uint64_t monotonicMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool resolveTarget(const char *hostName, uint16_t port, void *sockaddrIn) {
  char portText[16];
  const char *node = hostName;
  const char *service = portText;
  if (gSettings.haveServer) {
    node = gSettings.serverHost;
    service = gSettings.serverPort;
  } else {
    snprintf(portText, sizeof(portText), "%u", (unsigned)port);
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo *result = nullptr;
  if (getaddrinfo(node, service, &hints, &result) != 0 || !result) return false;
  memcpy(sockaddrIn, result->ai_addr, sizeof(struct sockaddr_in));
  freeaddrinfo(result);
  return true;
}

bool noEntropy() {
  static const int none = [] {
    const char *text = getenv("SIM_ENTROPY");
    if (!text || !*text) return 0;
    if (strcmp(text, "none") != 0) die("SIM_ENTROPY (only \"none\")", text);
    return 1;
  }();
  return none != 0;
}

namespace {
unsigned long envMs(const char *name, unsigned long fallback) {
  const char *text = getenv(name);
  if (!text || !*text) return fallback;
  char *end = nullptr;
  const unsigned long value = strtoul(text, &end, 10);
  if (*end != '\0') die(name, text);
  return value;
}
const uint64_t gStartMs = monotonicMs();
}  // namespace

void connectDelay() {
  static const unsigned long delayMs = envMs("SIM_CONNECT_DELAY_MS", 0);
  const uint64_t until = monotonicMs() + delayMs;
  while (monotonicMs() < until && !stopRequested()) usleep(1000);
}

bool writeHangs() {
  static const unsigned long afterMs = envMs("SIM_WRITE_HANG_AFTER_MS", 0);
  return afterMs != 0 && monotonicMs() - gStartMs >= afterMs;
}

bool flashRead(void *data, unsigned size) {
  memset(data, 0xFF, size);
  const char *path = getenv("SIM_FLASH_FILE");
  if (!path || !*path) return false;
  FILE *f = fopen(path, "rb");
  if (!f) return errno == ENOENT;  // never written: erased flash
  const size_t n = fread(data, 1, size, f);
  const bool ok = !ferror(f);
  fclose(f);
  if (n < size) memset((char *)data + n, 0xFF, size - n);
  return ok;
}

bool flashWrite(const void *data, unsigned size) {
  const char *path = getenv("SIM_FLASH_FILE");
  if (!path || !*path) return false;
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  const bool ok = fwrite(data, 1, size, f) == size;
  return fclose(f) == 0 && ok;
}

uint32_t osRandom() {
  if (noEntropy()) return 0;
  uint32_t value = 0;
  if (getrandom(&value, sizeof(value), 0) != (ssize_t)sizeof(value)) {
    value = (uint32_t)monotonicMs() * 2654435761u ^ (uint32_t)getpid();
  }
  return value;
}

void wifiBegin() {
  gWanted = true;
  if (!gAssociated) {
    gJoining = true;
    gJoinStartMs = monotonicMs();
  }
}

void wifiDisconnect() {
  gWanted = false;
  gJoining = false;
  if (gAssociated) {
    gAssociated = false;
    dropAllSockets();
    pushEvent(kWifiLost);
  }
}

bool wifiAssociated() {
  wifiPoll();
  return gAssociated;
}

bool wifiWanted() {
  return gWanted;
}

void wifiPoll() {
  const bool outOfRange = apOutOfRange();
  if (gAssociated && outOfRange) {
    gAssociated = false;
    dropAllSockets();
    pushEvent(kWifiLost);
  }
  if (!gAssociated && gWanted) {
    if (outOfRange) {
      gJoining = false;  // the join timer starts again once the AP is back
    } else if (!gJoining) {
      gJoining = true;
      gJoinStartMs = monotonicMs();
    } else if (monotonicMs() - gJoinStartMs >= gSettings.joinMs) {
      gJoining = false;
      gAssociated = true;
      pushEvent(kWifiGotIp);
    }
  }
}

WifiEvent wifiTakeEvent() {
  if (gEventCount == 0) return kWifiNone;
  const WifiEvent e = gEvents[0];
  memmove(gEvents, gEvents + 1, sizeof(gEvents[0]) * (size_t)(gEventCount - 1));
  gEventCount--;
  return e;
}

unsigned long wifiJoinMs() {
  return gSettings.joinMs;
}

void registerSocket(SocketOwner *owner) {
  for (int i = 0; i < kMaxSockets; i++) {
    if (!gSockets[i]) {
      gSockets[i] = owner;
      return;
    }
  }
  fprintf(stderr, "[host] More than %d WiFiClient objects; the Wi-Fi simulation ignores the rest.\n", kMaxSockets);
}

void unregisterSocket(SocketOwner *owner) {
  for (int i = 0; i < kMaxSockets; i++) {
    if (gSockets[i] == owner) gSockets[i] = nullptr;
  }
}

}  // namespace host
