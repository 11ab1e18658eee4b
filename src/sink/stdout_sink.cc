#include "sink/stdout_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

namespace pgslotd {

StdoutSink::~StdoutSink() {
  if (own_fd_ >= 0) ::close(own_fd_);
}

Status StdoutSink::Open() {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::SlotFatal(ErrnoMessage("stdout is not open", errno));
  if (S_ISFIFO(st.st_mode) && own_fd_ < 0) {
    std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    own_fd_ = ::open(proc.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  }
  fifo_polled_ = S_ISFIFO(st.st_mode) && own_fd_ < 0;
  socket_ = S_ISSOCK(st.st_mode);
  return Status::Ok();
}

Status StdoutSink::Write(const char* data, size_t len, size_t* written) {
  *written = 0;
  int fd = own_fd_ >= 0 ? own_fd_ : fd_;
  while (*written < len) {
    size_t chunk = len - *written;
    if (fifo_polled_) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      if (::poll(&pfd, 1, 0) <= 0 || !(pfd.revents & (POLLOUT | POLLERR))) {
        return Status::Ok();  // full: it takes more later
      }
      chunk = std::min<size_t>(chunk, PIPE_BUF);
    }
    ssize_t n = socket_ ? ::send(fd, data + *written, chunk, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : ::write(fd, data + *written, chunk);
    if (n > 0) {
      *written += static_cast<size_t>(n);
      CountAccepted(static_cast<uint64_t>(n));
      CountDurableUpTo(accepted());
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return Status::Ok();  // full: it takes more later
    }
    if (n < 0 && errno == EPIPE) return Status::SlotFatal("stdout was closed by its reader");
    return Status::Retryable(ErrnoMessage("cannot write to stdout", n < 0 ? errno : EIO));
  }
  return Status::Ok();
}

Status StdoutSink::Sync() {
  CountDurableUpTo(accepted());
  return Status::Ok();
}

Result<bool> StdoutSink::Probe() {
  struct pollfd pfd = {own_fd_ >= 0 ? own_fd_ : fd_, POLLOUT, 0};
  if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT)) return true;
  if (pfd.revents & (POLLERR | POLLHUP))
    return Status::SlotFatal("stdout was closed by its reader");
  return false;  // full
}

Sink::Wait StdoutSink::WaitSpec() const {
  Wait w;
  w.fd = own_fd_ >= 0 ? own_fd_ : fd_;
  w.events = POLLOUT;
  w.reason = "waiting for stdout reader";
  return w;
}

Status StdoutSink::Discard(uint64_t keep) {
  CountRenumbered(keep);
  return Status::Ok();
}

Status StdoutSink::Close() {
  if (own_fd_ >= 0) ::close(own_fd_);
  own_fd_ = -1;
  return Status::Ok();
}

}  // namespace pgslotd
