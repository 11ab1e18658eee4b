#include "util/fd.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace pgslotd {

int WriteFully(int fd, const char* data, size_t len, size_t* done) {
  *done = 0;
  while (*done < len) {
    ssize_t n = ::write(fd, data + *done, len - *done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    *done += static_cast<size_t>(n);
  }
  return 0;
}

void NotifyEventFd(int fd) {
  uint64_t one = 1;
  ssize_t n = ::write(fd, &one, sizeof one);
  (void)n;  // EAGAIN: a wake-up is already pending, which is just as good
}

void DrainEventFd(int fd) {
  uint64_t v;
  while (::read(fd, &v, sizeof v) > 0) {
  }
}

WakeupFd::WakeupFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

WakeupFd::~WakeupFd() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace pgslotd
