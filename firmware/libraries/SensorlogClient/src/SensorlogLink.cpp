#include "SensorlogLink.h"

#include <stdio.h>
#include <string.h>

#include "SensorlogBoard.h"
#include "SensorlogLog.h"
#include "SensorlogReply.h"
#include "SensorlogWatchdog.h"

namespace sensorlog {

namespace {

void copyText(char *out, size_t size, const char *text) {
  strncpy(out, text ? text : "", size - 1);
  out[size - 1] = '\0';
}

}  // namespace

Link::Link(Client &client, ReadingBuffer &buffer, Print &log, const LinkSettings &settings)
  : client_(client), buffer_(buffer), log_(log), settings_(settings), backoff_(settings.retryMinMs, settings.retryMaxMs), jitter_(1), state_(kIdle), seq_(0), delivered_(0), inflight_(0), nextAttemptMs_(0), greetingSentMs_(0), lastProgressMs_(0), attempts_(0), connections_(0), rxLength_(0) {
  device_[0] = '\0';
  bootId_[0] = '\0';
  if (settings_.window == 0) settings_.window = 1;
}

void Link::begin(const char *device, const char *bootId, uint32_t jitterSeed) {
  copyText(device_, sizeof(device_), device);
  copyText(bootId_, sizeof(bootId_), bootId);
  jitter_ = Jitter(jitterSeed);
  nextAttemptMs_ = millis();
}

uint32_t Link::record(const char *fields) {
  const uint32_t seq = ++seq_;
  const uint32_t now = millis();
  uint32_t droppedSeq = 0;
  if (buffer_.push(seq, now, fields, &droppedSeq)) {
    // The oldest reading goes; if it was on its way, one less is in flight.
    if (inflight_ > 0) inflight_--;
    SENSORLOG_LOG(log_, "Buffer full (%lu readings): dropped seq=%lu, %lu dropped since boot.",
                  (unsigned long)buffer_.capacity(), (unsigned long)droppedSeq,
                  (unsigned long)buffer_.dropped());
  }
  const char *kept = buffer_.empty() ? "" : buffer_.at(buffer_.size() - 1).fields;
  SENSORLOG_LOG(log_, "Reading taken: seq=%lu ts=%lu %s", (unsigned long)seq, (unsigned long)now, kept);
  return seq;
}

void Link::poll(bool networkUp) {
  if (!networkUp) {
    if (state_ != kIdle) {
      closeSocket();
      SENSORLOG_LOG(log_, "Wi-Fi is down: connection closed; %lu waiting.",
                    (unsigned long)buffer_.size());
    }
    return;
  }
  if (state_ == kIdle) {
    if (buffer_.empty() || !reached(millis(), nextAttemptMs_)) return;
    connect();
    if (state_ == kIdle) return;
  }
  readReplies();
  if (state_ == kGreeting) {
    if (!client_.connected()) {
      fail(SENSORLOG_TEXT("The server closed the connection before OK HELLO"));
    } else if (millis() - greetingSentMs_ >= settings_.greetingTimeoutMs) {
      fail(SENSORLOG_TEXT("No OK HELLO from the server in time"));
    }
    return;
  }
  if (state_ != kReady) return;
  if (!client_.connected()) {
    fail(SENSORLOG_TEXT("Connection lost"));
    return;
  }
  sendWindow();
  if (state_ == kReady && inflight_ > 0 && millis() - lastProgressMs_ >= settings_.ackTimeoutMs) {
    fail(SENSORLOG_TEXT("No ACK from the server in time"));
  }
}

void Link::connect() {
  attempts_++;
  SENSORLOG_LOG(log_, "Connecting to %s:%u (attempt %lu, %lu waiting).", settings_.host,
                (unsigned)settings_.port, (unsigned long)attempts_, (unsigned long)buffer_.size());
  const uint32_t started = millis();
  bool connected;
  {
    BlockingCall guard(settings_.connectMaxMs);
    connected = client_.connect(settings_.host, settings_.port) != 0;
  }
  if (!connected) {
    fail(SENSORLOG_TEXT("Connect failed"));
    return;
  }
  connections_++;
  // HELLO <device> [token=<token>] [ack=1] boot=<id> (docs/protocol.md, "Greeting").
  const bool withToken = settings_.token && settings_.token[0] != '\0';
  char hello[kMaxDeviceLength + kMaxTokenLength + 64];
  const int n = SENSORLOG_SNPRINTF(hello, sizeof(hello), "HELLO %s%s%s%s boot=%s\n", device_,
                                   withToken ? " token=" : "", withToken ? settings_.token : "",
                                   settings_.acks ? " ack=1" : "", bootId_);
  if (n <= 0 || (size_t)n >= sizeof(hello)
      || client_.write((const uint8_t *)hello, (size_t)n) != (size_t)n) {
    fail(SENSORLOG_TEXT("Sending the greeting failed"));
    return;
  }
  rxLength_ = 0;
  inflight_ = 0;
  SENSORLOG_LOG(log_, "Connected in %lu ms; greeting sent.", (unsigned long)(millis() - started));
  if (settings_.acks) {
    state_ = kGreeting;
    greetingSentMs_ = millis();
  } else {
    state_ = kReady;
  }
}

void Link::readReplies() {
  // Bounded per call so that a chatty server cannot starve loop().
  for (int budget = 512; budget > 0 && client_.available() > 0; budget--) {
    const int c = client_.read();
    if (c < 0) break;
    if (c == '\r') continue;
    if (c != '\n') {
      // An overlong line is cut, not dropped: its start says what it is.
      if (rxLength_ < sizeof(rx_) - 1) rx_[rxLength_++] = (char)c;
      continue;
    }
    rx_[rxLength_] = '\0';
    rxLength_ = 0;
    handleReply(rx_);
    if (state_ == kIdle) return;  // the reply ended the connection
  }
}

void Link::handleReply(const char *line) {
  uint32_t seq = 0;
  switch (parseReply(line, &seq)) {
    case kReplyOkHello:
      if (state_ == kGreeting) {
        state_ = kReady;
        lastProgressMs_ = millis();
        SENSORLOG_LOG(log_, "Server accepted the greeting; %lu waiting.",
                      (unsigned long)buffer_.size());
      }
      return;
    case kReplyAck:
      acknowledge(seq);
      return;
    case kReplyErrSeq:
      SENSORLOG_LOG(log_, "Server could not store seq=%lu (\"%s\"); it stays buffered.",
                    (unsigned long)seq, line);
      fail(SENSORLOG_TEXT("Server error"));
      return;
    case kReplyErrConnection:
      SENSORLOG_LOG(log_, "Server said \"%s\".", line);
      fail(SENSORLOG_TEXT("Server error"));
      return;
    case kReplyUnknown:
      SENSORLOG_LOG(log_, "Ignored a reply: \"%s\".", line);
      return;
  }
}

void Link::acknowledge(uint32_t seq) {
  // ACKs arrive in the order the readings were sent, oldest first. A reading
  // older than the acknowledged one that got no ACK of its own is one the
  // daemon already counts as written (it keeps the highest seq per boot).
  bool found = false;
  while (!buffer_.empty() && buffer_.at(0).seq <= seq) {
    const uint32_t done = buffer_.at(0).seq;
    buffer_.popOldest();
    if (inflight_ > 0) inflight_--;
    delivered_++;
    found = true;
    SENSORLOG_LOG(log_, "Acknowledged seq=%lu (%lu waiting).", (unsigned long)done,
                  (unsigned long)buffer_.size());
  }
  if (found) {
    lastProgressMs_ = millis();
    backoff_.reset();
  } else {
    SENSORLOG_LOG(log_, "ACK %lu matches no waiting reading.", (unsigned long)seq);
  }
}

void Link::sendWindow() {
  while (state_ == kReady && inflight_ < settings_.window && inflight_ < buffer_.size()) {
    Reading &r = buffer_.at(inflight_);
    char line[kMaxFieldsLength + 32];
    const int n = SENSORLOG_SNPRINTF(line, sizeof(line), "seq=%lu ts=%lu%s%s\n", (unsigned long)r.seq,
                                     (unsigned long)r.takenMs, r.fields[0] ? " " : "", r.fields);
    if (n <= 0 || (size_t)n >= sizeof(line)
        || client_.write((const uint8_t *)line, (size_t)n) != (size_t)n) {
      fail(SENSORLOG_TEXT("Write failed"));
      return;
    }
    if (r.sends < 0xFF) r.sends++;
    if (r.sends == 1) {
      SENSORLOG_LOG(log_, "Sent seq=%lu.", (unsigned long)r.seq);
    } else {
      SENSORLOG_LOG(log_, "Resent seq=%lu (send %u).", (unsigned long)r.seq, (unsigned)r.sends);
    }
    if (!settings_.acks) {
      // Send and forget, as the original boards did: written is delivered.
      buffer_.popOldest();
      delivered_++;
      continue;
    }
    if (inflight_ == 0) lastProgressMs_ = millis();
    inflight_++;
  }
}

void Link::fail(const char *whyText) {
  char why[64];
  copyTextOut(why, sizeof(why), whyText);
  closeSocket();
  const uint32_t delay = backoff_.next(jitter_.next());
  nextAttemptMs_ = millis() + delay;
  SENSORLOG_LOG(log_, "%s; %lu waiting; next attempt in %lu ms.", why,
                (unsigned long)buffer_.size(), (unsigned long)delay);
}

void Link::closeSocket() {
  client_.stop();
  state_ = kIdle;
  inflight_ = 0;
  rxLength_ = 0;
}

}  // namespace sensorlog
