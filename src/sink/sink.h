// Sinks: where a slot's output goes. One interface for stdout, files,
// named pipes, Kafka and the test fakes.
//
// Records. The slot hands a sink records (decode/record_buffer.h): each a
// payload ending in '\n' with its position, transaction, table and key. A
// byte sink (ByteSink: stdout, a file, a pipe) writes the records' bytes as
// one stream and may take part of a record; a record sink takes whole
// records only and may use what describes them (a topic per table, a
// partition per key).
//
// Byte accounting. A sink counts, since it was created, the bytes it has
// *accepted* (taken by Append) and the bytes that are *durable*: the
// offsets of one stream of all records' bytes, which is how the worker and
// the ack policy name positions in the output (a record's sequence number
// is where it ends). Both only grow, across Reopen, except that
// Discard(keep) sets both to `keep`; and durable() <= accepted() always.
// What durable means depends on the kind, and it is the only thing the slot
// worker may acknowledge to the server:
//   stdout  durable once write() has taken the bytes (nothing stronger
//           exists for a stream we do not own);
//   file    durable once fsync() (fdatasync) has returned success for the
//           file, and, for a file this sink created, for its directory;
//   pipe    durable once the reader has taken the bytes out of the pipe
//           (bytes still sitting in the pipe buffer are not durable: a
//           reader that dies leaves them unread);
//   records durable as the sink reports completed ranges (see Completion).
//
// Threads: a sink belongs to one slot worker and is only ever called from
// that worker's thread. Calls never block for long: a sink that cannot take
// records now takes fewer than it was given (possibly none) and says, through
// WaitSpec(), what to wait for. That is not an error.
//
// Errors: kRetryable means the worker should Discard() what is not durable,
// back off, and have the server re-send from the last acknowledged
// position; kSlotFatal stops the slot; kProcessFatal (a failed fsync, whose
// outcome can no longer be known) stops the process. After a failed fsync a
// sink never calls fsync on the same descriptor again.
//
// Adding a sink: docs/architecture.md, "Adding a sink".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "decode/record_buffer.h"
#include "pg/lsn.h"
#include "util/status.h"

namespace pgslotd {

// The optional interface of a sink that holds each committed transaction
// exactly once (a file): it keeps a durable record of the position its
// content stands for (see state_record.h), the worker acknowledges no more
// than that record says, and only cuts, rotates or reopens it between
// transactions. Offsets are the Sink's stream offsets.
class ExactlyOnceSink {
 public:
  virtual ~ExactlyOnceSink() = default;

  // Once per session, before streaming, with the server known: loads the
  // record at `key.file`, applies it if it belongs to this server, slot and
  // path (cuts a torn tail off the file, reopens it) and returns the
  // position the content stands for, or kInvalidLsn when there is no record
  // to apply. *note gets what an operator should be told (empty: nothing);
  // *warn whether it is a warning. Stream offsets are unchanged.
  struct StateKey {
    std::string file;       // <state_directory>/<slot>.state
    std::string system_id;  // IDENTIFY_SYSTEM
    std::string slot;
    // The slot's confirmed_flush_lsn: a record below it is refused (the
    // file is an older copy), before anything is cut.
    Lsn confirmed = kInvalidLsn;
    // The server's WAL end: a record beyond it is not this server's.
    Lsn wal_end = kInvalidLsn;
  };
  virtual Result<Lsn> Recover(const StateKey& key, std::string* note, bool* warn) = 0;
  // Whether Recover acts on what another consumer of the slot may be using
  // (Kafka: it fences the other's producer): the worker then calls it only
  // while no other walsender streams the slot. A file is this host's own.
  virtual bool RecoverTouchesShared() const { return false; }

  // Records, durably, that the content up to stream offset `offset` (a
  // transaction boundary, <= durable()) stands for `lsn`. Only after it
  // returns true may `lsn` be acknowledged. False: not recorded yet, and
  // not an error. A sink whose record travels with its content (Kafka: in
  // the same Kafka transaction) returns false while its content does not
  // end at `offset` (it then stops taking records at the next transaction
  // boundary) and while the commit is under way (each call waits only
  // briefly); the worker asks again on a later turn.
  virtual Result<bool> Checkpoint(uint64_t offset, Lsn lsn) = 0;

  // A snapshot's progress (snapshot/snapshot_progress.h, opaque here) is
  // recorded with the position by a sink that KeepsSnapshotProgress(): the
  // worker sets the progress at the offset of each Checkpoint just before
  // it (empty: no snapshot under way), and after Recover takes the progress
  // the applied record held (empty: none, or no record applied).
  virtual bool KeepsSnapshotProgress() const { return false; }
  virtual void SetSnapshotProgress(std::string progress) { (void)progress; }
  virtual std::string RecoveredSnapshotProgress() const { return {}; }

  // Whether the sink asks for a Checkpoint on this turn rather than on the
  // fsync_interval schedule (a Kafka transaction due to end, or a commit
  // under way).
  virtual bool CheckpointUrgent() const { return false; }

  // Whether the sink wants a new file (rotate: size or age) once the stream
  // reaches `offset`.
  virtual bool RotationDue(uint64_t offset) const = 0;
  // Starts a new file. Called between transactions with accepted() ==
  // durable() and a Checkpoint at accepted(); the caller checkpoints again
  // after it.
  virtual Status Rotate() = 0;
};

class ByteSink;

class Sink {
 public:
  virtual ~Sink() = default;

  // "file /var/lib/pgslotd/orders.log": used in every message about the sink.
  virtual std::string Describe() const = 0;

  // Opens the sink. A pipe without a reader is not an error: it opens once
  // one appears, and Append takes nothing until then.
  virtual Status Open() = 0;

  // Takes records from the front of `records`, without blocking for long,
  // within the first `limit` bytes of records.data() (the caller's limit
  // is always at a record's end); *taken gets how many bytes were taken (a
  // record sink: whole records only). Ok with *taken < the records' size:
  // the sink cannot take more now (WaitSpec says what to wait for). An
  // error: *taken were taken before it. The caller consumes what was taken.
  virtual Status Append(const RecordBuffer& records, size_t limit, size_t* taken) = 0;

  // A byte sink (see ByteSink), which can also be given bytes that are in
  // no buffer (a large raw message straight from libpq); null otherwise.
  virtual ByteSink* byte_sink() { return nullptr; }

  // Makes the accepted bytes durable as far as possible and updates
  // durable(). Cheap when there is nothing to do. A pipe re-reads how much
  // its reader has taken.
  virtual Status Sync() = 0;

  // True when Sync() has work to do that costs a system call worth batching
  // (a file with unsynced bytes). The worker calls Sync() on its
  // fsync_interval schedule when this is true, and on every turn otherwise.
  virtual bool SyncIsCostly() const { return false; }

  // What to wait for when Append took less than it was given: a descriptor
  // and poll events, or fd -1 and a retry delay.
  struct Wait {
    int fd = -1;
    short events = 0;
    std::chrono::milliseconds retry{100};
    const char* reason = "blocked";  // "waiting for reader", for STATUS
  };
  virtual Wait WaitSpec() const { return Wait{}; }

  // Whether an Append would take records now, without writing any: true when it
  // would, false when not (no reader, a full pipe), or the error an Append
  // would meet. A paused slot asks this before it streams again.
  virtual Result<bool> Probe() { return true; }

  // Whether Discard can take accepted bytes back (a file can be truncated;
  // stdout and a pipe cannot: their reader may already have them).
  virtual bool CanRetract() const { return false; }

  // After an error: drop every accepted byte past `keep` (a message
  // boundary), so that accepted() == keep and durable() == min(durable(),
  // keep), ready for the server to re-send from the position `keep` stands
  // for. A file is truncated back to it. Sinks that cannot retract are given
  // keep == accepted() and only renumber: both counts become `keep` (their
  // re-sent bytes repeat: at-least-once); a pipe whose reader went away
  // writes nothing more until then.
  virtual Status Discard(uint64_t keep) = 0;

  // --- Completion: how the worker learns what is durable ---------------
  // Most sinks make their output durable when Sync() says so: durable()
  // moves. A sink that learns it later, on its own and possibly out of
  // order (a broker's delivery reports), instead reports completed ranges
  // of stream offsets: CompletionFd() becomes readable when some arrived
  // (an eventfd, or the sink's own descriptor), and the worker, which waits
  // on it with the server's socket, calls Sync() and then TakeCompleted().
  // The ack policy acknowledges only what is complete without a gap.
  virtual int CompletionFd() const { return -1; }
  // Appends the ranges [begin, end) completed since the last call, in any
  // order (none beyond accepted()), and clears CompletionFd's readiness.
  struct Range {
    uint64_t begin;
    uint64_t end;
  };
  virtual void TakeCompleted(std::vector<Range>* ranges) { (void)ranges; }

  // When durable() can advance with no event to wake the worker (a pipe
  // reader taking bytes), how soon to call Sync() again; 0 = no need.
  virtual std::chrono::milliseconds RecheckAfter() const { return std::chrono::milliseconds(0); }

  // SIGHUP: make everything durable, close, open again (a rotated file is
  // created anew).
  virtual Status Reopen() = 0;

  // Makes everything durable that can be and closes. Idempotent.
  virtual Status Close() = 0;

  // The figures of a sink that delivers records to brokers (Kafka), for
  // the metrics and --status; false for a sink that has none.
  struct Figures {
    uint64_t in_flight = 0;        // records sent and not yet reported
    uint64_t delivery_errors = 0;  // failed delivery reports
    uint64_t transactions_committed = 0;
    uint64_t transactions_aborted = 0;
    bool brokers_down = false;  // none of them answers
  };
  virtual bool GetFigures(Figures* figures) const {
    (void)figures;
    return false;
  }

  // The exactly-once side of this sink (see ExactlyOnceSink), or null for a
  // sink that has none (stdout, a pipe).
  virtual ExactlyOnceSink* exactly_once() { return nullptr; }

  uint64_t accepted() const { return accepted_; }
  uint64_t durable() const { return durable_; }

 protected:
  // The counts are the base's; a sink moves them only through these.
  void CountAccepted(uint64_t n) { accepted_ += n; }
  // Everything before `offset` is durable (never beyond accepted()).
  void CountDurableUpTo(uint64_t offset) {
    if (offset > durable_) durable_ = offset < accepted_ ? offset : accepted_;
  }
  // Discard: accepted() becomes `keep`, durable() at most that.
  void CountCutTo(uint64_t keep) {
    accepted_ = keep;
    if (durable_ > keep) durable_ = keep;
  }
  // Discard of a sink that cannot retract: both counts become `keep`.
  void CountRenumbered(uint64_t keep) { accepted_ = durable_ = keep; }

 private:
  uint64_t accepted_ = 0;
  uint64_t durable_ = 0;
};

// A sink that writes the records' bytes as one stream (stdout, a file, a
// pipe): it implements Write, and takes any prefix of the records.
class ByteSink : public Sink {
 public:
  Status Append(const RecordBuffer& records, size_t limit, size_t* taken) final {
    return Write(records.data(), limit < records.size() ? limit : records.size(), taken);
  }
  ByteSink* byte_sink() final { return this; }

  // Writes up to `len` bytes without blocking for long; *written gets how
  // many were accepted. Ok with *written < len: the sink cannot take more
  // now (WaitSpec says what to wait for). An error: *written were taken
  // before it.
  virtual Status Write(const char* data, size_t len, size_t* written) = 0;
};

// Makes the sink a slot's config asks for (not yet opened; `config` must
// outlive it). `stdout_fd` is the descriptor a stdout sink writes to (1
// outside tests).
std::unique_ptr<Sink> MakeSink(const SlotConfig& config, int stdout_fd = 1);

}  // namespace pgslotd
