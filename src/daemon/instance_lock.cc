#include "daemon/instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "util/path.h"

namespace pgslotd {

namespace {

// The pid the holder wrote, or "" when unreadable.
std::string HolderPid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid += buf[i];
  return pid;
}

}  // namespace

Result<std::unique_ptr<InstanceLock>> InstanceLock::Acquire(const std::string& state_directory) {
  const std::string path = state_directory + "/pgslotd.lock";
  if (::mkdir(state_directory.c_str(), 0700) != 0 && errno != EEXIST) {
    return PathError("cannot create the state directory " + state_directory, state_directory,
                     errno);
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return PathError("cannot open the lock file " + path, path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string pid = err == EWOULDBLOCK ? HolderPid(fd) : "";
    ::close(fd);
    if (err != EWOULDBLOCK) return Status::ProcessFatal(ErrnoMessage("cannot lock " + path, err));
    return Status::ProcessFatal(
        "another pgslotd" + (pid.empty() ? std::string() : " (pid " + pid + ")") +
        " already uses the state directory " + state_directory + " (it holds " + path +
        "): stop it first, or give this configuration a state_directory of its own");
  }
  std::string text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    int err = errno;
    ::close(fd);
    return Status::ProcessFatal(ErrnoMessage("cannot write " + path, err));
  }
  return std::unique_ptr<InstanceLock>(new InstanceLock(path, fd));
}

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace pgslotd
