// Starts one SlotWorker per configured slot and runs the main thread's loop:
// signals (taken with signalfd; no handler does any work), the systemd
// service protocol, worker exits and the end of an --end-lsn run.
//
//   SIGTERM, SIGINT  STOPPING=1, stop every slot cleanly (sync, final ack,
//                    end copy) and exit 0
//   SIGHUP           RELOADING=1, re-read the config file: slots whose
//                    settings did not change keep streaming on the same
//                    connection (their sinks are reopened, for logrotate);
//                    new slots start; removed ones stop cleanly; changed
//                    ones, and ones that had stopped on an error, restart. A
//                    config that does not load, or that moves the state or
//                    runtime directory (which need a restart), leaves
//                    everything as it was. Then READY=1.
//
// The control socket (`pgslotd --status`) is served from the same loop.
//
// Every second the lag alarm of each slot is evaluated (daemon/lag_alarm.h)
// from the worker's figures and the server's (daemon/monitor.h); with
// metrics_file set, Prometheus text is written every few seconds.
//
// READY=1 is sent once every slot thread has started (not once connected:
// a server that is down shows in STATUS= and is retried). STATUS= is
// refreshed every few seconds. WATCHDOG=1 is sent at half of WATCHDOG_USEC
// only while every running slot thread has checked in within WATCHDOG_USEC.
//
// The caller must block SIGTERM, SIGINT and SIGHUP in every thread before
// constructing the Supervisor (BlockSignals does it), so that no worker
// thread ever receives them.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/control_socket.h"
#include "daemon/instance_lock.h"
#include "daemon/lag_alarm.h"
#include "daemon/monitor.h"
#include "daemon/notify.h"
#include "daemon/status_line.h"
#include "pg/lsn.h"
#include "slot/slot_worker.h"
#include "util/fd.h"

namespace pgslotd {

// Blocks the signals the supervisor takes and ignores SIGPIPE (a pipe
// reader that goes away is an error value, not a signal).
void BlockSignals();

class Supervisor {
 public:
  struct Options {
    std::optional<Lsn> end_lsn;
  };
  Supervisor(Config config, Options options);
  ~Supervisor();

  // Takes the instance lock of the state directory (a second pgslotd on
  // it exits 1 naming the holder), opens the control socket, then runs
  // until stopped by a signal, until every slot has reached the end
  // position, or until a fatal error. Returns the process exit code: 0 on a
  // clean stop or when every slot reached --end-lsn; 1 when the lock is
  // held, when a slot failed with --end-lsn, when every slot has failed, or
  // on a process-fatal error.
  int Run();

 private:
  // A worker for `slot`, started at once or (start false) by StartWhenFree.
  std::unique_ptr<SlotWorker> MakeWorker(const SlotConfig& slot, bool start);
  bool SharesWithRetiring(const SlotConfig& slot) const;
  // Joins the retiring threads that have ended, then starts the workers
  // that no longer share a name or sink with one. Never waits.
  void StartWhenFree();
  void Reload();
  void StopAll();
  void PublishStatus();
  // Views of every slot with the server's side folded in (flushed and WAL
  // end from the monitor when it knows more) and the alarm state.
  std::vector<SlotView> Views();
  void UpdateMonitorTargets();
  void CheckAlarms();
  // Hands the monitor's readings of each server's WAL position to its
  // slots.
  void ShareServerPositions();
  // Logs, once, a slot whose thread stopped checking in (and once more when
  // it recovers); STATUS=, --status and the metrics show it meanwhile.
  void CheckHeartbeats();
  std::chrono::nanoseconds LateAfter() const;
  void WriteMetrics();
  // The answer to a control socket request (daemon/control_socket.h).
  std::string Answer(const std::string& request);
  // Why `fresh` cannot replace the running config without a restart
  // ("" when it can).
  std::string NeedsRestart(const Config& fresh) const;

  Config config_;
  Options options_;
  Notifier notifier_;
  WakeupFd worker_done_;  // a worker finished (outlives the workers)
  std::vector<std::unique_ptr<SlotWorker>> workers_;
  // Removed or changed by a reload, asked to stop, not yet ended.
  std::vector<std::unique_ptr<SlotWorker>> retiring_;
  Monitor monitor_;
  std::unique_ptr<InstanceLock> lock_;
  ControlServer control_;
  std::map<std::string, LagAlarm> alarms_;  // by slot name; kept across reloads
  std::set<std::string> late_;              // slots not checking in, by name
  double start_time_ = 0;                   // Unix seconds
};

}  // namespace pgslotd
