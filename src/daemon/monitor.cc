#include "daemon/monitor.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "pg/conninfo.h"
#include "pg/quote.h"
#include "pg/replication_conn.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kQueryTimeout{10};

}  // namespace

Monitor::Monitor() = default;

Monitor::~Monitor() { Stop(); }

void Monitor::SetTargets(const std::vector<std::pair<std::string, std::string>>& targets,
                         Duration interval) {
  MutexLock l(&mu_);
  groups_.clear();
  for (const auto& [slot, conninfo] : targets) groups_[conninfo].push_back(slot);
  bool sooner = interval < interval_;
  interval_ = interval;
  if (sooner) wakeup_.Notify();
}

void Monitor::Start() {
  if (!thread_.joinable()) {
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "pgslotd-monitor");
      Run();
    });
  }
}

void Monitor::Stop() {
  stop_.store(true);
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
}

std::optional<ServerSlotInfo> Monitor::Get(const std::string& slot) const {
  MutexLock l(&mu_);
  auto it = infos_.find(slot);
  if (it == infos_.end()) return std::nullopt;
  return it->second;
}

namespace {

// One row of the poll's query, or none if it has too few columns.
std::optional<std::pair<std::string, ServerSlotInfo>> ParseRow(const std::vector<std::string>& r,
                                                               Clock::time_point now) {
  if (r.size() < 9) return std::nullopt;
  ServerSlotInfo info;
  info.active = r[1] == "t";
  info.active_pid = r[2];
  info.wal_status = r[3];
  if (!r[4].empty()) info.safe_wal_size = std::strtoll(r[4].c_str(), nullptr, 10);
  info.restart_lsn = ParseLsn(r[5]).value_or(kInvalidLsn);
  info.confirmed_flush = ParseLsn(r[6]).value_or(kInvalidLsn);
  info.current_wal_lsn = ParseLsn(r[7]).value_or(kInvalidLsn);
  // The setting reads as "-1" (unlimited) or with a unit ("64MB").
  if (r[8] != "-1") {
    char* end = nullptr;
    uint64_t v = std::strtoull(r[8].c_str(), &end, 10);
    std::string unit = end ? end : "";
    uint64_t mult = unit == "kB"   ? 1024ull
                    : unit == "MB" ? 1ull << 20
                    : unit == "GB" ? 1ull << 30
                    : unit == "TB" ? 1ull << 40
                                   : 1ull << 20;  // a bare number is in MB
    info.max_slot_wal_keep_size = v * mult;
  }
  info.polled_at = now;
  return std::make_pair(r[0], info);
}

}  // namespace

// The connection lives for this poll only: an idle session held open
// between polls would keep a smart shutdown of the server waiting for ever
// (it waits for every client to leave).
Status Monitor::Poll(const std::string& conninfo, const std::vector<std::string>& slots,
                     std::map<std::string, ServerSlotInfo>* fresh) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildMonitorParams(conninfo, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  ReplicationConn conn(wakeup_.fd(), &stop_);
  Status s = conn.Connect(params, Clock::now() + kQueryTimeout);
  if (!s.ok()) return s;
  std::string in;
  for (const std::string& slot : slots) in += (in.empty() ? "" : ", ") + QuoteLiteral(slot);
  Result<Rows> rows = conn.Query(
      "SELECT slot_name, active, active_pid, wal_status, safe_wal_size, restart_lsn, "
      "confirmed_flush_lsn, pg_current_wal_lsn(), "
      "current_setting('max_slot_wal_keep_size') FROM pg_catalog.pg_replication_slots "
      "WHERE slot_name IN (" +
          in + ")",
      Clock::now() + kQueryTimeout);
  if (!rows.ok()) return rows.status();
  auto now = Clock::now();
  for (const auto& r : rows.value()) {
    if (auto row = ParseRow(r, now)) fresh->insert(std::move(*row));
  }
  return Status::Ok();
}

void Monitor::Run() {
  std::map<std::string, bool> failing;  // conninfo -> its last poll failed
  while (!stop_.load()) {
    std::map<std::string, std::vector<std::string>> groups;
    Duration interval;
    {
      MutexLock l(&mu_);
      groups = groups_;
      interval = interval_;
    }
    for (auto it = failing.begin(); it != failing.end();) {
      it = groups.count(it->first) ? std::next(it) : failing.erase(it);
    }
    std::map<std::string, ServerSlotInfo> fresh;
    for (const auto& [conninfo, slots] : groups) {
      if (stop_.load()) break;
      Status s = Poll(conninfo, slots, &fresh);
      if (stop_.load()) break;  // a stop interrupted it
      if (!s.ok()) {
        if (!failing[conninfo]) {
          LogWarn("monitor: cannot read the slots' state from the server (" +
                  RedactConninfo(conninfo) + "): " + s.message() + "; retrying every poll");
        }
        failing[conninfo] = true;
      } else if (failing[conninfo]) {
        LogInfo("monitor: reading the slots' state from the server again (" +
                RedactConninfo(conninfo) + ")");
        failing[conninfo] = false;
      }
    }
    {
      MutexLock l(&mu_);
      infos_ = std::move(fresh);
      // A shorter interval set during the poll: its wake-up went to the
      // poll's connection, which took it off the eventfd.
      interval = std::min(interval, interval_);
    }
    // Sleep until the next poll, a stop, or a shorter interval.
    auto until = Clock::now() + interval;
    while (!stop_.load() && Clock::now() < until) {
      struct pollfd pfd = {wakeup_.fd(), POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) > 0) {
        wakeup_.Drain();
        MutexLock l(&mu_);
        if (interval_ < interval) break;
      }
    }
  }
}

}  // namespace pgslotd
