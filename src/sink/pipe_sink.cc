#include "sink/pipe_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "util/path.h"

namespace pgslotd {

PipeSink::~PipeSink() { CloseWriter(); }

void PipeSink::CloseWriter() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {

// Gives the FIFO this process has just made at `path` its exact mode (the
// umask narrowed it), through a descriptor: never through a link put there
// since.
Status SetFifoMode(const std::string& path, uint32_t mode) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::Retryable(ErrnoMessage("cannot open " + path, errno));
  struct stat st;
  int err = 0;
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    err = EINVAL;
  } else if (::fchmod(fd, mode) != 0) {
    err = errno;
  }
  ::close(fd);
  if (err == EINVAL) return Status::Retryable(path + " was replaced while pgslotd created it");
  if (err != 0) return Status::Retryable(ErrnoMessage("cannot chmod " + path, err));
  return Status::Ok();
}

}  // namespace

Status PipeSink::Open() {
  if (Status l = CheckLink(path_); !l.ok()) return l;
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno != ENOENT) return PathError("cannot stat " + path_, path_, errno);
    if (::mkfifo(path_.c_str(), mode_) == 0) {
      if (Status m = SetFifoMode(path_, mode_); !m.ok()) return m;
    } else if (errno != EEXIST) {
      return PathError("cannot create FIFO " + path_, path_, errno);
    } else if (::lstat(path_.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return Status::SlotFatal(path_ +
                               " is a symbolic link to nothing (correct the path, or "
                               "create the FIFO it points to)");
    }
  } else if (!S_ISFIFO(st.st_mode)) {
    return Status::SlotFatal(path_ + " exists and is not a named pipe (FIFO)");
  }
  return TryOpenWriter();
}

Status PipeSink::TryOpenWriter() {
  if (fd_ >= 0) return Status::Ok();
  Status refused;
  int fd = OpenSinkPath(path_, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0, &refused);
  if (!refused.ok()) return refused;
  if (fd < 0) {
    if (errno == ENXIO) return Status::Ok();  // no reader yet
    if (errno == ENOENT) return Open();       // removed under us: make it again
    return PathError("cannot open " + path_, path_, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    ::close(fd);
    return Status::SlotFatal(path_ + " is not a named pipe (FIFO)");
  }
  fd_ = fd;
  return Status::Ok();
}

Status PipeSink::Write(const char* data, size_t len, size_t* written) {
  *written = 0;
  if (lost_reader_) {
    // The bytes the old reader left in the pipe went with it; a new reader
    // must not be handed the rest of a message it never saw the start of.
    // Discard() (after the error) starts the stream again.
    return Status::Retryable("the reader of " + path_ + " went away");
  }
  if (fd_ < 0) {
    Status s = TryOpenWriter();
    if (!s.ok()) return s;
    if (fd_ < 0) return Status::Ok();  // no reader yet: nothing taken
  }
  while (*written < len) {
    ssize_t n = ::write(fd_, data + *written, len - *written);
    if (n > 0) {
      *written += static_cast<size_t>(n);
      CountAccepted(static_cast<uint64_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Status::Ok();  // full: the reader takes more later
    if (n < 0 && errno == EPIPE) {
      // Measure what the reader left behind before the pipe goes away.
      Status s = Sync();
      CloseWriter();
      lost_reader_ = true;
      (void)s;
      return Status::Retryable("the reader of " + path_ + " went away");
    }
    return Status::Retryable(ErrnoMessage("cannot write to " + path_, n < 0 ? errno : EIO));
  }
  return Status::Ok();
}

Status PipeSink::Sync() {
  if (fd_ < 0 || durable() == accepted()) return Status::Ok();
  int unread = 0;
  if (::ioctl(fd_, FIONREAD, &unread) != 0) {
    return Status::Retryable(ErrnoMessage("cannot query " + path_, errno));
  }
  // Bytes left in the pipe by an earlier writer count against us: that only
  // makes durable() lag, never run ahead.
  uint64_t pending = static_cast<uint64_t>(unread < 0 ? 0 : unread);
  uint64_t taken = accepted() > pending ? accepted() - pending : 0;
  CountDurableUpTo(taken);
  if (durable() < accepted() && !lost_reader_) {
    // Bytes are waiting, so is anyone still there to read them? A FIFO
    // keeps its unread bytes while a writer holds it open, and a reader
    // that opens it later would begin in the middle of a message. With no
    // reader left (POLLERR on the write end), close it so the bytes go with
    // the pipe, as after EPIPE, instead of waiting for the next write.
    struct pollfd pfd = {fd_, 0, 0};
    if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR)) {
      CloseWriter();
      lost_reader_ = true;
      return Status::Retryable("the reader of " + path_ + " went away");
    }
  }
  return Status::Ok();
}

Result<bool> PipeSink::Probe() {
  if (lost_reader_) return Status::Retryable("the reader of " + path_ + " went away");
  if (Status s = TryOpenWriter(); !s.ok()) return s;
  if (fd_ < 0) return false;  // waiting for a reader
  struct pollfd pfd = {fd_, POLLOUT, 0};
  return ::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT) != 0;
}

Sink::Wait PipeSink::WaitSpec() const {
  Wait w;
  if (fd_ < 0) {
    w.retry = std::chrono::milliseconds(100);
    w.reason = "waiting for reader";
  } else {
    w.fd = fd_;
    w.events = POLLOUT;
    w.reason = "waiting for reader to drain the pipe";
  }
  return w;
}

std::chrono::milliseconds PipeSink::RecheckAfter() const {
  return std::chrono::milliseconds(fd_ >= 0 && durable() < accepted() ? 20 : 0);
}

Status PipeSink::Discard(uint64_t keep) {
  // The writer stays open while a reader is there: closing it would hand
  // the reader an end of file. After EPIPE it is closed already, and the
  // bytes the reader left behind went with the pipe.
  CountRenumbered(keep);
  lost_reader_ = false;
  return Status::Ok();
}

Status PipeSink::Reopen() {
  // The FIFO may have been removed and made again: reopen by path.
  Status s = Sync();
  if (!s.ok()) return s;
  if (durable() < accepted()) return Status::Ok();  // keep the reader's unread bytes
  CloseWriter();
  return Open();
}

Status PipeSink::Close() {
  Status s = Sync();
  CloseWriter();
  // A reader that left with bytes unread is no error at close: closing the
  // writer drops those bytes, and they were never acknowledged.
  return lost_reader_ ? Status::Ok() : s;
}

}  // namespace pgslotd
