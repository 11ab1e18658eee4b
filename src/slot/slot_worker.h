// One replication slot, streamed on its own thread into its own sink.
//
// The worker owns its connection, sink, buffer and ack policy; nothing on
// its hot path is shared with other slots. What others may read about it is
// in SlotStats (atomics), published once per loop turn.
//
// Its parts, each in a file of its own:
//   pg/slot_session     connect, IDENTIFY_SYSTEM, look the slot up (create
//                       it), the server's WAL end: where a session starts;
//   slot/read_loop      a session's read loop: drain, write, sync, report;
//   slot/pipeline       formatter, sink writer, ack policy and exactly-once
//                       bookkeeping: the path a slot's output takes;
//   slot/sink_writer    the output buffer, writes and syncs;
//   slot/ack_policy     the one place the acknowledged position is decided;
//   slot/claim_check    readings of the server's position that the stream's
//                       claims are checked against;
//   slot/exactly_once   skipping re-sent transactions, checkpoints, cut-backs
//                       and rotation of a sink that keeps a state record.
//
// Run is a loop over phases: streaming (one session: set up, then the read
// loop), paused for the sink, backing off after a failure (100 ms doubling
// to 30 s), restarting (after a large message) and stopping. The read loop
// drains everything libpq has, appends each message's output to the buffer,
// writes it in one call, syncs on the fsync_interval schedule, and reports
// as flushed only what the ack policy allows. A retryable failure makes
// durable what can be, cuts the sink back to the acknowledged boundary,
// backs off and starts again from the acknowledged position; a slot-fatal
// one stops this slot only; a process-fatal one is reported to the
// supervisor, which stops all.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "config/config.h"
#include "pg/catalog_keys.h"
#include "pg/lsn.h"
#include "sink/sink.h"
#include "slot/claim_check.h"
#include "slot/pipeline.h"
#include "slot/read_loop.h"
#include "slot/server_position.h"
#include "slot/slot_stats.h"
#include "snapshot/reader_thread.h"
#include "snapshot/snapshot_driver.h"
#include "snapshot/snapshot_request.h"
#include "util/fd.h"
#include "util/mutex.h"
#include "util/status.h"

namespace pgslotd {

class ReplicationConn;
struct SlotSession;

class SlotWorker {
 public:
  using SinkFactory = std::function<std::unique_ptr<Sink>(const SlotConfig&)>;
  struct Options {
    std::optional<Lsn> end_lsn;     // stop once everything up to here is durable and acked
    SinkFactory make_sink;          // default: MakeSink(config)
    std::function<void()> on_exit;  // called on the worker thread as it ends
  };

  SlotWorker(SlotConfig config, Options options);
  ~SlotWorker();  // stops and joins
  SlotWorker(const SlotWorker&) = delete;
  SlotWorker& operator=(const SlotWorker&) = delete;

  void Start();
  // Thread-safe; returns at once. The worker syncs, sends its final status
  // update, ends the copy and exits.
  void RequestStop();
  // Thread-safe: reopen the sink (SIGHUP, logrotate) at the next turn.
  void RequestReopen();
  // Thread-safe: a snapshot request file for this slot came (pgslotd
  // --snapshot, through the control socket); it is taken at the next turn.
  void RequestSnapshot();
  // Thread-safe: the monitor saw the server invalidate this slot while it
  // was paused (no connection to learn it from); it stops as invalidated.
  void NoteInvalidated();
  // An independent reading of the server's WAL position (the monitor's
  // pg_current_wal_lsn(), taken at `read_at`), which the acknowledgement
  // may follow (slot/server_position.h). Only readings taken since the
  // current session began count: one of an earlier server (before a
  // failover or a restore) proves nothing about this one. Called from one
  // thread (the supervisor's) only.
  void NoteServerWalPosition(Lsn lsn, std::chrono::steady_clock::time_point read_at);
  void Join();

  bool finished() const { return finished_.load(std::memory_order_acquire); }
  // Start() was called (the supervisor's thread only).
  bool started() const { return started_; }
  // The error that stopped the worker (ok if it stopped cleanly or is running).
  // Only valid once finished().
  const Status& error() const { return error_; }
  const SlotStats& stats() const { return stats_; }
  // The error of the last session that failed (empty when none did), for
  // --status. Thread-safe.
  std::string last_error() const;
  // "file /var/lib/pgslotd/orders.log".
  const std::string& sink_description() const { return sink_description_; }
  const SlotConfig& config() const { return config_; }

 private:
  using Clock = std::chrono::steady_clock;
  // What Run does next.
  enum class Phase { kStreaming, kPausedForSink, kBackingOff, kRestarting, kStopping };

  void Run();
  // Run's phases; each returns the next. outcome_ says why a session ended.
  Phase StreamSession();
  Phase AfterSession(const Result<StreamEnd>& end);
  Phase AwaitSink();
  Phase BackOff();
  void Conclude(Status result);
  // One session: set up (pg/slot_session), then the read loop.
  Result<StreamEnd> Session(ReplicationConn* conn);
  Status Prepare(ReplicationConn* conn, Lsn* start);
  // A stream sink's earlier acknowledgement beyond this server's WAL end:
  // start from the slot's `confirmed` position, warning.
  void ForgetEarlierServer(Lsn wal_end, const std::optional<Lsn>& confirmed);
  // The retryable error of an exactly-once slot another walsender (`pid`)
  // streams: its sink's record is not applied until the slot is free.
  Status SlotInUse(int pid) const;
  // After a retryable failure: make durable what can be until `until`, then
  // cut the sink back to the acknowledged boundary.
  Status CutBackAfterFailure(Clock::time_point until);
  // Paused: keeps only what the sink cannot do without (the rest of a
  // message it has half taken), then waits, without a connection, until
  // the sink takes bytes (true), a stop (false) or the monitor's word that
  // the slot was invalidated (an error).
  Result<bool> WaitForSink();
  void KeepOnlyHalfTaken();
  // Writes what the buffer holds (or, empty, asks the sink): whether the
  // sink takes bytes again.
  Result<bool> SinkTakesBytes();
  // After a large message: the slot's buffer back to its usual size, and a
  // note of the new session.
  void GiveMemoryBack();
  // The snapshot driver (and its reading thread) for this slot, made when
  // there is none; false, logged, when this slot cannot take snapshots
  // (a server before 15, format raw).
  bool MakeSnapshotDriver();
  // snapshot: initial, for a slot pgslotd has just created (a stream
  // sink) or a file with no record: every table of its publications is
  // read, interleaved with the stream. `resume`: the progress a sink's
  // record held (null: a new snapshot).
  void StartSnapshot(const SnapshotProgress* resume);
  // Queues the snapshot request files not taken yet (at a session's start,
  // and when RequestSnapshot says one came). Returns the driver (null:
  // none).
  SnapshotDriver* TakeSnapshotRequests();
  // ExactlyOnce::Recover, then the snapshot the record says is under way,
  // or snapshot: initial when there is no record.
  Status RecoverWithSnapshot(ExactlyOnce* e, const SlotSession& slot);
  Status ParseRecordedProgress(const std::string& text, SnapshotProgress* progress);
  Status ResumeFromAheadRecord(const std::string& recorded);
  // Deletes the request files that are done with (also as the read loop
  // turns).
  void SettleSnapshotRequests();
  bool SleepInterruptibly(std::chrono::milliseconds d);
  void SetLastError(const std::string& message);
  Sink* sink() { return pipeline_.sink(); }
  Lsn Acked() const { return pipeline_.Acked(); }

  const SlotConfig config_;
  Options options_;
  std::thread thread_;
  WakeupFd wakeup_;  // stop, reopen, reload and pacing wake-ups
  std::atomic<bool> stop_{false};
  std::atomic<bool> reopen_{false};
  std::atomic<bool> invalidated_{false};
  std::atomic<bool> snapshot_wanted_{false};
  ReportedReading reading_;  // the monitor's latest
  std::atomic<bool> finished_{false};
  bool started_ = false;
  Status error_;
  SlotStats stats_;
  std::string sink_description_;
  mutable Mutex last_error_mu_;
  std::string last_error_ GUARDED_BY(last_error_mu_);

  // Owned by the worker thread.
  CatalogPrimaryKeys primary_keys_;  // for a json slot whose sink takes records
  SlotPipeline pipeline_;
  ClaimCheck claims_;
  Status outcome_;  // why the last session ended
  std::chrono::milliseconds backoff_;
  Clock::time_point session_began_;  // before its IDENTIFY_SYSTEM
  bool announced_ = false;           // logged the first successful start
  // pgslotd created the slot in this run and has not streamed from it yet.
  bool created_here_ = false;
  Duration receive_timeout_{0};  // the config's, raised to the server's wal_sender_timeout
  // The slot's snapshot driver (and the thread reading for it), made at
  // the first session that may take a snapshot and kept; null: none.
  std::unique_ptr<SnapshotReaderThread> snapshot_reads_;
  std::unique_ptr<SnapshotDriver> snapshot_;
  SnapshotRequestFiles request_files_;  // pgslotd --snapshot's
  int server_version_ = 0;              // of the last session
  uint64_t largest_message_ = 0;        // of the last session
};

}  // namespace pgslotd
