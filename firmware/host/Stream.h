// Host shim: Arduino's Stream, without the blocking parse helpers (the sketches
// never use them: everything is read byte by byte with available()/read()).
#ifndef HOST_STREAM_H
#define HOST_STREAM_H

#include "Print.h"

class Stream : public Print {
public:
  Stream()
    : _timeout(1000) {}
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int peek() = 0;

  void setTimeout(unsigned long timeout) {
    _timeout = timeout;
  }
  unsigned long getTimeout() const {
    return _timeout;
  }

protected:
  unsigned long _timeout;
};

#endif
