// The board's side of the connection to the daemon, as a non-blocking state
// machine driven from loop():
//
//   idle ──(network up, readings waiting, backoff over)──> connect, send HELLO
//   greeting ──(OK HELLO)──> ready          (only when asking for ACKs)
//   ready: send the oldest unsent readings, at most `window` unacknowledged;
//          ACK <seq> removes readings from the buffer, oldest first
//   any failure (connect, write, close, ERR, no reply in time) ──> stop the
//          socket, keep every reading, wait a backoff delay, start again: the
//          unacknowledged readings are resent, oldest first
//
// A reading leaves the buffer only when its ACK arrives (or, with acks off,
// once written to the socket, as the original boards did), or when the buffer
// overflows. The daemon recognises a resent reading by (device, boot, seq).
//
// Blocking: only inside the board's Client::connect() and write(), which are
// bounded by the core (ESP8266: WiFiClient::setTimeout, 5 s by default;
// WiFi101: 20 s). connect() runs inside a BlockingCall of connectMaxMs, so
// that a watchdog with a shorter period lets it finish (SensorlogWatchdog.h).
#ifndef SENSORLOG_LINK_H
#define SENSORLOG_LINK_H

#include <Arduino.h>
#include <Client.h>

#include "SensorlogBackoff.h"
#include "SensorlogBuffer.h"

namespace sensorlog {

static const size_t kMaxDeviceLength = 64;
// Longest device token sent in the greeting (sensorlog token add makes 43 characters).
static const size_t kMaxTokenLength = 128;

struct LinkSettings {
  const char *host;            // the daemon's address, e.g. "192.168.1.10"
  uint16_t port;               // 8090 by default
  bool acks;                   // ask for ACKs (ack=1) and resend until acknowledged
  uint8_t window;              // readings sent but not acknowledged, at most
  uint32_t retryMinMs;         // first reconnect delay
  uint32_t retryMaxMs;         // longest reconnect delay
  uint32_t greetingTimeoutMs;  // wait this long for OK HELLO
  uint32_t ackTimeoutMs;       // no ACK for this long while readings are out: reconnect
  uint32_t connectMaxMs;       // the longest the board's Client::connect() blocks
  const char *token;           // device token for the greeting (token=); "" or null: none
};

class Link {
public:
  enum State { kIdle,
               kGreeting,
               kReady };

  Link(Client &client, ReadingBuffer &buffer, Print &log, const LinkSettings &settings);

  // The device name and boot id of every greeting; call once, in setup().
  void begin(const char *device, const char *bootId, uint32_t jitterSeed);

  // Buffers a reading (fields as built by LineBuilder) under the next seq and
  // returns that seq. Never blocks; drops the oldest reading if the buffer is full.
  uint32_t record(const char *fields);

  // Call from every loop(). networkUp: the board has Wi-Fi and an IP address.
  void poll(bool networkUp);

  State state() const {
    return state_;
  }
  // Readings not acknowledged yet (including those on their way).
  size_t waiting() const {
    return buffer_.size();
  }
  uint32_t dropped() const {
    return buffer_.dropped();
  }
  uint32_t lastSeq() const {
    return seq_;
  }
  uint32_t delivered() const {
    return delivered_;
  }
  // Connections opened to the server since boot, not counting the first.
  uint32_t reconnects() const {
    return connections_ > 0 ? connections_ - 1 : 0;
  }

private:
  void connect();
  void readReplies();
  void handleReply(const char *line);
  void acknowledge(uint32_t seq);
  void sendWindow();
  // whyText: SENSORLOG_TEXT("..."), a sentence without its period.
  void fail(const char *whyText);
  void closeSocket();

  Client &client_;
  ReadingBuffer &buffer_;
  Print &log_;
  LinkSettings settings_;
  char device_[kMaxDeviceLength + 1];
  char bootId_[33];
  Backoff backoff_;
  Jitter jitter_;
  State state_;
  uint32_t seq_;
  uint32_t delivered_;
  uint8_t inflight_;
  uint32_t nextAttemptMs_;
  uint32_t greetingSentMs_;
  uint32_t lastProgressMs_;
  uint32_t attempts_;
  uint32_t connections_;
  char rx_[64];
  uint8_t rxLength_;
};

}  // namespace sensorlog

#endif
