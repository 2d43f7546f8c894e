// Host shim: Adafruit's "DHT sensor library" (1.4.x API), returning a plausible
// room climate so that the SENSORLOG_WITH_DHT22 build compiles and runs here.
#ifndef HOST_DHT_H
#define HOST_DHT_H

#include "Arduino.h"

#define DHT11 11
#define DHT22 22
#define DHT21 21
#define AM2301 21

class DHT {
public:
  DHT(uint8_t pin, uint8_t type, uint8_t count = 6);
  void begin(uint8_t usec = 55);
  float readTemperature(bool S = false, bool force = false);
  float readHumidity(bool force = false);

private:
  uint8_t pin_;
  uint8_t type_;
};

#endif
