// Small helpers for file descriptors: whole writes, and the eventfd that
// wakes a thread blocked in poll().
#pragma once

#include <cstddef>

namespace pgslotd {

// Writes all of [data, data+len) to a blocking descriptor, retrying on
// EINTR and short writes. Returns the errno of a failure, 0 on success;
// *done gets the bytes written.
int WriteFully(int fd, const char* data, size_t len, size_t* done);

// Wakes whoever polls the eventfd `fd` for POLLIN. Safe from any thread;
// wake-ups coalesce (one pending is as good as many).
void NotifyEventFd(int fd);
// Takes every pending wake-up off the eventfd `fd`, so that the next poll
// waits again (the reasons for waking live elsewhere, in flags).
void DrainEventFd(int fd);

// An eventfd (non-blocking, close-on-exec) owned by one object: a worker,
// the monitor, the supervisor. Its owner polls fd() and Drain()s it; any
// thread may Notify() it.
class WakeupFd {
 public:
  WakeupFd();
  ~WakeupFd();
  WakeupFd(const WakeupFd&) = delete;
  WakeupFd& operator=(const WakeupFd&) = delete;

  int fd() const { return fd_; }
  void Notify() const { NotifyEventFd(fd_); }
  void Drain() const { DrainEventFd(fd_); }

 private:
  int fd_;
};

}  // namespace pgslotd
