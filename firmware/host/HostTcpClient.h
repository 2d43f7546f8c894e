// Host shim: a TCP client over a POSIX socket with the semantics both boards'
// WiFiClient share: connect() blocks up to a timeout, write() blocks until the
// bytes are handed to the network stack (or fails), available()/read() never
// block, connected() stays true while received bytes are unread.
#ifndef HOST_TCP_CLIENT_H
#define HOST_TCP_CLIENT_H

#include "Client.h"
#include "HostSim.h"

class HostTcpClient : public Client, private host::SocketOwner {
public:
  HostTcpClient();
  HostTcpClient(const HostTcpClient &) = delete;
  HostTcpClient &operator=(const HostTcpClient &) = delete;
  virtual ~HostTcpClient();

  int connect(IPAddress ip, uint16_t port) override;
  int connect(const char *host, uint16_t port) override;
  size_t write(uint8_t b) override;
  size_t write(const uint8_t *buf, size_t size) override;
  using Print::write;
  int available() override;
  int read() override;
  int read(uint8_t *buf, size_t size) override;
  int peek() override;
  void flush() override;
  void stop() override;
  uint8_t connected() override;
  operator bool() override;

protected:
  // How long connect() may block: the board library's own limit.
  virtual unsigned long connectTimeoutMs() const = 0;
  // Runs after every successful connect().
  virtual void afterConnect() {}
  void setNoDelayOption(bool noDelay);
  bool noDelayOption() const {
    return noDelay_;
  }

private:
  void dropConnection() override;
  void pump();

  int fd_;
  bool peerClosed_;
  bool broken_;
  bool noDelay_;
  size_t rxStart_;
  size_t rxLength_;
  uint8_t rx_[1460];
};

#endif
