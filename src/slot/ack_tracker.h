// Decides which LSN a slot may acknowledge as flushed.
//
// The worker numbers the bytes it hands to its sink as one stream (offset 0
// is the sink's first byte). It records marks: "once every byte before
// `offset` is durable, `lsn` may be acknowledged". A data message yields a
// mark at the end of its bytes with its own LSN; a keepalive yields a mark at
// the current end of the stream with the server's WAL end (everything the
// server decoded before it has reached us, so once that is durable the whole
// position is safe). The flushed LSN is the highest LSN of a mark whose
// offset is durable; it never moves backwards and never drops below the
// floor (the slot's confirmed_flush_lsn when streaming began).
//
// Not thread-safe: owned by one slot worker. Memory is a ring that grows to
// the number of marks outstanding at once and is then reused: no allocation
// per message.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "pg/lsn.h"

namespace pgslotd {

class AckTracker {
 public:
  using Clock = std::chrono::steady_clock;

  AckTracker();

  // Raises the flushed position to at least `lsn` (the server's own record).
  void SetFloor(Lsn lsn);

  // Records that `lsn` may be acknowledged once bytes [0, offset) are
  // durable. Offsets must not decrease. A mark whose offset is already
  // durable (see Advance) takes effect at once.
  void AddMark(uint64_t offset, Lsn lsn, Clock::time_point received_at);

  // Moves the flushed position past every mark at or below `durable`.
  // Returns true if the flushed position moved.
  bool Advance(uint64_t durable);

  // The offset of the last mark applied (a message boundary the flushed
  // position stands for; the offset given to Reset when none was since);
  // what a failing sink is cut back to, and what a state record records.
  uint64_t SafeOffset() const { return safe_offset_; }

  // The first mark offset above `offset` (a message boundary), or `offset`
  // itself when no mark lies above it.
  uint64_t NextBoundary(uint64_t offset) const;

  // Forgets every pending mark and restarts the stream at `offset` (after
  // the sink dropped what was not durable).
  void Reset(uint64_t offset);
  // The sink dropped the bytes from `offset` on (none of them under a
  // pending mark): offsets past it are no longer durable.
  void Truncate(uint64_t offset) { durable_ = std::min(durable_, offset); }
  // Forgets the pending marks above `offset` (their bytes were dropped
  // before the sink took them).
  void DropAbove(uint64_t offset);
  // Whether `offset` is a message boundary the tracker knows: the last
  // mark applied, or a pending mark.
  bool IsBoundary(uint64_t offset) const;
  // Reset(offset), and the flushed position becomes `lsn`, even if lower
  // (a file sink cut back to its state record, which stands for `lsn`).
  void Restart(uint64_t offset, Lsn lsn);

  Lsn flushed() const { return flushed_; }
  bool HasPending() const { return count_ > 0; }
  // When the oldest mark not yet durable was received (lag_seconds).
  Clock::time_point OldestPending() const;

 private:
  struct Mark {
    uint64_t offset;
    Lsn lsn;
    Clock::time_point received_at;
  };
  void Grow();

  std::vector<Mark> ring_;
  size_t head_ = 0;   // index of the oldest mark
  size_t count_ = 0;  // marks pending
  Lsn flushed_ = kInvalidLsn;
  uint64_t durable_ = 0;      // highest durable offset seen
  uint64_t safe_offset_ = 0;  // offset of the last mark applied
};

}  // namespace pgslotd
