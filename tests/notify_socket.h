// A datagram socket set as NOTIFY_SOCKET: what the daemon tells systemd.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgslotd::test {

class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("bind " + path);
    }
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  // Reads messages until one starts with `prefix`; returns it, or "" after
  // `timeout`. Every message read is kept in all().
  std::string WaitFor(const std::string& prefix, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string m(buf, n);
      all_.push_back(m);
      if (m.rfind(prefix, 0) == 0) return m;
    }
    return "";
  }
  const std::vector<std::string>& all() const { return all_; }
  // Reads and keeps every message already queued, without waiting.
  void Drain() {
    char buf[4096];
    for (ssize_t n; (n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
      all_.push_back(std::string(buf, n));
    }
  }

 private:
  std::string path_;
  int fd_;
  std::vector<std::string> all_;
};

}  // namespace pgslotd::test
