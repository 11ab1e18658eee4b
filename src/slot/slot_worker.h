// One replication slot, streamed on its own thread into its own sink.
//
// The worker owns its connection, sink, buffer and AckTracker; nothing on
// its hot path is shared with other slots. What others may read about it is
// in SlotStats (atomics), published once per loop turn.
//
// Life cycle: connect (replication=database), IDENTIFY_SYSTEM, look the slot
// up (create it if configured and missing), START_REPLICATION from the
// flushed position, then stream: drain everything libpq has, append each
// message to the buffer, write the buffer in one call, sync on the
// fsync_interval schedule, and report as flushed only what the sink made
// durable. A retryable failure makes durable what can be, cuts the sink back
// to the acknowledged boundary, backs off (100 ms doubling to 30 s) and
// starts again from the flushed position; a slot-fatal one stops this slot
// only; a process-fatal one is reported to the supervisor, which stops all.
#pragma once

#include <spdlog/common.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config/config.h"
#include "decode/formatter.h"
#include "pg/lsn.h"
#include "pg/protocol.h"
#include "sink/sink.h"
#include "slot/ack_tracker.h"
#include "slot/server_position.h"
#include "util/fd.h"
#include "util/mutex.h"
#include "util/out_buffer.h"
#include "util/status.h"

namespace pgslotd {

class ReplicationConn;

enum class SlotState : int {
  kStarting,
  kConnecting,
  kStreaming,
  kWaitingForSink,  // the sink cannot take bytes (e.g. no pipe reader)
  kPaused,          // the sink took nothing for sink_stall_timeout: no stream until it does
  kReconnecting,    // backing off after a failure
  kStopping,
  kStopped,      // clean stop
  kDone,         // reached --end-lsn
  kFailed,       // stopped on an error; see SlotWorker::error()
  kInvalidated,  // stopped: the server invalidated the slot
};
const char* SlotStateName(SlotState s);

// Figures other threads may read at any time.
struct SlotStats {
  std::atomic<SlotState> state{SlotState::kStarting};
  std::atomic<uint64_t> flushed_lsn{0};     // acknowledged to the server as flushed
  std::atomic<uint64_t> received_lsn{0};    // highest position received
  std::atomic<uint64_t> server_wal_end{0};  // the server's WAL end, from keepalives
  std::atomic<int64_t> heartbeat_ns{0};     // steady clock, each loop turn
  std::atomic<uint64_t> messages{0};        // messages received for the sink
  std::atomic<uint64_t> bytes{0};           // bytes accepted by the sink
  std::atomic<uint64_t> reconnects{0};
  // When the oldest change received but not yet durable arrived (steady
  // clock ns); 0 when nothing waits. lag_seconds = now - this.
  std::atomic<int64_t> oldest_pending_ns{0};
  // The highest position whose output the sink has made durable (a file
  // sink acknowledges it once its state record says so).
  std::atomic<uint64_t> durable_lsn{0};
  // What the sink is doing, a static text: "idle", "writing", or what it
  // waits for ("waiting for reader", "pipe full").
  std::atomic<const char*> sink_state{"idle"};
};

class SlotWorker {
 public:
  using SinkFactory = std::function<std::unique_ptr<Sink>(const SlotConfig&)>;
  struct Options {
    std::optional<Lsn> end_lsn;     // stop once everything up to here is durable and acked
    SinkFactory make_sink;          // default: MakeSink(config.sink)
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

  void Run();
  Status Session(ReplicationConn* conn);
  Status Prepare(ReplicationConn* conn, Lsn* start);
  Status Stream(ReplicationConn* conn);
  Status HandleMessage(const char* buf, int len);
  // A position of the stream (`what`: "a keepalive", "a change") far beyond
  // the last independent reading: reads the server's position again on a
  // plain connection, and ends the session if `claim` is still beyond it.
  Status CheckClaim(Lsn claim, const char* what);
  // Prepare's answer to a stream sink's earlier acknowledgement beyond this
  // server's WAL end: start from the slot's `confirmed` position, warning.
  void ForgetEarlierServer(Lsn wal_end, const std::optional<Lsn>& confirmed);
  // The server asks for a reply at a keepalive position (`claim`) beyond the
  // last reading: reads again (at most every kReplyReadingEvery), and ends
  // the session if the server refuses connections because it is shutting
  // down, or if readings keep failing while it keeps asking.
  Status AnswerReplyRequest(Lsn claim, Clock::time_point now);
  static constexpr std::chrono::seconds kReplyReadingEvery{1};
  static constexpr std::chrono::seconds kReplyReadingTimeout{2};
  static constexpr std::chrono::seconds kReplyRequestsApart{3};  // more: a new run
  static constexpr std::chrono::seconds kReplyRequestsUnanswered{5};
  // pg_current_wal_lsn() on a plain connection within `timeout`; *sqlstate
  // is the server's code when the connection or the query failed with one.
  Result<Lsn> ReadServerWalPosition(Clock::duration timeout, std::string* sqlstate = nullptr);
  // Takes the latest independent reading of the server's position and lets
  // the last keepalive's acknowledgement follow it (slot/server_position.h).
  void FollowReadings(Clock::time_point now);
  void PushDataMark(Clock::time_point now);
  Status WriteOut(Clock::time_point now);
  // Hands [data, data+len) to the sink, counting what it took (*n).
  Status WriteToSink(const char* data, size_t len, size_t* n, Clock::time_point now);
  // A large raw message: what is buffered goes first, then the message
  // straight from libpq's buffer; only what the sink does not take now is
  // copied (a full pipe).
  Status WriteThrough(std::string_view payload);
  Status SyncSink(Clock::time_point now, bool force);
  // Exactly-once sinks: records the flushed position and its offset in the
  // sink's state record (at most once per fsync_interval unless forced).
  Status Checkpoint(Clock::time_point now, bool force);
  // Drops the output of a unit (a transaction, or a message outside one)
  // that begins at stream offset `start`.
  Status DropSince(uint64_t start);
  // At a transaction boundary: a unit whose end the server had already
  // acknowledged before this session is dropped. Returns whether it was.
  Result<bool> SkipIfWritten(uint64_t start, Lsn lsn, bool ended);
  // Rotates or reopens an exactly-once sink, between transactions.
  Status SwitchFile(Clock::time_point now);
  // Where a unit that ends now leaves the stream: between transactions.
  bool AtBoundary() const { return !owing_ && !formatter_->InTransaction(); }
  // The position reported to the server as flushed: for a sink that keeps
  // state, what its record says; otherwise what the marks give.
  Lsn Acked() const { return whole_txns_ ? recorded_lsn_ : tracker_.flushed(); }
  Status Finish(ReplicationConn* conn, bool end_reached);
  // Syncs, acknowledges exactly what is durable and ends the copy, reading
  // and dropping what the server still sends (EndCopy).
  void EndStream(ReplicationConn* conn, Clock::time_point deadline);
  // The sink has taken nothing for sink_stall_timeout: ends the stream
  // (kWouldBlock tells Run to pause).
  Status PauseStream(ReplicationConn* conn, Clock::time_point now);
  // Paused: keeps only what the sink cannot do without (the rest of a
  // message it has half taken), then waits, without a connection, until
  // the sink takes bytes (ok), a stop (kStopped) or the monitor's word that
  // the slot was invalidated.
  Status WaitForSink();
  // After a large message: the slot's buffer back to its usual size, and a
  // note of the new session.
  void GiveMemoryBack();
  Status Settle(Clock::time_point until);
  bool SleepInterruptibly(std::chrono::milliseconds d);
  void Heartbeat();
  // log_level debug: received, durable and acknowledged positions, at most
  // every 10 s.
  void LogProgress(Clock::time_point now);
  // Logs about this slot (SLOT= and, when valid, LSN= in the journal).
  void Event(spdlog::level::level_enum level, const char* message_id, Lsn lsn,
             const std::string& message);
  uint64_t appended() const { return sink_->accepted() + buffer_.size(); }

  const SlotConfig config_;
  Options options_;
  std::thread thread_;
  WakeupFd wakeup_;  // stop, reopen, reload and pacing wake-ups
  std::atomic<bool> stop_{false};
  std::atomic<bool> reopen_{false};
  std::atomic<bool> invalidated_{false};
  // The latest NoteServerWalPosition: its position is stored before its
  // time, so that a time read (acquire) comes with that reading or a newer.
  std::atomic<uint64_t> reported_wal_position_{0};
  std::atomic<int64_t> reported_at_ns_{0};  // steady clock
  Clock::time_point session_began_;         // before its IDENTIFY_SYSTEM
  // The latest reported reading if taken since the session began, else none.
  Lsn ReportedReading() const;
  std::atomic<bool> finished_{false};
  bool started_ = false;
  Status error_;
  SlotStats stats_;
  std::string sink_description_;
  mutable Mutex last_error_mu_;
  std::string last_error_ GUARDED_BY(last_error_mu_);

  // Owned by the worker thread.
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<Formatter> formatter_;
  OutBuffer buffer_;
  AckTracker tracker_;
  ServerPosition position_;
  // The last keepalive that marked a boundary: what it claimed, where in the
  // stream it came, and how far the reading of its time let it acknowledge.
  struct KeepaliveClaim {
    Lsn claim = kInvalidLsn;
    uint64_t offset = 0;
    Lsn acked = kInvalidLsn;
  };
  KeepaliveClaim keepalive_;
  // AnswerReplyRequest's rate limit, and the run of reply requests whose
  // readings failed (none while the last one succeeded).
  Clock::time_point next_reply_reading_;
  std::optional<Clock::time_point> reply_readings_failing_since_;
  Clock::time_point last_failed_reply_reading_;
  Lsn received_ = kInvalidLsn;
  Lsn pending_lsn_ = kInvalidLsn;  // highest LSN appended since the last mark
  bool has_pending_ = false;
  uint64_t last_mark_offset_ = 0;
  bool owing_ = false;          // the formatter owes output for one message
  Lsn owed_lsn_ = kInvalidLsn;  // that message's position
  Clock::time_point unsynced_since_;
  bool unsynced_ = false;
  bool reply_due_ = false;
  bool reached_end_ = false;
  bool announced_ = false;  // logged the first successful start
  // pgslotd created the slot in this run and has not streamed from it yet.
  bool created_here_ = false;
  // Exactly-once sinks (Sink::KeepsState): marks, cut-backs, rotation and
  // reopening fall only between transactions, and the acknowledged
  // position is the one the state record holds.
  bool whole_txns_ = false;
  Lsn recorded_lsn_ = kInvalidLsn;  // in the state record, with its offset
  uint64_t recorded_offset_ = 0;
  Clock::time_point last_checkpoint_;
  Lsn skip_floor_ = kInvalidLsn;  // the record's position when the session began
  uint64_t unit_start_ = 0;       // where the current unit's output began
  uint64_t skipped_ = 0;          // units dropped by SkipIfWritten this session
  bool reopen_pending_ = false;   // SIGHUP: reopen at the next boundary
  bool switch_now_ = false;       // the drain stopped at a boundary to switch files
  Clock::time_point switch_retry_at_;
  Clock::time_point turn_now_;  // the clock at the start of this loop turn
  // Receive timeout: the last time anything came from the server (or we
  // were not reading), and whether a reply was asked for since.
  Clock::time_point last_received_;
  Duration receive_timeout_{0};  // the config's, raised to the server's wal_sender_timeout
  bool ping_sent_ = false;
  uint64_t messages_ = 0;                // published to stats_ once per batch
  Clock::time_point next_progress_log_;  // log_level debug: progress every 10 s
  Clock::time_point blocked_since_;      // the sink took nothing since; {} when it does
  // A message of this session was large: libpq keeps its input buffer that
  // large for as long as the connection lasts, so the session is ended
  // (and started again) once everything is acknowledged.
  uint64_t largest_message_ = 0;
  bool restart_session_ = false;
  size_t buffer_capacity_ = 0;  // what buffer_ starts with
};

}  // namespace pgslotd
