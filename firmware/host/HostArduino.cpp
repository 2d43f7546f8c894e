// Host shim: time, pins, analog inputs, random numbers and Serial.
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "Arduino.h"
#include "HostSim.h"

namespace {

uint64_t monotonicUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

// millis() and micros() count from the first call, as from power-on.
struct Clock {
  uint64_t startUs;
  uint32_t millisAtStart;
  Clock()
    : startUs(monotonicUs()), millisAtStart(0) {
    const char *text = getenv("SIM_MILLIS_START");
    if (text && *text) millisAtStart = (uint32_t)strtoul(text, nullptr, 10);
  }
};

Clock &boardClock() {
  static Clock c;
  return c;
}

#if defined(ARDUINO_ARCH_SAMD)
int gAnalogBits = 10;
#endif

}  // namespace

// The boards' counters are 32 bits wide and wrap; so do these.
unsigned long millis() {
  const Clock &c = boardClock();  // before reading the time: the first call starts it
  const uint64_t elapsedMs = (monotonicUs() - c.startUs) / 1000u;
  return (unsigned long)(uint32_t)(c.millisAtStart + elapsedMs);
}

unsigned long micros() {
  const Clock &c = boardClock();
  const uint64_t us = monotonicUs() - c.startUs;
  // Without entropy (SIM_ENTROPY=none) the timing jitter goes too.
  if (host::noEntropy()) return (unsigned long)(uint32_t)(us / 1000000u * 1000000u);
  return (unsigned long)(uint32_t)us;
}

void delay(unsigned long ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !host::stopRequested()) {}
}

void delayMicroseconds(unsigned int us) {
  struct timespec ts;
  ts.tv_sec = 0;
  ts.tv_nsec = (long)us * 1000L;
  nanosleep(&ts, nullptr);
}

void yield() {}

void pinMode(uint8_t, uint8_t) {}

void digitalWrite(uint8_t, uint8_t) {}

int digitalRead(uint8_t) {
  return LOW;
}

#if defined(ARDUINO_ARCH_SAMD)
// The Feather's free RAM (SensorlogBoard.h): what the real build leaves between
// its static data and the stack, about 18 KB, less what the stack uses.
namespace sensorlog {
uint32_t freeMemory() {
  return 18000 + host::osRandom() % 512;
}
}  // namespace sensorlog

void analogReadResolution(int bits) {
  if (bits >= 8 && bits <= 16) gAnalogBits = bits;
}
#endif

int analogRead(uint8_t pin) {
  const uint32_t noise = host::osRandom() % 8;
#if defined(ESP8266)
  // NodeMCU A0: 0..3.3 V through the board's divider, 10 bits.
  return pin == A0 ? (int)(300 + noise) : 0;
#else
  const uint32_t full = 1u << gAnalogBits;
  if (pin == A7) return (int)(full * 636u / 1000u);  // VBAT 4.2 V halved, of 3.3 V
  return (int)(full / 2 + noise);                    // an unconnected input floats
#endif
}

long random(long howbig) {
  if (howbig <= 0) return 0;
  return (long)(host::osRandom() % (unsigned long)howbig);
}

long random(long howsmall, long howbig) {
  if (howsmall >= howbig) return howsmall;
  return howsmall + random(howbig - howsmall);
}

void randomSeed(unsigned long) {}

HardwareSerial Serial;

namespace {
char gSerialLine[512];
size_t gSerialLength = 0;

void serialFlushLine() {
  if (gSerialLength == 0) return;
  fwrite(gSerialLine, 1, gSerialLength, stdout);
  fflush(stdout);
  gSerialLength = 0;
}
}  // namespace

void HardwareSerial::begin(unsigned long) {}

size_t HardwareSerial::write(uint8_t c) {
  gSerialLine[gSerialLength++] = (char)c;
  if (c == '\n' || gSerialLength == sizeof(gSerialLine)) serialFlushLine();
  return 1;
}

size_t HardwareSerial::write(const uint8_t *buffer, size_t size) {
  for (size_t i = 0; i < size; i++) write(buffer[i]);
  return size;
}

void HardwareSerial::flush() {
  serialFlushLine();
}
