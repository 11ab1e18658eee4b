// Where the acknowledgement is decided: the one position a slot may report
// to the server as flushed.
//
// The worker numbers what it hands its sink as one stream of offsets (a
// byte sink's bytes; offset 0 is the sink's first). It tells the policy what
// happens, and nothing else decides what is acknowledged:
//   - Data: a message's output is appended up to an offset, with its
//     position and the transaction state after it;
//   - InPieces / Data: a message whose output is appended a piece at a time
//     (a streamed transaction's commit) counts only once it is whole;
//   - Keepalive: the server's WAL end, at the current end of the stream
//     (everything it decoded before has reached us);
//   - Durable / Completed: the sink made its output durable up to an
//     offset, or completed a range of it, possibly out of order;
//   - Recorded: an exactly-once sink recorded (offset, position) durably;
//   - readings of the server's WAL position (server()): what it has proven.
//
// Marks. Data and keepalives become marks: "once every offset before
// `offset` is durable, `lsn` may be acknowledged". A data mark is laid at the
// end of a read batch, every kMarkEvery of output, and, for an exactly-once
// sink, at the end of every transaction (its marks fall only between
// transactions: the places a file may be cut back to and its record may
// name). A keepalive's mark is capped at what the server has proven
// (slot/server_position.h). durable_lsn() is the highest position of a mark
// whose offsets are all durable; it never moves backwards and never drops
// below the floor (the slot's confirmed_flush_lsn), except at an explicit
// Restart (a file cut back to its record).
//
// The answer, Acknowledgeable(): for an exactly-once sink the position its
// state record holds (nothing is acknowledged that a crash could take
// back); for any other sink durable_lsn().
//
// No I/O; the clock is passed in. Not thread-safe: owned by one slot
// worker. Memory is a ring that grows to the number of marks outstanding at
// once and is then reused: no allocation per message.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "pg/lsn.h"
#include "slot/server_position.h"

namespace pgslotd {

class AckPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  // A data mark at least every this much output, so that a pipe reader's
  // progress is acknowledged within a batch.
  static constexpr uint64_t kMarkEvery = 64 * 1024;

  // The formatter's transaction state after a message (decode/formatter.h).
  struct TxnState {
    bool in_transaction = false;     // the output ends inside a transaction
    bool ended_transaction = false;  // the message completed a transaction
  };
  // A position of the stream with the offset it stands at.
  struct Point {
    uint64_t offset = 0;
    Lsn lsn = kInvalidLsn;
  };

  // `exactly_once`: the sink keeps a state record (Sink::exactly_once).
  explicit AckPolicy(bool exactly_once);
  bool exactly_once() const { return exactly_once_; }

  // --- Where a session starts ------------------------------------------
  // A new stream from the server: no transaction is open, no output is unfinished,
  // no keepalive seen (pending marks stay: their offsets are still true).
  void NewStream();
  // Raises the durable position to at least `lsn` (the slot's
  // confirmed_flush_lsn, what the server has already been told).
  void RaiseFloor(Lsn lsn) { durable_lsn_ = std::max(durable_lsn_, lsn); }
  // Forgets every pending mark: the stream goes on at `offset`, which
  // stands for `lsn` (even if lower: a file cut back to its record).
  void Restart(uint64_t offset, Lsn lsn);
  // An exactly-once sink's record at session start (`lsn` may be
  // kInvalidLsn: a record that names no position yet).
  void StartFromRecord(uint64_t offset, Lsn lsn);

  // --- What happens ----------------------------------------------------
  // A message at `lsn` is appended whole; the stream ends at `end`.
  void Data(Lsn lsn, uint64_t end, TxnState state, Clock::time_point now);
  // A message's output begins at `start` but comes in pieces: what came
  // before is marked at `start`, and no mark falls inside its output until
  // Data (or Dropped) says it is whole.
  void InPieces(uint64_t start, Clock::time_point now);
  // The output of a unit from `start` on was dropped before the sink made
  // it durable (a transaction the sink already holds): the stream goes on
  // at `start`, and offsets past it are no longer durable.
  void Dropped(uint64_t start);
  // The sink will never take what lies past `offset` (a paused slot drops
  // what it has not written): marks above it are forgotten.
  void Unwritten(uint64_t offset);
  // The end of a read batch at `end`: the data received gets its mark.
  void EndOfBatch(uint64_t end, Clock::time_point now);
  // Output with no position of its own (a snapshot's lines, written
  // between transactions) ends at `end`. For an exactly-once sink it is
  // marked with the position of the mark before it, which it changes
  // nothing of, so that a record can hold it at once (not only once the
  // next message comes: a stop before that would cut it off).
  void Positionless(uint64_t end, Clock::time_point now);
  // A keepalive at the stream's `end` whose WAL end (already cut to any
  // end position) is `claim`. Returns how far it may be acknowledged.
  Lsn Keepalive(Lsn claim, uint64_t end, Clock::time_point now);
  // A newer reading of the server's position may let the last keepalive go
  // further, as long as nothing came after it (the stream still ends at
  // `end`).
  void FollowReadings(uint64_t end, Clock::time_point now);
  // The sink made every offset before `durable` durable. Returns true if
  // durable_lsn() moved.
  bool Durable(uint64_t durable);
  // The sink completed the offsets [begin, end), possibly out of order (a
  // record sink's delivery reports): durable moves over what is complete
  // without a gap. Returns true if durable_lsn() moved.
  bool Completed(uint64_t begin, uint64_t end);
  // An exactly-once sink recorded durably that its content up to `offset`
  // stands for `lsn`.
  void Recorded(uint64_t offset, Lsn lsn) { recorded_ = Point{offset, lsn}; }

  // --- Answers ---------------------------------------------------------
  // The one position that may be reported to the server as flushed.
  Lsn Acknowledgeable() const { return exactly_once_ ? recorded_.lsn : durable_lsn_; }
  // The highest position whose output is durable.
  Lsn durable_lsn() const { return durable_lsn_; }
  // Every offset before this one is durable (as far as the policy was told).
  uint64_t durable_offset() const { return durable_; }
  // What an exactly-once sink should record now: the durable position and
  // the boundary it stands at, when it differs from the record.
  std::optional<Point> CheckpointWanted() const;
  const Point& recorded() const { return recorded_; }
  // Between transactions, with no output unfinished: where an exactly-once sink may
  // be cut, rotated or reopened.
  bool AtBoundary() const { return !in_pieces_ && !in_transaction_; }
  bool in_pieces() const { return in_pieces_; }
  // The offset of the last mark made durable: a message boundary, what a
  // failing sink that can take bytes back is cut back to.
  uint64_t SafeOffset() const { return safe_offset_; }
  // The first boundary above `offset`, or `offset` when none is known.
  uint64_t NextBoundary(uint64_t offset) const;
  // Whether `offset` is a message boundary (SafeOffset or a pending mark).
  bool IsBoundary(uint64_t offset) const;
  // Whether some output is not yet durable, and since when (lag_seconds).
  bool HasPending() const { return count_ > 0; }
  Clock::time_point OldestPending() const;
  ServerPosition& server() { return server_; }
  const ServerPosition& server() const { return server_; }

 private:
  struct Mark {
    uint64_t offset;
    Lsn lsn;
    Clock::time_point received_at;
  };
  // The last keepalive that marked a boundary: what it claimed, where in
  // the stream it came, and how far the reading of its time let it go.
  struct KeepaliveClaim {
    Lsn claim = kInvalidLsn;
    uint64_t offset = 0;
    Lsn acked = kInvalidLsn;
  };

  void AddMark(uint64_t offset, Lsn lsn, Clock::time_point received_at);
  void MarkPending(uint64_t end, Clock::time_point now);
  void Grow();

  const bool exactly_once_;
  ServerPosition server_;
  std::vector<Mark> ring_;
  size_t head_ = 0;   // index of the oldest mark
  size_t count_ = 0;  // marks pending
  Lsn durable_lsn_ = kInvalidLsn;
  uint64_t durable_ = 0;      // highest durable offset seen
  uint64_t safe_offset_ = 0;  // offset of the last mark made durable
  // Completed ranges beyond durable_, sorted, disjoint (Completed).
  std::vector<std::pair<uint64_t, uint64_t>> completed_;
  // Data appended since the last mark: its highest position.
  bool has_pending_ = false;
  Lsn pending_lsn_ = kInvalidLsn;
  uint64_t last_mark_offset_ = 0;
  bool in_transaction_ = false;
  bool in_pieces_ = false;
  KeepaliveClaim keepalive_;
  Point recorded_;  // an exactly-once sink's state record
};

}  // namespace pgslotd
