#include "daemon/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pgslotd {

namespace {

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void BlockSignals() {
  sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

Supervisor::Supervisor(Config config, Options options)
    : config_(std::move(config)), options_(options) {
  done_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Supervisor::~Supervisor() {
  StopAll();
  workers_.clear();
  if (done_fd_ >= 0) ::close(done_fd_);
}

void Supervisor::StopAll() {
  for (auto& w : workers_) w->RequestStop();
  for (auto& w : workers_) w->Join();
}

int Supervisor::Run() {
  sigset_t set = HandledSignals();
  int sfd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) {
    spdlog::critical("signalfd: {}", std::strerror(errno));
    return 1;
  }
  for (const SlotConfig& slot : config_.slots) {
    SlotWorker::Options wo;
    wo.end_lsn = options_.end_lsn;
    int done_fd = done_fd_;
    wo.on_exit = [done_fd] {
      uint64_t one = 1;
      ssize_t n = ::write(done_fd, &one, sizeof one);
      (void)n;
    };
    workers_.push_back(std::make_unique<SlotWorker>(slot, std::move(wo)));
  }
  for (auto& w : workers_) w->Start();
  spdlog::info("started {} slot{}{}", workers_.size(), workers_.size() == 1 ? "" : "s",
               options_.end_lsn ? " (until " + FormatLsn(*options_.end_lsn) + ")" : "");

  int exit_code = 0;
  for (;;) {
    struct pollfd fds[2] = {{sfd, POLLIN, 0}, {done_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::critical("poll: {}", std::strerror(errno));
      exit_code = 1;
      break;
    }
    bool stop = false;
    struct signalfd_siginfo si;
    while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      if (si.ssi_signo == SIGHUP) {
        spdlog::info("SIGHUP: reopening sinks");
        for (auto& w : workers_) w->RequestReopen();
      } else {
        spdlog::info("{}: stopping every slot", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        stop = true;
      }
    }
    if (stop) break;
    uint64_t v;
    while (::read(done_fd_, &v, sizeof v) > 0) {
    }
    // Look at the workers that have ended.
    size_t finished = 0, failed = 0;
    bool process_fatal = false;
    for (auto& w : workers_) {
      if (!w->finished()) continue;
      ++finished;
      if (!w->error().ok()) {
        ++failed;
        if (w->error().code() == Status::Code::kProcessFatal) process_fatal = true;
      }
    }
    if (process_fatal) {
      spdlog::critical("stopping every slot after a fatal error");
      exit_code = 1;
      break;
    }
    if (options_.end_lsn && failed > 0) {
      spdlog::error("a slot failed before reaching the end position; stopping");
      exit_code = 1;
      break;
    }
    if (finished == workers_.size()) {
      if (failed > 0) {
        spdlog::error("every slot has stopped on an error; exiting");
        exit_code = 1;
      }
      break;
    }
  }
  StopAll();
  ::close(sfd);
  spdlog::info("exiting with code {}", exit_code);
  return exit_code;
}

}  // namespace pgslotd
