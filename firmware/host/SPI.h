// Host shim: SPI is how the Feather M0 talks to its ATWINC1500; nothing to do here.
#ifndef HOST_SPI_H
#define HOST_SPI_H

class SPIClass {
public:
  void begin() {}
  void end() {}
};

extern SPIClass SPI;

#endif
