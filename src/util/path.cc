#include "util/path.h"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pgslotd {

std::string ErrnoMessage(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string CurrentUserName() {
  uid_t uid = ::geteuid();
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid " + std::to_string(uid);
}

int CreateFresh(const std::string& path, mode_t mode) {
  // Another process may put something back between the unlink and the
  // open: try again a few times, then give up with EEXIST.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return -1;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

Status PathError(const std::string& what, const std::string& path, int err) {
  switch (err) {
    case ENOENT:
      return Status::SlotFatal(what + ": the directory " + DirName(path) +
                               " does not exist (create it, or correct the path)");
    case EACCES:
    case EPERM:
      return Status::SlotFatal(ErrnoMessage(what, err) + " for user " + CurrentUserName() +
                               ", whom pgslotd runs as (grant it access to " + DirName(path) +
                               ", or choose another path)");
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
    case EISDIR:
      return Status::SlotFatal(ErrnoMessage(what, err) + " (correct the path)");
    default:
      return Status::Retryable(ErrnoMessage(what, err));
  }
}

}  // namespace pgslotd
