// One session's read loop: from START_REPLICATION until the stream ends.
//
// A turn: (0) reopen or switch files, and continue a commit replayed in pieces;
// (1) drain everything libpq has and read the socket again while it keeps
// giving, up to a batch: each message's output is appended to the buffer
// and the ack policy told; (2) write the batch in one call; (3) sync on the
// fsync_interval schedule and let the ack follow; (4) publish the figures;
// (5) tell the server the acknowledged position (at once when it moved or
// was asked for, at least every status_interval); (6) end at --end-lsn, or
// after a large message; (7) wait for the server, the sink, a timer or a
// wake-up. Whether it reads the server at all is one explicit state
// (Hold): reading, replaying a commit's output, at the end position, switching
// files, or with a full buffer.
//
// The socket is never left unread for long: a sink that takes nothing for
// sink_stall_timeout pauses the stream (the session ends; the worker waits
// for the sink without a connection).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>

#include "config/config.h"
#include "decode/pgoutput_formatter.h"
#include "pg/lsn.h"
#include "pg/protocol.h"
#include "pg/replication_conn.h"
#include "slot/claim_check.h"
#include "slot/pipeline.h"
#include "slot/read_pacer.h"
#include "slot/server_position.h"
#include "snapshot/snapshot_driver.h"
#include "snapshot/snapshot_request.h"
#include "util/fd.h"
#include "util/status.h"

namespace pgslotd {

// How a session's stream ended, when it ended without an error.
enum class StreamEnd {
  kStopped,        // a stop request, after a clean finish
  kEndReached,     // --end-lsn: everything up to it durable and acknowledged
  kPausedForSink,  // the sink took nothing for sink_stall_timeout
  kRestart,        // after a large message, to give back libpq's memory
};

const char* StreamEndName(StreamEnd end);

class ReadLoop {
 public:
  using Clock = std::chrono::steady_clock;

  // What the worker hands a session's loop besides the pipeline.
  struct Session {
    ReplicationConn* conn;
    WakeupFd* wakeup;                 // stop, reopen and reload wake-ups
    const std::atomic<bool>* stop;    // a stop was requested
    std::atomic<bool>* reopen;        // SIGHUP: reopen the sink
    const ReportedReading* readings;  // the monitor's readings
    Clock::time_point began;          // readings before this count for nothing
    std::optional<Lsn> end_lsn;       // --end-lsn
    Duration receive_timeout;         // raised to the server's wal_sender_timeout
    // A snapshot being taken, and the json formatter it writes with; null:
    // none.
    SnapshotDriver* snapshot = nullptr;
    PgoutputFormatter* json = nullptr;
    // On-demand snapshots (null: the slot takes none): set when a request
    // came; the loop then calls take_snapshot_requests between turns, which
    // returns the snapshot driver from then on. Queued request files are
    // settled as the records hold them.
    std::atomic<bool>* snapshot_wanted = nullptr;
    std::function<SnapshotDriver*()> take_snapshot_requests = nullptr;
    SnapshotRequestFiles* request_files = nullptr;
  };

  ReadLoop(SlotPipeline* pipeline, ClaimCheck* claims, Session session);

  // Streams until the stream ends (StreamEnd) or an error ends it.
  Result<StreamEnd> Run();
  // The largest message of this session, in bytes.
  uint64_t largest_message() const { return largest_message_; }

 private:
  // Why the loop does not read the server now (kReading: it does).
  enum class Hold {
    kReading,
    kReplaying,      // a commit's output comes in pieces, one a turn
    kEndReached,     // --end-lsn: nothing more is read
    kSwitchingFile,  // an exactly-once file rotates or reopens
    kBufferFull,     // the sink has not taken the buffer yet
  };

  Hold ReadHold() const;
  Status BeginTurn(Clock::time_point now);
  Status ContinueOutput(Clock::time_point now);
  Status Drain(Clock::time_point now);
  Status HandleMessage(const char* buf, int len);
  Status HandleData(const ServerMessage& m);
  Status HandleKeepalive(const ServerMessage& m);
  // The snapshot's turn: its start and end lines and due chunks are written
  // between transactions, as a unit; the next position the ack policy is
  // told of covers them.
  void SnapshotTurn();
  // The output of the message at `lsn` is whole: counted, or dropped when
  // an exactly-once sink holds it already.
  Status OutputComplete(Lsn lsn);
  Status WriteAndSync(Clock::time_point now);
  void PublishStats(Clock::time_point now);
  // A record sink's figures (Sink::GetFigures) into the slot's stats.
  void PublishSinkFigures();
  // Finish's sync: everything durable and recorded, within `deadline`.
  Status SyncForFinish(Clock::time_point deadline);
  Status ReportToServer(Clock::time_point now);
  // Whether the session ends here: --end-lsn reached, or a restart after a
  // large message; nullopt to go on.
  std::optional<Result<StreamEnd>> SessionEnds();
  Status WaitForEvents(Clock::time_point now);
  int64_t PollTimeout(Clock::time_point now) const;
  Result<StreamEnd> Finish(bool end_reached);
  // Syncs, acknowledges exactly what is durable and ends the copy, reading
  // and dropping what the server still sends (EndCopy).
  void EndStream(Clock::time_point deadline);
  // The sink has taken nothing for sink_stall_timeout: ends the stream.
  Result<StreamEnd> PauseStream(Clock::time_point now);
  void LogProgress(Clock::time_point now);
  Lsn Reading() const { return session_.readings->TakenSince(session_.began); }

  SlotPipeline& pipeline_;
  const SlotConfig& config_;
  SinkWriter& writer_;
  Formatter& formatter_;
  AckPolicy& policy_;
  ExactlyOnce* exactly_once_;
  SlotStats& stats_;
  ClaimCheck& claims_;
  const Session session_;
  ReplicationConn& conn_;
  SnapshotDriver* snapshot_;  // session_.snapshot, or one a request made

  ReadPacer pacer_;
  Clock::time_point turn_now_;     // the clock at the start of this turn
  Clock::time_point last_status_;  // {}: send one at once
  Lsn last_sent_flush_ = kInvalidLsn;
  bool flush_pending_ = false;  // libpq holds output not yet sent
  bool wakeup_pending_ = true;  // the wakeup descriptor fired
  bool left_in_libpq_ = false;  // whole messages may wait in libpq, not the socket
  bool sink_blocked_ = false;   // the sink did not take all it was given
  bool stalled_ = false;        // it took nothing for sink_stall_timeout
  bool reached_end_ = false;    // --end-lsn
  bool switch_now_ = false;     // the drain stopped at a boundary to switch files
  bool reply_due_ = false;      // the server asked for a reply
  // Receive timeout: the last time anything came from the server (or we
  // were not reading), and whether a reply was asked for since.
  Clock::time_point last_received_;
  bool ping_sent_ = false;
  Clock::time_point blocked_since_;   // the sink took nothing since; {} when it does
  uint64_t unit_start_ = 0;           // where the current unit's output began
  Lsn unfinished_lsn_ = kInvalidLsn;  // the message whose output comes in pieces
  uint64_t largest_message_ = 0;
  Clock::time_point next_progress_log_;  // log_level debug: progress every 10 s
  Clock::time_point next_request_scan_;  // snapshot request files, every 10 s
};

}  // namespace pgslotd
