#include "daemon/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "daemon/metrics.h"
#include "daemon/status_line.h"
#include "util/clock.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kStatusEvery{2};
constexpr std::chrono::seconds kAlarmEvery{1};
constexpr std::chrono::seconds kMetricsEvery{5};
// A slot thread that has not checked in for this long (every wait of a
// worker checks in at least once a second) is reported as not responding;
// sooner under a watchdog, at half its interval.
constexpr std::chrono::seconds kHeartbeatLate{10};

bool Streaming(SlotState s) {
  return s == SlotState::kStreaming || s == SlotState::kWaitingForSink || s == SlotState::kPaused ||
         s == SlotState::kStopping || s == SlotState::kStopped || s == SlotState::kDone;
}

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

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
    : config_(std::move(config)), options_(options) {}

Supervisor::~Supervisor() {
  StopAll();
  workers_.clear();
}

void Supervisor::StopAll() {
  for (auto& w : workers_) w->RequestStop();
  for (auto& w : retiring_) w->RequestStop();
  for (auto& w : workers_) w->Join();
  for (auto& w : retiring_) w->Join();
  retiring_.clear();
}

std::unique_ptr<SlotWorker> Supervisor::MakeWorker(const SlotConfig& slot, bool start) {
  SlotWorker::Options wo;
  wo.end_lsn = options_.end_lsn;
  int done_fd = worker_done_.fd();
  wo.on_exit = [done_fd] { NotifyEventFd(done_fd); };
  auto w = std::make_unique<SlotWorker>(slot, std::move(wo));
  if (start) w->Start();
  return w;
}

std::vector<SlotView> Supervisor::Views() {
  std::vector<SlotView> views;
  for (auto& w : workers_) {
    SlotView v = ViewOf(*w);
    if (auto info = monitor_.Get(v.name)) {
      v.flushed = std::max(v.flushed, info->confirmed_flush);
      v.server_wal_end = std::max(v.server_wal_end, info->current_wal_lsn);
    }
    auto a = alarms_.find(v.name);
    v.alarm = a != alarms_.end() && a->second.active();
    v.late = late_.count(v.name) != 0;
    views.push_back(std::move(v));
  }
  return views;
}

void Supervisor::PublishStatus() {
  if (!notifier_.enabled()) return;
  notifier_.Status(StatusLine(Views()));
}

void Supervisor::UpdateMonitorTargets() {
  std::vector<std::pair<std::string, std::string>> targets;
  for (const SlotConfig& s : config_.slots) targets.emplace_back(s.name, s.connection);
  monitor_.SetTargets(targets, config_.monitor_interval);
}

void Supervisor::CheckAlarms() {
  auto now = Clock::now();
  std::map<std::string, const SlotConfig*> by_name;
  for (const SlotConfig& s : config_.slots) by_name[s.name] = &s;
  for (const SlotView& v : Views()) {
    auto cfg = by_name.find(v.name);
    if (cfg == by_name.end()) continue;
    LagSample sample;
    sample.lag_bytes = LagBytes(v);
    if (v.oldest_pending_ns > 0) {
      sample.lag_seconds = std::max<double>(
          0, static_cast<double>(now.time_since_epoch().count() - v.oldest_pending_ns) / 1e9);
    }
    sample.streaming = Streaming(v.state);
    sample.state = SlotStateName(v.state);
    if (auto info = monitor_.Get(v.name)) {
      sample.wal_status = info->wal_status;
      sample.safe_wal_size = info->safe_wal_size;
      sample.max_slot_wal_keep_size = info->max_slot_wal_keep_size;
    }
    std::string reason;
    LagAlarm& alarm = alarms_[v.name];
    LagAlarm::Event e = alarm.Update(now, sample, cfg->second->lag_alarm, &reason);
    if (e == LagAlarm::Event::kNone) continue;
    LogEvent ev{v.name, v.flushed, nullptr, {}};
    ev.fields = {{"LAG_BYTES", std::to_string(sample.lag_bytes)},
                 {"LAG_SECONDS", Fixed(sample.lag_seconds)},
                 {"WAL_STATUS", sample.wal_status.empty() ? "unknown" : sample.wal_status}};
    std::string figures = "lag " + FormatBytes(sample.lag_bytes) + ", oldest change waiting " +
                          Fixed(sample.lag_seconds) + " s, wal_status " +
                          (sample.wal_status.empty() ? "unknown" : sample.wal_status) + ", " +
                          sample.state;
    if (e == LagAlarm::Event::kCleared) {
      ev.message_id = msgid::kLagAlarmCleared;
      ev.priority = 5;  // notice
      Log(spdlog::level::info, ev, "lag alarm cleared (" + figures + ")");
    } else {
      ev.message_id = msgid::kLagAlarmRaised;
      Log(spdlog::level::warn, ev,
          std::string(e == LagAlarm::Event::kRaised ? "lag alarm" : "lag alarm continues") + ": " +
              reason + " (" + figures + ")");
    }
  }
}

std::chrono::nanoseconds Supervisor::LateAfter() const {
  auto watchdog =
      std::chrono::duration_cast<std::chrono::nanoseconds>(notifier_.watchdog_interval());
  std::chrono::nanoseconds late = kHeartbeatLate;
  if (watchdog.count() > 0) late = std::min(late, watchdog / 2);
  return late;
}

void Supervisor::CheckHeartbeats() {
  int64_t now = Clock::now().time_since_epoch().count();
  auto late_after = LateAfter();
  for (auto& w : workers_) {
    SlotView v = ViewOf(*w);
    double age = static_cast<double>(now - v.heartbeat_ns) / 1e9;
    bool late = !v.finished && v.started && now - v.heartbeat_ns > late_after.count();
    bool was = late_.count(v.name) != 0;
    LogEvent ev{v.name, kInvalidLsn, nullptr, {{"HEARTBEAT_AGE_SECONDS", Fixed(age)}}};
    if (late && !was) {
      late_.insert(v.name);
      Log(spdlog::level::warn, ev,
          "has not checked in for " + Fixed(age) + " s: its thread is stuck (last state: " +
              SlotStateName(v.state) + ", sink " + v.sink + " " + v.sink_state + ")" +
              (notifier_.watchdog_interval().count() > 0
                   ? "; the watchdog pings are withheld until it recovers"
                   : ""));
    } else if (!late && was) {
      late_.erase(v.name);
      Log(spdlog::level::info, ev, "checks in again (" + std::string(SlotStateName(v.state)) + ")");
    }
  }
}

void Supervisor::ShareServerPositions() {
  for (auto& w : workers_) {
    auto info = monitor_.Get(w->config().name);
    if (!info) continue;
    if (info->current_wal_lsn != kInvalidLsn) {
      w->NoteServerWalPosition(info->current_wal_lsn, info->polled_at);
    }
    // A paused slot has no connection to learn it from.
    if (info->wal_status == "lost" && w->stats().state.load() == SlotState::kPaused) {
      w->NoteInvalidated();
    }
  }
}

void Supervisor::WriteMetrics() {
  if (config_.metrics_file.empty()) return;
  auto now = Clock::now().time_since_epoch().count();
  std::vector<SlotMetrics> metrics;
  std::vector<SlotView> views = Views();
  for (size_t i = 0; i < workers_.size(); ++i) {
    const SlotStats& st = workers_[i]->stats();
    const SlotView& v = views[i];
    SlotMetrics m;
    m.slot = v.name;
    m.lag_bytes = LagBytes(v);
    m.lag_seconds =
        v.oldest_pending_ns > 0 ? static_cast<double>(now - v.oldest_pending_ns) / 1e9 : 0;
    m.flushed_lsn = v.flushed;
    m.changes = st.messages.load(std::memory_order_relaxed);
    m.bytes = st.bytes.load(std::memory_order_relaxed);
    m.reconnects = st.reconnects.load(std::memory_order_relaxed);
    m.alarm = v.alarm;
    m.streaming = v.state == SlotState::kStreaming || v.state == SlotState::kWaitingForSink;
    m.responding = !v.late;
    m.paused = v.state == SlotState::kPaused;
    m.heartbeat_age_seconds =
        v.finished ? 0 : std::max<double>(0, static_cast<double>(now - v.heartbeat_ns) / 1e9);
    m.has_sink_figures = st.has_sink_figures.load(std::memory_order_relaxed);
    m.sink_in_flight = st.sink_in_flight.load(std::memory_order_relaxed);
    m.sink_delivery_errors = st.sink_delivery_errors.load(std::memory_order_relaxed);
    m.sink_transactions_committed = st.sink_transactions_committed.load(std::memory_order_relaxed);
    m.sink_transactions_aborted = st.sink_transactions_aborted.load(std::memory_order_relaxed);
    m.sink_brokers_down = st.sink_brokers_down.load(std::memory_order_relaxed);
    m.has_spool = st.has_spool.load(std::memory_order_relaxed);
    m.spool_memory_bytes = st.spool_memory_bytes.load(std::memory_order_relaxed);
    m.spool_disk_bytes = st.spool_disk_bytes.load(std::memory_order_relaxed);
    m.has_snapshot = st.has_snapshot.load(std::memory_order_relaxed);
    m.snapshot_rows = st.snapshot_rows.load(std::memory_order_relaxed);
    m.snapshot_tables_left = st.snapshot_tables_left.load(std::memory_order_relaxed);
    metrics.push_back(std::move(m));
  }
  Status s = WriteMetricsFile(config_.metrics_file, start_time_, metrics);
  if (!s.ok()) LogWarn("metrics: " + s.message());
}

std::string Supervisor::Answer(const std::string& request) {
  const std::string kSnapshot = "snapshot ";
  if (request.compare(0, kSnapshot.size(), kSnapshot) == 0) {
    return AnswerSnapshot(request.substr(kSnapshot.size()));
  }
  if (request != "status" && request != "status json") {
    return "error: unknown request \"" + request.substr(0, 64) +
           "\" (known: status, status json, snapshot SLOT)\n";
  }
  return StatusReport(Views(), Clock::now().time_since_epoch().count(), request == "status json");
}

// pgslotd --snapshot has written a request file for `slot`: its worker
// takes it now. The answer says whether one will.
std::string Supervisor::AnswerSnapshot(const std::string& slot) {
  for (auto& w : workers_) {
    if (w->config().name != slot) continue;
    if (w->config().snapshot == SnapshotMode::kNever) {
      return "error: slot " + slot +
             " has snapshot: never in the running configuration; reload pgslotd after setting "
             "snapshot: on_request (the request waits until then)\n";
    }
    if (!w->started() || w->finished()) {
      return "error: slot " + slot +
             " is not streaming (it has stopped: see --status); the request is taken when it "
             "starts again\n";
    }
    w->RequestSnapshot();
    return "ok: slot " + slot + " takes the request\n";
  }
  return "error: the running pgslotd has no slot " + slot.substr(0, 64) +
         " (its configuration is older: reload it with systemctl reload pgslotd)\n";
}

void Supervisor::Reload() {
  notifier_.Reloading();
  Config fresh;
  if (!LoadForReload(&fresh)) {
    // logrotate may have moved the files away while the config was being
    // edited: reopen them all the same.
    for (auto& w : workers_) w->RequestReopen();
    notifier_.Ready();
    return;
  }
  SetLogLevel(fresh.log_level);
  ReloadCounts counts = ReplaceWorkers(fresh);
  config_ = std::move(fresh);
  for (auto it = alarms_.begin(); it != alarms_.end();) {
    bool still = false;
    for (const SlotConfig& s : config_.slots) still = still || s.name == it->first;
    it = still ? std::next(it) : alarms_.erase(it);
  }
  UpdateMonitorTargets();
  Log(spdlog::level::info, LogEvent{{}, kInvalidLsn, msgid::kReloaded, {}},
      "reloaded " + config_.path + ": " + std::to_string(counts.kept) + " kept, " +
          std::to_string(counts.started) + " started, " + std::to_string(counts.restarted) +
          " restarted, " + std::to_string(counts.removed) + " stopped");
  StartWhenFree();
  PublishStatus();
  notifier_.Ready();
}

bool Supervisor::LoadForReload(Config* fresh) {
  std::vector<ConfigError> errors;
  bool loaded = LoadConfig(config_.path, fresh, &errors);
  std::string restart = loaded ? DaemonRestartReason(config_, *fresh) : std::string();
  if (!restart.empty()) {
    LogError("reload of " + config_.path + " refused: " + restart +
             ", which takes a restart of pgslotd; the running configuration stays in effect");
  }
  if (loaded && restart.empty()) return true;
  for (const ConfigError& e : errors) LogError("reload: " + e.ToString());
  if (!loaded) {
    LogError("reload of " + config_.path + " failed (" + std::to_string(errors.size()) + " error" +
             (errors.size() == 1 ? "" : "s") + "): the running configuration stays in effect");
  }
  return false;
}

Supervisor::ReloadCounts Supervisor::ReplaceWorkers(const Config& fresh) {
  ReloadCounts counts;
  std::map<std::string, std::unique_ptr<SlotWorker>> running;
  for (auto& w : workers_) running[w->config().name] = std::move(w);
  workers_.clear();
  // Stop what is removed or changed, all at once, before anything starts:
  // a changed slot may hand its sink path to another. They end on their own
  // time: the loop goes on (a stuck one must not silence status, pings and
  // signals), and a new thread for a slot starts once no ending thread
  // shares its name or sink.
  RetireChanged(fresh, &running, &counts);
  for (const SlotConfig& s : fresh.slots) {
    auto it = running.find(s.name);
    if (it != running.end()) {
      it->second->RequestReopen();
      workers_.push_back(std::move(it->second));
      ++counts.kept;
    } else {
      workers_.push_back(MakeWorker(s, /*start=*/false));
      ++counts.started;
    }
  }
  counts.started -= counts.restarted;  // a restarted slot was counted as started too
  return counts;
}

void Supervisor::RetireChanged(const Config& fresh,
                               std::map<std::string, std::unique_ptr<SlotWorker>>* running,
                               ReloadCounts* counts) {
  std::map<std::string, const SlotConfig*> wanted;
  for (const SlotConfig& s : fresh.slots) wanted[s.name] = &s;
  for (auto it = running->begin(); it != running->end();) {
    auto want = wanted.find(it->first);
    SlotWorker& w = *it->second;
    bool failed = w.finished() && !w.error().ok();
    if (want != wanted.end() && SlotReload(w.config(), *want->second) == Reload::kLive && !failed) {
      ++it;
      continue;
    }
    if (want == wanted.end()) {
      ++counts->removed;
      Log(spdlog::level::info, LogEvent{it->first, kInvalidLsn, nullptr, {}},
          "removed from the configuration: stopping");
    } else {
      ++counts->restarted;
      Log(spdlog::level::info, LogEvent{it->first, kInvalidLsn, nullptr, {}},
          failed ? "had stopped on an error: starting it again" : "settings changed: restarting");
    }
    it->second->RequestStop();
    retiring_.push_back(std::move(it->second));
    it = running->erase(it);
  }
}

// Two threads must never write one sink: a slot's thread starts only once
// every ending thread with its name or its sink is gone.
bool Supervisor::SharesWithRetiring(const SlotConfig& slot) const {
  for (const auto& r : retiring_) {
    const SlotConfig& old = r->config();
    bool same_sink = old.sink.type == slot.sink.type && old.sink.path == slot.sink.path;
    if (old.name == slot.name || same_sink) return true;
  }
  return false;
}

void Supervisor::StartWhenFree() {
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if ((*it)->finished()) {
      (*it)->Join();  // its thread has returned: at once
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& w : workers_) {
    if (!w->started() && !SharesWithRetiring(w->config())) w->Start();
  }
}

int Supervisor::Run() {
  int sfd = -1;
  if (!Begin(&sfd)) return 1;
  int exit_code = Loop(sfd);
  notifier_.Stopping();
  StopAll();
  monitor_.Stop();
  WriteMetrics();
  control_.Close();
  ::close(sfd);
  LogInfo("exiting with code " + std::to_string(exit_code));
  return exit_code;
}

bool Supervisor::Begin(int* sfd) {
  Result<std::unique_ptr<InstanceLock>> lock = InstanceLock::Acquire(config_.state_directory);
  if (!lock.ok()) {
    LogError(lock.status().message());
    return false;
  }
  lock_ = std::move(lock).value();
  if (Status cs = control_.Open(config_.control_socket); !cs.ok()) {
    LogWarn("no control socket: " + cs.message() +
            "; pgslotd --status cannot reach this daemon (set runtime_directory)");
  }
  sigset_t set = HandledSignals();
  *sfd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (*sfd < 0) {
    LogError(std::string("signalfd: ") + std::strerror(errno));
    return false;
  }
  for (const SlotConfig& slot : config_.slots) workers_.push_back(MakeWorker(slot, true));
  LogInfo("started " + std::to_string(workers_.size()) + " slot" +
          (workers_.size() == 1 ? "" : "s") +
          (options_.end_lsn ? " (until " + FormatLsn(*options_.end_lsn) + ")" : ""));
  start_time_ =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  UpdateMonitorTargets();
  // Also with --end-lsn: its readings of the server's WAL position are what
  // an idle slot's acknowledgement may follow (slot/server_position.h).
  monitor_.Start();
  notifier_.Ready();
  PublishStatus();
  return true;
}

int Supervisor::Loop(int sfd) {
  auto now = Clock::now();
  Deadlines due{now + kStatusEvery, now + kAlarmEvery, now, now};
  for (;;) {
    now = Clock::now();
    Clock::time_point wake = DoWhatIsDue(now, &due);
    if (!Wait(sfd, now, wake)) return 1;
    if (TakeSignals(sfd)) return 0;
    worker_done_.Drain();
    if (!retiring_.empty()) StartWhenFree();
    if (std::optional<int> exit_code = Outcome()) return *exit_code;
  }
}

Supervisor::Clock::time_point Supervisor::DoWhatIsDue(Clock::time_point now, Deadlines* due) {
  const auto watchdog =
      std::chrono::duration_cast<std::chrono::nanoseconds>(notifier_.watchdog_interval());
  if (watchdog.count() > 0 && now >= due->ping) PingWatchdog(now, watchdog, &due->ping);
  if (now >= due->alarm) {
    CheckHeartbeats();
    CheckAlarms();
    ShareServerPositions();
    due->alarm = now + kAlarmEvery;
  }
  if (now >= due->status) {
    PublishStatus();
    due->status = now + kStatusEvery;
  }
  if (now >= due->metrics) {
    WriteMetrics();
    due->metrics = now + kMetricsEvery;
  }
  return std::min(
      {due->status, due->alarm, due->metrics, watchdog.count() > 0 ? due->ping : due->status});
}

void Supervisor::PingWatchdog(Clock::time_point now, std::chrono::nanoseconds watchdog,
                              Clock::time_point* next_ping) {
  // Every running thread, a stuck one on its way out included.
  std::vector<SlotView> views;
  for (auto& w : workers_) views.push_back(ViewOf(*w));
  for (auto& w : retiring_) views.push_back(ViewOf(*w));
  // The same window as a "not responding" report (LateAfter).
  if (AllCheckedIn(views, now.time_since_epoch().count(), LateAfter())) {
    notifier_.WatchdogPing();
    *next_ping = now + watchdog / 2;
  } else {
    // Withheld: systemd restarts us if no slot recovers in time.
    *next_ping = now + std::chrono::milliseconds(250);
  }
}

bool Supervisor::Wait(int sfd, Clock::time_point now, Clock::time_point wake) {
  int64_t timeout = MillisUntil(wake, now);
  if (int64_t c = control_.NextDeadlineMs(now); c >= 0) timeout = std::min(timeout, c);
  std::vector<struct pollfd> fds = {{sfd, POLLIN, 0}, {worker_done_.fd(), POLLIN, 0}};
  control_.AddPollFds(&fds);
  int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(timeout, 1000)));
  if (n < 0 && errno != EINTR) {
    LogError(std::string("poll: ") + std::strerror(errno));
    return false;
  }
  control_.Serve(fds, 2, [this](const std::string& request) { return Answer(request); });
  return true;
}

bool Supervisor::TakeSignals(int sfd) {
  bool stop = false;
  struct signalfd_siginfo si;
  while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    if (si.ssi_signo == SIGHUP) {
      LogInfo("SIGHUP: reloading " + config_.path);
      Reload();
    } else {
      LogInfo(std::string(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ": stopping every slot");
      stop = true;
    }
  }
  return stop;
}

std::optional<int> Supervisor::Outcome() {
  size_t finished = 0, failed = 0;
  bool process_fatal = false;
  std::string names;  // of the failed slots
  for (auto& w : workers_) {
    if (!w->finished()) continue;
    ++finished;
    if (w->error().ok()) continue;
    ++failed;
    names += (names.empty() ? "" : ", ") + w->config().name;
    if (w->error().code() == Status::Code::kProcessFatal) process_fatal = true;
  }
  if (process_fatal) {
    Log(spdlog::level::critical, LogEvent{{}, kInvalidLsn, msgid::kFatal, {}},
        "stopping every slot after a fatal error; exiting so that the service is restarted");
    return 1;
  }
  if (options_.end_lsn && failed > 0) {
    LogError("slot " + names + " failed before reaching the end position; stopping");
    return 1;
  }
  if (finished < workers_.size()) return std::nullopt;
  if (failed > 0) LogError("every slot has stopped on an error; exiting");
  return failed > 0 ? 1 : 0;
}

}  // namespace pgslotd
