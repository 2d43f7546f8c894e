#ifndef HOST_PRINTABLE_H
#define HOST_PRINTABLE_H

#include <stddef.h>

class Print;

class Printable {
public:
  virtual ~Printable() {}
  virtual size_t printTo(Print &p) const = 0;
};

#endif
