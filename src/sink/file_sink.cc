#include "sink/file_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace pgslotd {

namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
}

Status FileSink::Open() {
  if (fd_ >= 0) return Status::Ok();
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  bool created = false;
  if (fd < 0 && errno == ENOENT) {
    fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, mode_);
    if (fd >= 0) {
      created = true;
    } else if (errno == EEXIST) {
      fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    }
  }
  if (fd < 0) return Status::Retryable(ErrnoMessage("cannot open " + path_, errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::Retryable(ErrnoMessage("cannot stat " + path_, err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::SlotFatal(path_ + " is not a regular file");
  }
  // The configured mode is exact: a restrictive umask must not narrow it.
  if (created && ::fchmod(fd, mode_) != 0) {
    int err = errno;
    ::close(fd);
    return Status::Retryable(ErrnoMessage("cannot chmod " + path_, err));
  }
  fd_ = fd;
  poisoned_ = false;
  dir_sync_pending_ = dir_sync_pending_ || created;
  open_size_ = static_cast<uint64_t>(st.st_size);
  open_accepted_ = accepted_;
  return Status::Ok();
}

Status FileSink::Write(const char* data, size_t len, size_t* written) {
  *written = 0;
  if (fd_ < 0) {
    Status s = Open();
    if (!s.ok()) return s;
  }
  int err = WriteFully(fd_, data, len, written);
  accepted_ += *written;
  if (err != 0) return Status::Retryable(ErrnoMessage("cannot write to " + path_, err));
  return Status::Ok();
}

Status FileSink::Sync() {
  if (fd_ < 0 || (accepted_ == durable_ && !dir_sync_pending_)) return Status::Ok();
  if (poisoned_) {
    return Status::ProcessFatal("fsync of " + path_ +
                                " failed earlier; refusing to trust it again");
  }
  if (::fdatasync(fd_) != 0) {
    poisoned_ = true;
    return Status::ProcessFatal(ErrnoMessage("fsync of " + path_ + " failed", errno) +
                                "; what was written since the last fsync may be lost, so it is "
                                "not acknowledged and the process exits to start over");
  }
  if (dir_sync_pending_) {
    std::string dir = DirName(path_);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return Status::Retryable(ErrnoMessage("cannot open directory " + dir, errno));
    int rc = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (rc != 0) {
      poisoned_ = true;
      return Status::ProcessFatal(ErrnoMessage("fsync of directory " + dir + " failed", err));
    }
    dir_sync_pending_ = false;
  }
  durable_ = accepted_;
  return Status::Ok();
}

Status FileSink::Discard(uint64_t keep) {
  if (fd_ >= 0 && keep < accepted_) {
    if (keep < open_accepted_) {
      return Status::SlotFatal("cannot take back bytes of " + path_ +
                               " written before it was last reopened");
    }
    off_t size = static_cast<off_t>(open_size_ + (keep - open_accepted_));
    if (::ftruncate(fd_, size) != 0) {
      return Status::Retryable(ErrnoMessage("cannot truncate " + path_, errno));
    }
  }
  accepted_ = keep;
  durable_ = keep;
  if (fd_ >= 0 && poisoned_) {
    // Only a new descriptor may be synced again.
    ::close(fd_);
    fd_ = -1;
  }
  return Status::Ok();
}

Status FileSink::Reopen() {
  Status s = Sync();
  if (!s.ok()) return s;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return Open();
}

Status FileSink::Close() {
  Status s = Sync();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return s;
}

}  // namespace pgslotd
