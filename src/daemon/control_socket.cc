#include "daemon/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/clock.h"
#include "util/path.h"

namespace pgslotd {

namespace {

constexpr std::chrono::seconds kClientDeadline{1};
constexpr size_t kMaxRequest = 4096;
constexpr size_t kMaxClients = 16;

bool FillAddress(const std::string& path, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

}  // namespace

Status ControlServer::Open(const std::string& path) {
  Close();
  struct sockaddr_un addr;
  if (!FillAddress(path, &addr)) return Status::Invalid("socket path too long: " + path);
  std::string dir = DirName(path);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return PathError("cannot create " + dir, dir, errno);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Retryable(ErrnoMessage("socket", errno));
  // A file left by an earlier run (killed, or a crash) is in the way; the
  // instance lock says no other daemon of this configuration runs.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return PathError("cannot listen on " + path, path, err);
  }
  listen_fd_ = fd;
  path_ = path;
  return Status::Ok();
}

void ControlServer::Close() {
  for (Client& c : clients_) ::close(c.fd);
  clients_.clear();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
  listen_fd_ = -1;
}

void ControlServer::AddPollFds(std::vector<struct pollfd>* fds) const {
  if (listen_fd_ < 0) return;
  fds->push_back({listen_fd_, POLLIN, 0});
  for (const Client& c : clients_) {
    fds->push_back({c.fd, static_cast<short>(c.answered ? POLLOUT : POLLIN), 0});
  }
}

int64_t ControlServer::NextDeadlineMs(Clock::time_point now) const {
  int64_t next = -1;
  for (const Client& c : clients_) {
    int64_t ms = MillisUntil(c.deadline, now);
    next = next < 0 ? ms : std::min(next, ms);
  }
  return next;
}

void ControlServer::Accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: no more; anything else: the client is gone
    if (clients_.size() >= kMaxClients) {
      ::close(fd);  // a flood must not grow the loop's work
      continue;
    }
    Client c;
    c.fd = fd;
    c.deadline = Clock::now() + kClientDeadline;
    clients_.push_back(std::move(c));
  }
}

bool ControlServer::Step(Client* c, short revents, const Handler& handler) {
  if (!c->answered && (revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[1024];
    ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
    if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EINTR);
    c->in.append(buf, static_cast<size_t>(n));
    size_t eol = c->in.find('\n');
    if (eol == std::string::npos) return c->in.size() < kMaxRequest;
    c->out = handler(c->in.substr(0, eol));
    c->answered = true;
  }
  if (c->answered) {
    while (!c->out.empty()) {
      ssize_t n = ::send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
      if (n < 0) return errno == EAGAIN || errno == EINTR;
      c->out.erase(0, static_cast<size_t>(n));
    }
    return false;  // all written: close, which ends the answer
  }
  return true;
}

void ControlServer::Serve(const std::vector<struct pollfd>& fds, size_t first,
                          const Handler& handler) {
  if (listen_fd_ < 0 || first >= fds.size()) return;
  // Clients first, by position in `fds` (as AddPollFds appended them).
  auto now = Clock::now();
  std::vector<Client> kept;
  for (size_t i = 0; i < clients_.size(); ++i) {
    Client& c = clients_[i];
    size_t at = first + 1 + i;
    short revents = at < fds.size() && fds[at].fd == c.fd ? fds[at].revents : 0;
    bool keep = now < c.deadline;
    if (keep && (revents != 0 || c.answered)) keep = Step(&c, revents, handler);
    if (keep) {
      kept.push_back(std::move(c));
    } else {
      ::close(c.fd);
    }
  }
  clients_ = std::move(kept);
  if (fds[first].revents & POLLIN) Accept();
}

Result<std::string> AskDaemon(const std::string& path, const std::string& request,
                              std::chrono::milliseconds timeout) {
  struct sockaddr_un addr;
  if (!FillAddress(path, &addr)) return Status::Invalid("socket path too long: " + path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Retryable(ErrnoMessage("socket", errno));
  struct timeval tv = {static_cast<time_t>(timeout.count() / 1000),
                       static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    return Status::Retryable(ErrnoMessage(what, err));
  };
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    return fail("cannot connect to " + path);
  }
  std::string line = request + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return fail("cannot send to " + path);
  }
  std::string answer;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno == EINTR && std::chrono::steady_clock::now() < deadline) continue;
    if (n < 0) {
      if (errno == EAGAIN) errno = ETIMEDOUT;
      return fail("no answer from " + path);
    }
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return answer;
}

}  // namespace pgslotd
