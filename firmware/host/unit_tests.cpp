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
  s.connectMaxMs = 1000;
  s.token = "";
  return s;
}

// Polls until `done()` holds, for at most `maxMs`. Tests that polled for a fixed time
// failed on a busy machine: a poll descheduled past a timeout, or past the whole window,
// saw the wrong state.
template<typename Done>
void pollUntil(sensorlog::Link &link, Done done, unsigned long maxMs) {
  const unsigned long start = millis();
  while (!done() && millis() - start < maxMs) {
    link.poll(true);
    delay(1);
  }
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

// The boot counter: erased or garbled flash starts at 1, a valid record counts
// on; with the same (even no) entropy, each count gives another boot id.
void testBootCounter() {
  sensorlog::BootRecord erased;
  memset(&erased, 0xFF, sizeof(erased));
  sensorlog::BootRecord next;
  CHECK(sensorlog::nextBootCount(erased, &next) == 1);
  sensorlog::BootRecord stored = next;
  CHECK(sensorlog::nextBootCount(stored, &next) == 2);
  stored = next;
  CHECK(sensorlog::nextBootCount(stored, &next) == 3);
  sensorlog::BootRecord zeros;
  memset(&zeros, 0, sizeof(zeros));
  CHECK(sensorlog::nextBootCount(zeros, &next) == 1);  // a fresh FlashStorage image
  stored.count += 5;                                   // check no longer matches
  CHECK(sensorlog::nextBootCount(stored, &next) == 1);

  sensorlog::EntropyPool none;
  std::vector<uint64_t> ids;
  for (uint32_t count = 1; count <= 1000; count++) ids.push_back(sensorlog::bootIdFor(none, count));
  bool distinct = true;
  for (size_t i = 0; i < ids.size(); i++) {
    for (size_t j = i + 1; j < ids.size(); j++) distinct = distinct && ids[i] != ids[j];
  }
  CHECK(distinct);
  CHECK(sensorlog::bootIdFor(none, 7) == sensorlog::bootIdFor(none, 7));
}

void testHostname() {
  char host[sensorlog::kMaxHostnameLength + 1];
  sensorlog::makeHostname(host, sizeof(host), "esp8266-a1b2c3");
  CHECK(strcmp(host, "esp8266-a1b2c3") == 0);
  sensorlog::makeHostname(host, sizeof(host), "Kitchen_Sensor.2");
  CHECK(strcmp(host, "kitchen-sensor-2") == 0);
  sensorlog::makeHostname(host, sizeof(host), "_.-x__y-._");
  CHECK(strcmp(host, "x-y") == 0);
  sensorlog::makeHostname(host, sizeof(host), "...");
  CHECK(strcmp(host, "sensorlog") == 0);
  // 32 characters at most, and no '-' left at the end after the cut.
  sensorlog::makeHostname(host, sizeof(host), "abcdefghijklmnopqrstuvwxyz01234-6789");
  CHECK(strcmp(host, "abcdefghijklmnopqrstuvwxyz01234") == 0);
  sensorlog::makeHostname(host, sizeof(host), "abcdefghijklmnopqrstuvwxyz012345678");
  CHECK(strlen(host) == 32);
  char small[5];
  sensorlog::makeHostname(small, sizeof(small), "abcdefg");
  CHECK(strcmp(small, "abcd") == 0);
}

void testScheduleAndStatus() {
  sensorlog::ReadingSchedule schedule(100);
  schedule.start(1000);
  uint32_t skipped = 99;
  CHECK(schedule.due(1000, &skipped) && skipped == 0);
  CHECK(!schedule.due(1099, &skipped));
  CHECK(schedule.due(1150, &skipped) && skipped == 0);  // late within the interval
  CHECK(schedule.nextMs() == 1200);
  CHECK(schedule.due(1450, &skipped) && skipped == 2);  // 1200 and 1300 passed
  CHECK(schedule.skipped() == 2 && schedule.nextMs() == 1500);
  sensorlog::ReadingSchedule wrap(100);
  wrap.start(0xFFFFFFF0u);
  CHECK(wrap.due(0xFFFFFFF0u, &skipped) && wrap.due(0x54u, &skipped) && skipped == 0);

  sensorlog::BoardStatus status = { 1440, 2, 3, 4, 86400, 40112, 12, 6 };
  char fields[sensorlog::kMaxFieldsLength + 1];
  sensorlog::LineBuilder line(fields, sizeof(fields));
  sensorlog::addStatusFields(line, status);
  CHECK(strcmp(fields, "fw_taken=1440 fw_dropped=2 fw_skipped=3 fw_reconnects=4 fw_uptime_s=86400 fw_heap=40112 fw_boots=12 fw_reset=6") == 0);
  // Huge counts: the last fields are left out whole, never cut.
  sensorlog::BoardStatus big = { 4294967295u, 4294967295u, 4294967295u, 4294967295u, 4294967295u, 81920, 4294967295u, 6 };
  sensorlog::LineBuilder full(fields, sizeof(fields));
  sensorlog::addStatusFields(full, big);
  CHECK(full.skipped() > 0 && strncmp(fields, "fw_taken=4294967295 fw_dropped=", 31) == 0);
  CHECK(fields[strlen(fields) - 1] != '=');
}

int blockingBegins = 0;
int blockingEnds = 0;
uint32_t blockingMaxMs = 0;

// The token goes into the greeting, reconnects are counted, and connect() runs
// inside a BlockingCall.
void testLinkTokenAndReconnects() {
  const sensorlog::BlockingHooks hooks = {
    [](uint32_t maxMs) {
      blockingBegins++;
      blockingMaxMs = maxMs;
    },
    []() {
      blockingEnds++;
    },
  };
  sensorlog::setBlockingHooks(hooks);
  FakeClient client;
  sensorlog::Reading slots[4];
  sensorlog::ReadingBuffer buffer(slots, 4);
  LogSink log;
  sensorlog::LinkSettings s = settings(2);
  s.token = "s3cr3t-T0ken";
  s.connectMaxMs = 21000;
  sensorlog::Link link(client, buffer, log, s);
  link.begin("dev", "b00t", 5);
  link.record("x=1");
  link.poll(true);
  CHECK(blockingBegins == 1 && blockingEnds == 1 && blockingMaxMs == 21000);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0] == "HELLO dev token=s3cr3t-T0ken ack=1 boot=b00t");
  CHECK(link.reconnects() == 0);
  client.open = false;
  delay(5);
  link.poll(true);  // notices the cut
  for (int i = 0; i < 20 && client.connects < 2; i++) {
    delay(1);
    link.poll(true);
  }
  CHECK(client.connects == 2 && link.reconnects() == 1);
  CHECK(blockingBegins == 2 && blockingEnds == 2);
  sensorlog::setBlockingHooks(sensorlog::BlockingHooks{ nullptr, nullptr });

  // The longest token (kMaxTokenLength; one more does not compile: the sketches
  // static_assert it) with the longest device name still fits the greeting.
  const std::string longToken(sensorlog::kMaxTokenLength, 't');
  const std::string longDevice(sensorlog::kMaxDeviceLength, 'd');
  const std::string longBoot(sensorlog::kBootIdLength, 'b');
  FakeClient client2;
  sensorlog::ReadingBuffer buffer2(slots, 4);
  s.token = longToken.c_str();
  sensorlog::Link longLink(client2, buffer2, log, s);
  longLink.begin(longDevice.c_str(), longBoot.c_str(), 5);
  longLink.record("x=1");
  longLink.poll(true);
  lines = client2.takeLines();
  CHECK(lines.size() == 1 && lines[0] == "HELLO " + longDevice + " token=" + longToken + " ack=1 boot=" + longBoot);
}

// Greets, sends within the window, drops readings on ACK, resends after a cut.
void testLinkAcks() {
  FakeClient client;
  LogSink log;
  sensorlog::Reading slots[8];
  sensorlog::ReadingBuffer buffer(slots, 8);
  // Long timeouts: this test is about acknowledgements, not timeouts.
  sensorlog::LinkSettings s = settings(2);
  s.greetingTimeoutMs = 10000;
  s.ackTimeoutMs = 10000;
  sensorlog::Link link(client, buffer, log, s);
  link.begin("dev", "b00t", 1);
  link.poll(true);
  CHECK(client.connects == 0);  // nothing to send: no connection
  for (int i = 0; i < 3; i++) link.record("x=1");
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 1 && lines[0] == "HELLO dev ack=1 boot=b00t");
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
  pollUntil(
    link, [&] {
      return link.state() == sensorlog::Link::kGreeting;
    },
    2000);
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
  sensorlog::LinkSettings s = settings(4);
  s.greetingTimeoutMs = 10000;  // the ACK timeout is the one under test
  sensorlog::Link link(client, buffer, log, s);
  link.begin("dev", "b", 7);
  link.record("x=1");
  link.poll(true);
  client.reply("OK HELLO dev");
  link.poll(true);
  client.takeLines();
  client.reply("ERR 1 disk-full");
  link.poll(true);
  CHECK(link.state() == sensorlog::Link::kIdle && link.waiting() == 1);
  pollUntil(
    link, [&] {
      return link.state() == sensorlog::Link::kGreeting;
    },
    2000);
  CHECK(link.state() == sensorlog::Link::kGreeting);
  client.reply("OK HELLO dev");
  const unsigned long sent = millis();  // seq 1 goes in the next poll, not before
  link.poll(true);
  std::vector<std::string> lines = client.takeLines();
  CHECK(lines.size() == 2 && lines[1].find("seq=1 ") == 0);
  pollUntil(
    link, [&] {
      return log.contains("No ACK from the server in time");
    },
    2000);
  CHECK(log.contains("No ACK from the server in time"));  // no ACK within ackTimeoutMs
  CHECK(millis() - sent >= 50);
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
  testBootCounter();
  testHostname();
  testScheduleAndStatus();
  testLinkTokenAndReconnects();
  testLinkAcks();
  testLinkErrorsAndTimeouts();
  testLinkOverflow();
  testLinkWithoutAcks();
  printf("SensorlogClient: %d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
