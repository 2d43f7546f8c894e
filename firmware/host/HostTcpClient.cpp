#include "HostTcpClient.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "Arduino.h"

HostTcpClient::HostTcpClient()
  : fd_(-1), peerClosed_(false), broken_(false), noDelay_(false), rxStart_(0), rxLength_(0) {
  host::registerSocket(this);
}

HostTcpClient::~HostTcpClient() {
  stop();
  host::unregisterSocket(this);
}

int HostTcpClient::connect(IPAddress ip, uint16_t port) {
  char text[16];
  snprintf(text, sizeof(text), "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
  return connect(text, port);
}

int HostTcpClient::connect(const char *hostName, uint16_t port) {
  stop();
  // Without an access point there is no route to anywhere.
  if (!host::wifiAssociated()) return 0;
  host::connectDelay();
  struct sockaddr_in addr;
  if (!host::resolveTarget(hostName, port, &addr)) return 0;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return 0;
  if (::connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      close(fd);
      return 0;
    }
    struct pollfd p;
    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    const unsigned long timeout = connectTimeoutMs();
    int ready;
    do {
      ready = poll(&p, 1, (int)timeout);
    } while (ready < 0 && errno == EINTR && !host::stopRequested());
    int error = 0;
    socklen_t length = sizeof(error);
    if (ready <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
      close(fd);
      return 0;
    }
  }
  if (noDelay_) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  fd_ = fd;
  peerClosed_ = false;
  broken_ = false;
  rxStart_ = rxLength_ = 0;
  afterConnect();
  return 1;
}

size_t HostTcpClient::write(uint8_t b) {
  return write(&b, 1);
}

size_t HostTcpClient::write(const uint8_t *buf, size_t size) {
  if (fd_ < 0 || broken_ || size == 0) return 0;
  if (host::writeHangs()) {
    while (!host::stopRequested()) usleep(1000);  // stuck until power-off
    return 0;
  }
  size_t done = 0;
  const uint64_t deadline = host::monotonicMs() + _timeout;
  while (done < size) {
    const ssize_t n = send(fd_, buf + done, size - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      const uint64_t now = host::monotonicMs();
      if (now >= deadline) break;
      struct pollfd p;
      p.fd = fd_;
      p.events = POLLOUT;
      p.revents = 0;
      poll(&p, 1, (int)(deadline - now));
      continue;
    }
    broken_ = true;
    break;
  }
  if (done < size) setWriteError();
  return done;
}

void HostTcpClient::pump() {
  if (fd_ < 0 || peerClosed_ || broken_) return;
  if (rxStart_ > 0 && rxLength_ > 0) memmove(rx_, rx_ + rxStart_, rxLength_);
  rxStart_ = 0;
  const size_t room = sizeof(rx_) - rxLength_;
  if (room == 0) return;
  const ssize_t n = recv(fd_, rx_ + rxLength_, room, MSG_DONTWAIT);
  if (n > 0) {
    rxLength_ += (size_t)n;
  } else if (n == 0) {
    peerClosed_ = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    broken_ = true;
  }
}

int HostTcpClient::available() {
  pump();
  return (int)rxLength_;
}

int HostTcpClient::read() {
  uint8_t b;
  return read(&b, 1) == 1 ? b : -1;
}

int HostTcpClient::read(uint8_t *buf, size_t size) {
  if (rxLength_ == 0) pump();
  if (rxLength_ == 0) return -1;
  const size_t n = size < rxLength_ ? size : rxLength_;
  memcpy(buf, rx_ + rxStart_, n);
  rxStart_ += n;
  rxLength_ -= n;
  if (rxLength_ == 0) rxStart_ = 0;
  return (int)n;
}

int HostTcpClient::peek() {
  if (rxLength_ == 0) pump();
  return rxLength_ ? rx_[rxStart_] : -1;
}

void HostTcpClient::flush() {}

void HostTcpClient::stop() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  peerClosed_ = false;
  broken_ = false;
  rxStart_ = rxLength_ = 0;
}

uint8_t HostTcpClient::connected() {
  pump();
  if (fd_ < 0) return 0;
  return (!peerClosed_ && !broken_) || rxLength_ > 0;
}

HostTcpClient::operator bool() {
  return connected();
}

void HostTcpClient::setNoDelayOption(bool noDelay) {
  noDelay_ = noDelay;
  if (fd_ >= 0) {
    int value = noDelay ? 1 : 0;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &value, sizeof(value));
  }
}

void HostTcpClient::dropConnection() {
  // The access point went away: nothing more arrives and nothing leaves.
  if (fd_ >= 0) {
    shutdown(fd_, SHUT_RDWR);
    broken_ = true;
    rxStart_ = rxLength_ = 0;
  }
}
