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

#include <chrono>
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
  using Clock = std::chrono::steady_clock;
  // When the main loop does each of its periodic jobs next.
  struct Deadlines {
    Clock::time_point status, alarm, metrics, ping;
  };
  // What a reload did to the slots, for its log line.
  struct ReloadCounts {
    size_t kept = 0, started = 0, restarted = 0, removed = 0;
  };

  // Takes the instance lock, opens the control socket and the signalfd
  // (*sfd), starts every slot and the monitor, and says READY=1. False
  // (logged) when pgslotd cannot run.
  bool Begin(int* sfd);
  // The main loop, until a signal stops it or the slots' ends do; returns
  // the exit code.
  int Loop(int sfd);
  // Does the periodic jobs due at `now`, moves their deadlines and returns
  // when the next one is due.
  Clock::time_point DoWhatIsDue(Clock::time_point now, Deadlines* due);
  void PingWatchdog(Clock::time_point now, std::chrono::nanoseconds watchdog,
                    Clock::time_point* next_ping);
  // Waits for a signal, a worker's end or the control socket until `wake`,
  // and serves the control socket. False (logged) when poll fails.
  bool Wait(int sfd, Clock::time_point now, Clock::time_point wake);
  // Takes the pending signals: reloads on SIGHUP; true on SIGTERM or SIGINT.
  bool TakeSignals(int sfd);
  // After some slots ended: the exit code when the run is over (all ended,
  // a process-fatal error, or a failure with --end-lsn), else nullopt.
  std::optional<int> Outcome();
  // A worker for `slot`, started at once or (start false) by StartWhenFree.
  std::unique_ptr<SlotWorker> MakeWorker(const SlotConfig& slot, bool start);
  bool SharesWithRetiring(const SlotConfig& slot) const;
  // Joins the retiring threads that have ended, then starts the workers
  // that no longer share a name or sink with one. Never waits.
  void StartWhenFree();
  void Reload();
  // Loads the config file again into *fresh. False (logged) when it does
  // not load or needs a restart of pgslotd (DaemonRestartReason).
  bool LoadForReload(Config* fresh);
  // Keeps the workers of the slots whose settings a reload applies live
  // (Reload::kLive, config.h), retires the others and makes (unstarted)
  // workers for the new or changed slots.
  ReloadCounts ReplaceWorkers(const Config& fresh);
  // Asks the workers of `running` that are removed, changed or stopped on
  // an error to stop, and moves them to retiring_.
  void RetireChanged(const Config& fresh,
                     std::map<std::string, std::unique_ptr<SlotWorker>>* running,
                     ReloadCounts* counts);
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
  // "snapshot SLOT": wakes the slot's worker to take its request files.
  std::string AnswerSnapshot(const std::string& slot);

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
