// Host shim: the subset of the Arduino core API that the sensorlog sketches and
// the SensorlogClient library use, over POSIX. Which board is emulated follows
// the same macros the real cores define: ESP8266 (NodeMCU 1.0) or
// ARDUINO_ARCH_SAMD (Adafruit Feather M0). Modelled on the ESP8266 core's
// tests/host. Everything the simulation needs to know comes from SIM_*
// environment variables (HostSim.h, firmware/README.md).
#ifndef HOST_ARDUINO_H
#define HOST_ARDUINO_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(ESP8266) && !defined(ARDUINO_ARCH_SAMD)
#error "Host shim: build with -DESP8266 or -DARDUINO_ARCH_SAMD (see firmware/host/Makefile)."
#endif

#if defined(SENSORLOG_TLS) && SENSORLOG_TLS
// The shim's sockets are plain TCP: TLS is BearSSL's (ESP8266) or the
// ATWINC1500's (Feather) on the boards, and firmware/build-boards.sh compiles it.
#error "The host shim does not simulate TLS: build it without SENSORLOG_TLS."
#endif

typedef uint8_t byte;
typedef bool boolean;

#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x0
#define OUTPUT 0x1
#define INPUT_PULLUP 0x2

#include "Client.h"
#include "HardwareSerial.h"
#include "IPAddress.h"
#include "Print.h"
#include "Printable.h"
#include "Stream.h"

#if defined(ESP8266)
// NodeMCU 1.0 (ESP-12E): pins_arduino.h of the ESP8266 core.
static const uint8_t A0 = 17;
static const uint8_t D0 = 16;
static const uint8_t D1 = 5;
static const uint8_t D2 = 4;
static const uint8_t D3 = 0;
static const uint8_t D4 = 2;
static const uint8_t D5 = 14;
static const uint8_t D6 = 12;
static const uint8_t D7 = 13;
static const uint8_t D8 = 15;
static const uint8_t LED_BUILTIN = 2;
#include "Esp.h"
// pgmspace.h: flash and RAM are one address space here.
#include <stdio.h>
#define PROGMEM
#define PGM_P const char*
#define PSTR(s) (s)
#define vsnprintf_P vsnprintf
#define snprintf_P snprintf
#define strncpy_P strncpy
#else
// Adafruit Feather M0 variant (variants/feather_m0/variant.h): A7 (PA07, the
// same pin as D9) is wired to VBAT through a 1:2 divider.
#define PIN_A0 (14ul)
#define PIN_A1 (15ul)
#define PIN_A2 (16ul)
#define PIN_A3 (17ul)
#define PIN_A4 (18ul)
#define PIN_A5 (19ul)
#define PIN_A6 (44ul)
#define PIN_A7 (45ul)
static const uint8_t A0 = PIN_A0;
static const uint8_t A1 = PIN_A1;
static const uint8_t A2 = PIN_A2;
static const uint8_t A3 = PIN_A3;
static const uint8_t A4 = PIN_A4;
static const uint8_t A5 = PIN_A5;
static const uint8_t A6 = PIN_A6;
static const uint8_t A7 = PIN_A7;
#define LED_BUILTIN (13u)
void analogReadResolution(int bits);
#endif

unsigned long millis();
unsigned long micros();
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);
void yield();

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
int digitalRead(uint8_t pin);
int analogRead(uint8_t pin);

long random(long howbig);
long random(long howsmall, long howbig);
void randomSeed(unsigned long seed);

// The sketch's two entry points; main() (HostMain.cpp) calls them.
void setup();
void loop();

#endif
