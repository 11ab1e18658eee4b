// Watches the slots from the server's side, through plain (non-replication)
// side connections: one per distinct connection string, opened for each
// poll every monitor_interval and closed after it (an idle session kept
// open would hold a smart shutdown of the server), on a thread of its own,
// so that a slow or unreachable server never delays the supervisor's
// signals or the workers' streams.
//
// Each poll reads, for the slots of that connection, pg_replication_slots
// (active, active_pid, wal_status, safe_wal_size, restart_lsn,
// confirmed_flush_lsn) and pg_current_wal_lsn(). A failed poll drops the
// figures of its slots (they are unknown, not stale) and is logged once per
// run of failures.
//
// Thread-safety: SetTargets, Get and Stop may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "config/config.h"
#include "pg/lsn.h"
#include "util/fd.h"
#include "util/mutex.h"
#include "util/status.h"

namespace pgslotd {

struct ServerSlotInfo {
  bool active = false;
  std::string active_pid;                // "" when inactive
  std::string wal_status;                // reserved, extended, unreserved, lost, or ""
  std::optional<int64_t> safe_wal_size;  // none when NULL (no max_slot_wal_keep_size)
  Lsn restart_lsn = kInvalidLsn;
  Lsn confirmed_flush = kInvalidLsn;
  Lsn current_wal_lsn = kInvalidLsn;               // the server's, at the poll
  std::optional<uint64_t> max_slot_wal_keep_size;  // bytes; none when unlimited (-1)
  std::chrono::steady_clock::time_point polled_at;
};

class Monitor {
 public:
  Monitor();
  ~Monitor();  // stops and joins
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Which slots to watch, as (slot name, connection string) pairs, and how
  // often. Takes effect at the next poll (at once if the interval shrank).
  void SetTargets(const std::vector<std::pair<std::string, std::string>>& targets,
                  Duration interval);
  void Start();
  void Stop();

  // The latest figures for `slot`, if the last poll of its server succeeded
  // and found it.
  std::optional<ServerSlotInfo> Get(const std::string& slot) const;

 private:
  void Run();
  // One poll of one server: connects, reads the figures of `slots` into
  // *fresh, and disconnects.
  Status Poll(const std::string& conninfo, const std::vector<std::string>& slots,
              std::map<std::string, ServerSlotInfo>* fresh);

  mutable Mutex mu_;
  std::map<std::string, std::vector<std::string>> groups_ GUARDED_BY(mu_);  // conninfo -> slots
  std::map<std::string, ServerSlotInfo> infos_ GUARDED_BY(mu_);             // slot -> figures
  Duration interval_ GUARDED_BY(mu_) = Duration(10000);
  std::atomic<bool> stop_{false};
  WakeupFd wakeup_;  // a stop or a shorter interval
  std::thread thread_;
};

}  // namespace pgslotd
