#include "util/path.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
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

std::string RealName(const std::string& path) {
  const std::string dir = DirName(path);
  const std::string base = path.substr(path.rfind('/') + 1);
  if (path.empty() || path == "/" || path.back() == '/' || base == "." || base == "..") {
    char* whole = ::realpath(path.c_str(), nullptr);
    std::string out = whole != nullptr ? whole : path;
    std::free(whole);
    return out;
  }
  char* real = ::realpath(dir.c_str(), nullptr);
  std::string resolved = real != nullptr ? real : (dir == path ? dir : RealName(dir));
  std::free(real);
  return (resolved == "/" ? "" : resolved) + "/" + base;
}

bool FileIdentity::Same(const FileIdentity& o) const {
  if (exists && o.exists) return device == o.device && inode == o.inode;
  return real_name == o.real_name;
}

FileIdentity IdentifyFile(const std::string& path) {
  FileIdentity id;
  id.real_name = RealName(path);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    id.exists = true;
    id.device = static_cast<uint64_t>(st.st_dev);
    id.inode = static_cast<uint64_t>(st.st_ino);
  }
  return id;
}

std::string CurrentUserName() { return UserName(::geteuid()); }

std::string UserName(uid_t uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid " + std::to_string(uid);
}

namespace {

// Why the link at `path` (lstat'ed into `link`) may not be followed, or "".
std::string UntrustedLinkReason(const std::string& path, const struct stat& link) {
  const std::string dir = DirName(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return "whose directory " + dir + " cannot be checked (" + std::strerror(errno) + ")";
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return "in " + dir + ", a directory every user may write to (mode " + mode +
           "): anyone could have put it there";
  }
  if (link.st_uid != ::geteuid() && link.st_uid != 0) {
    std::string trusted = ::geteuid() == 0 ? "root, whom pgslotd runs as"
                                           : CurrentUserName() + ", whom pgslotd runs as, or root";
    return "owned by user " + UserName(link.st_uid) + ", not by " + trusted;
  }
  return "";
}

std::string LinkTarget(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
}

}  // namespace

Status CheckLink(const std::string& path) {
  struct stat link;
  if (::lstat(path.c_str(), &link) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return PathError("cannot stat " + path, path, errno);
  }
  if (!S_ISLNK(link.st_mode)) return Status::Ok();
  std::string why = UntrustedLinkReason(path, link);
  if (why.empty()) return Status::Ok();
  return Status::SlotFatal(path + " is a symbolic link (to " + LinkTarget(path) + ") " + why +
                           "; pgslotd does not follow it: set the sink's path to the file itself, "
                           "or to a link of your own in a directory only you may write to");
}

int OpenSinkPath(const std::string& path, int flags, mode_t mode, Status* refused) {
  *refused = Status::Ok();
  int fd = ::open(path.c_str(), flags | O_NOFOLLOW, mode);
  if (fd >= 0 || errno != ELOOP) return fd;
  // A link (or too many of them on the way): follow it only if allowed.
  *refused = CheckLink(path);
  if (!refused->ok()) {
    errno = ELOOP;
    return -1;
  }
  return ::open(path.c_str(), flags, mode);
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
