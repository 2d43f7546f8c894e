#include "DHT.h"

#include "HostSim.h"

DHT::DHT(uint8_t pin, uint8_t type, uint8_t)
  : pin_(pin), type_(type) {}

void DHT::begin(uint8_t) {}

float DHT::readTemperature(bool fahrenheit, bool) {
  const float celsius = 21.0f + (float)(host::osRandom() % 20u) / 10.0f;
  return fahrenheit ? celsius * 1.8f + 32.0f : celsius;
}

float DHT::readHumidity(bool) {
  return 40.0f + (float)(host::osRandom() % 100u) / 10.0f;
}
