// Unit tests of the SensorlogClient library on the host: the ring buffer, the
// line builder, the backoff, the reply parser, and the Link state machine
// against a scripted Client. Run by `make -C firmware/host check`.
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "Arduino.h"
#include "SensorlogClient.h"

namespace {

int checks = 0;
int failures = 0;

#define CHECK(cond) \
  do { \
    checks++; \
    if (!(cond)) { \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++; \
    } \
  } while (0)

// Collects what the library logs.
class LogSink : public Print {
public:
  size_t write(uint8_t c) override {
    text += (char)c;
    return 1;
  }
  using Print::write;
  bool contains(const char *needle) const {
    return text.find(needle) != std::string::npos;
  }
  std::string text;
};

// A Client whose peer is the test: it records what the board writes and
// hands back the replies the test queues.
class FakeClient : public Client {
public:
  int connect(IPAddress, uint16_t) override {
    return connect("", 0);
  }
  int connect(const char *, uint16_t) override {
    connects++;
    if (refuse) return 0;
    open = true;
    return 1;
  }
  size_t write(uint8_t b) override {
    return write(&b, 1);
  }
  size_t write(const uint8_t *buf, size_t size) override {
    if (!open) return 0;
    sent.append((const char *)buf, size);
    return size;
  }
  using Print::write;
  int available() override {
    return open ? (int)(replies.size() - replyPos) : 0;
  }
  int read() override {
    if (available() <= 0) return -1;
    return (uint8_t)replies[replyPos++];
  }
  int read(uint8_t *buf, size_t size) override {
    size_t n = 0;
    while (n < size && available() > 0) buf[n++] = (uint8_t)read();
    return n ? (int)n : -1;
  }
  int peek() override {
    return available() > 0 ? (uint8_t)replies[replyPos] : -1;
  }
  void flush() override {}
  void stop() override {
    open = false;
    replies.clear();
    replyPos = 0;
  }
  uint8_t connected() override {
    return open;
  }
  operator bool() override {
    return open;
  }

  // Lines the board sent since the last call, without their newline.
  std::vector<std::string> takeLines() {
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t i = 0; i < sent.size(); i++) {
      if (sent[i] == '\n') {
        lines.push_back(sent.substr(start, i - start));
        start = i + 1;
      }
    }
    sent.erase(0, start);
    return lines;
  }
  void reply(const char *line) {
    replies += line;
    replies += "\n";
  }

  bool open = false;
  bool refuse = false;
  int connects = 0;
  std::string sent;
  std::string replies;
  size_t replyPos = 0;
};

sensorlog::LinkSettings settings(uint8_t window) {
  sensorlog::LinkSettings s;
  s.host = "127.0.0.1";
  s.port = 8090;
  s.acks = true;
  s.window = window;
  s.retryMinMs = 1;
  s.retryMaxMs = 2;
  s.greetingTimeoutMs = 50;
  s.ackTimeoutMs = 50;
  return s;
}

void pollFor(sensorlog::Link &link, unsigned long ms) {
  const unsigned long start = millis();
  do {
    link.poll(true);
    delay(1);
  } while (millis() - start < ms);
}

void testBuffer() {
  sensorlog::Reading slots[3];
  sensorlog::ReadingBuffer b(slots, 3);
  uint32_t dropped = 0;
  CHECK(!b.push(1, 10, "a=1", &dropped));
  CHECK(!b.push(2, 20, "a=2", &dropped));
  CHECK(!b.push(3, 30, "a=3", &dropped));
  CHECK(b.size() == 3 && b.dropped() == 0);
  CHECK(b.push(4, 40, "a=4", &dropped));  // full: seq 1 goes
  CHECK(dropped == 1 && b.dropped() == 1 && b.size() == 3);
  CHECK(b.at(0).seq == 2 && b.at(2).seq == 4 && strcmp(b.at(2).fields, "a=4") == 0);
  b.popOldest();
  CHECK(b.at(0).seq == 3 && b.size() == 2);
  std::string longFields(300, 'x');
  b.push(5, 50, longFields.c_str(), &dropped);
  CHECK(strlen(b.at(2).fields) == sensorlog::kMaxFieldsLength);
}

void testLineBuilder() {
  char buf[40];
  sensorlog::LineBuilder line(buf, sizeof(buf));
  line.add("rssi", -61).addUnsigned("heap", 41234ul).addFixed("v", 4.256f, 2).addFixed("t", -0.04f, 1);
  CHECK(strcmp(line.c_str(), "rssi=-61 heap=41234 v=4.26 t=0.0") == 0);
  const float nan = 0.0f / 0.0f;
  line.addFixed("nan", nan, 1);
  CHECK(line.skipped() == 1);
  line.add("this_key_does_not_fit", 123456789);
  CHECK(line.skipped() == 2);
  CHECK(strcmp(line.c_str(), "rssi=-61 heap=41234 v=4.26 t=0.0") == 0);
  char small[16];
  sensorlog::LineBuilder neg(small, sizeof(small));
  neg.addFixed("t", -12.25f, 1);
  CHECK(strcmp(neg.c_str(), "t=-12.3") == 0 || strcmp(neg.c_str(), "t=-12.2") == 0);
}

void testBackoff() {
  sensorlog::Backoff b(100, 800);
  for (int i = 0; i < 10; i++) {
    const uint32_t d = b.next(0xFFFFFFFFu - (uint32_t)i);
    CHECK(d >= 50 && d <= 800);
  }
  CHECK(b.failures() == 10);
  CHECK(b.next(0) == 400);  // at the cap: [400, 800], lowest draw
  b.reset();
  CHECK(b.next(0) == 50);
}

void testReplies() {
  uint32_t seq = 0;
  CHECK(sensorlog::parseReply("OK HELLO kitchen", &seq) == sensorlog::kReplyOkHello);
  CHECK(sensorlog::parseReply("ACK 42", &seq) == sensorlog::kReplyAck && seq == 42);
  CHECK(sensorlog::parseReply("ACK 4294967295", &seq) == sensorlog::kReplyAck && seq == 4294967295u);
  CHECK(sensorlog::parseReply("ACK 4294967296", &seq) == sensorlog::kReplyUnknown);
  CHECK(sensorlog::parseReply("ACK x", &seq) == sensorlog::kReplyUnknown);
  CHECK(sensorlog::parseReply("ERR 7 disk-full", &seq) == sensorlog::kReplyErrSeq && seq == 7);
  CHECK(sensorlog::parseReply("ERR - line-too-long", &seq) == sensorlog::kReplyErrConnection);
  CHECK(sensorlog::parseReply("ERR shutting-down", &seq) == sensorlog::kReplyErrConnection);
  CHECK(sensorlog::parseReply("ERRATIC", &seq) == sensorlog::kReplyUnknown);
  CHECK(sensorlog::parseReply("hello", &seq) == sensorlog::kReplyUnknown);
}

void testBootIdAndNames() {
  char id[sensorlog::kBootIdLength + 1];
  sensorlog::formatBootId(0x0123456789abcdefull, id);
  CHECK(strcmp(id, "0123456789abcdef") == 0);
  sensorlog::EntropyPool a, b;
  a.add(1);
  b.add(2);
  CHECK(a.value() != b.value());
  char name[20];
  const uint8_t mac[6] = { 0x5c, 0xcf, 0x7f, 0xa1, 0xb2, 0xc3 };
  sensorlog::makeDeviceName(name, sizeof(name), "", "esp8266", mac);
  CHECK(strcmp(name, "esp8266-a1b2c3") == 0);
  sensorlog::makeDeviceName(name, sizeof(name), "my kitchen/1", "esp8266", mac);
  CHECK(strcmp(name, "my-kitchen-1") == 0);
  CHECK(sensorlog::reached(5, 0xFFFFFFF0u));  // across the wrap
  CHECK(!sensorlog::reached(0xFFFFFFF0u, 5));
}

// Greets, sends within the window, drops readings on ACK, resends after a cut.
void testLinkAcks() {
  FakeClient client;
  LogSink log;
  sensorlog::Reading slots[8];
  sensorlog::ReadingBuffer buffer(slots, 8);
  sensorlog::Link link(client, buffer, log, settings(2));
  link.begin("dev", "b00t", 1);
  link.poll(true);
  CHECK(client.connects == 0);  // nothing to send: no connection
  for (int i = 0; i < 3; i++) link.record("x=1");
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0] == "HELLO dev boot=b00t ack=1");
  link.poll(true);
  CHECK(client.takeLines().empty());  // no readings before OK HELLO
  client.reply("OK HELLO dev");
  link.poll(true);
  lines = client.takeLines();
  CHECK(lines.size() == 2);  // window of 2
  CHECK(lines.size() == 2 && lines[0].find("seq=1 ts=") == 0 && lines[0].find(" x=1") != std::string::npos);
  client.reply("ACK 1");
  link.poll(true);
  lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0].find("seq=3 ") == 0);
  CHECK(link.waiting() == 2);
  // The connection drops before ACK 2 and 3: both are resent, oldest first.
  client.open = false;
  pollFor(link, 10);
  CHECK(link.state() == sensorlog::Link::kGreeting);
  client.reply("OK HELLO dev");
  link.poll(true);
  lines = client.takeLines();
  CHECK(lines.size() == 3 && lines[0].find("HELLO") == 0 && lines[1].find("seq=2 ") == 0 && lines[2].find("seq=3 ") == 0);
  client.reply("ACK 2");
  client.reply("ACK 3");
  link.poll(true);
  CHECK(link.waiting() == 0 && link.delivered() == 3);
  CHECK(log.contains("Resent seq=2 (send 2)."));
}

// An ERR for a reading keeps it and reconnects; no ACK in time reconnects too.
void testLinkErrorsAndTimeouts() {
  FakeClient client;
  LogSink log;
  sensorlog::Reading slots[4];
  sensorlog::ReadingBuffer buffer(slots, 4);
  sensorlog::Link link(client, buffer, log, settings(4));
  link.begin("dev", "b", 7);
  link.record("x=1");
  link.poll(true);
  client.reply("OK HELLO dev");
  link.poll(true);
  client.takeLines();
  client.reply("ERR 1 disk-full");
  link.poll(true);
  CHECK(link.state() == sensorlog::Link::kIdle && link.waiting() == 1);
  pollFor(link, 10);
  client.reply("OK HELLO dev");
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 2 && lines[1].find("seq=1 ") == 0);
  pollFor(link, 70);  // no ACK within ackTimeoutMs
  CHECK(log.contains("No ACK from the server in time"));
  CHECK(link.waiting() == 1);
  // The network goes away: the socket is closed, nothing is lost.
  link.poll(false);
  CHECK(link.state() == sensorlog::Link::kIdle && link.waiting() == 1);
}

// Overflow while readings are in flight: the oldest goes, the window stays right.
void testLinkOverflow() {
  FakeClient client;
  LogSink log;
  sensorlog::Reading slots[3];
  sensorlog::ReadingBuffer buffer(slots, 3);
  sensorlog::Link link(client, buffer, log, settings(2));
  link.begin("dev", "b", 3);
  link.record("x=1");
  link.poll(true);
  client.reply("OK HELLO dev");
  link.poll(true);
  link.record("x=2");
  link.poll(true);
  client.takeLines();  // HELLO, seq 1 and 2 are out
  link.record("x=3");
  link.record("x=4");  // seq 1 (in flight) is dropped
  CHECK(link.dropped() == 1 && link.waiting() == 3);
  CHECK(log.contains("dropped seq=1"));
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0].find("seq=3 ") == 0);  // 2 in flight again: seq 2 and 3
  // An ACK for the dropped reading is harmless.
  client.reply("ACK 1");
  client.reply("ACK 2");
  client.reply("ACK 3");
  link.poll(true);
  lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0].find("seq=4 ") == 0);
  client.reply("ACK 4");
  link.poll(true);
  CHECK(link.waiting() == 0 && link.delivered() == 3);
}

// Without acks (as the original boards): written means delivered.
void testLinkWithoutAcks() {
  FakeClient client;
  LogSink log;
  sensorlog::Reading slots[4];
  sensorlog::ReadingBuffer buffer(slots, 4);
  sensorlog::LinkSettings s = settings(1);
  s.acks = false;
  sensorlog::Link link(client, buffer, log, s);
  link.begin("dev", "b", 3);
  link.record("x=1");
  link.record("x=2");
  link.poll(true);
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 3 && lines[0] == "HELLO dev boot=b");
  CHECK(link.waiting() == 0 && link.delivered() == 2);
}

}  // namespace

// The shim's main() is not linked here; these satisfy Arduino.h's declarations.
void setup() {}
void loop() {}

int main() {
  testBuffer();
  testLineBuilder();
  testBackoff();
  testReplies();
  testBootIdAndNames();
  testLinkAcks();
  testLinkErrorsAndTimeouts();
  testLinkOverflow();
  testLinkWithoutAcks();
  printf("SensorlogClient: %d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
