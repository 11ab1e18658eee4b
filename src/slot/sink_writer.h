// The slot's side of its sink: the record buffer the formatter appends to,
// and how and when its records go to the sink and are made durable.
//
// Offsets: appended() numbers everything handed to the sink or waiting in
// the buffer as one stream (the sink's accepted() plus what is buffered);
// the ack policy's marks are offsets of that stream.
//
// Writing never blocks for long: Write hands the buffer to the sink until it
// is empty or the sink takes no more now (Blocked(); WaitSpec says on what).
// Sync makes durable what the sink has accepted: at once for a sink whose
// sync is cheap, on the fsync_interval schedule otherwise (group commit).
//
// Owned by one slot worker.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string_view>

#include "config/config.h"
#include "decode/record_buffer.h"
#include "sink/sink.h"
#include "util/status.h"

namespace pgslotd {

class SinkWriter {
 public:
  using Clock = std::chrono::steady_clock;

  // `bytes` counts what the sink accepts (SlotStats::bytes).
  SinkWriter(std::unique_ptr<Sink> sink, const SlotConfig& config, std::atomic<uint64_t>* bytes);

  Sink* sink() { return sink_.get(); }
  const Sink* sink() const { return sink_.get(); }
  RecordBuffer* buffer() { return &buffer_; }
  const RecordBuffer& buffered() const { return buffer_; }
  uint64_t appended() const { return sink_->accepted() + buffer_.size(); }

  // Hands the buffer to the sink until it is empty or the sink takes no
  // more now (then Blocked()).
  Status Write(Clock::time_point now);
  // The sink did not take all that was buffered.
  bool Blocked() const { return !buffer_.empty(); }
  // Whether WriteThrough may be used: the sink takes bytes.
  bool CanWriteThrough() { return sink_->byte_sink() != nullptr; }
  // A large raw message at `lsn` straight from where libpq holds it: the
  // buffer first, then the payload; only what the sink does not take now is
  // copied into the buffer. Then "\n". The record ends in the buffer.
  Status WriteThrough(std::string_view payload, Lsn lsn, Clock::time_point now);
  // Writes what is buffered up to stream offset `boundary` (the end of the
  // message the sink is in), waiting for the sink while it blocks, until
  // `until` or `*stop`.
  void WriteUpTo(uint64_t boundary, Clock::time_point until, const std::atomic<bool>* stop,
                 std::atomic<int64_t>* heartbeat);
  // Waits a little (at most 100 ms) for what a blocked sink waits for.
  void WaitForSinkBriefly() const;

  // Syncs when due (`force`: now). *synced tells whether a costly sync ran
  // and succeeded (a group commit the state record may follow).
  Status Sync(Clock::time_point now, bool force, bool* synced = nullptr);
  // When the next scheduled sync is due (Clock::time_point::max(): none).
  Clock::time_point SyncDue() const;

  // Drops the output from stream offset `start` on: from the buffer, and
  // from the sink (Discard) what it has accepted.
  Status DropSince(uint64_t start);
  // Cuts the sink back to `keep` and empties the buffer (after a failure).
  Status CutBack(uint64_t keep);
  // Keeps the first `n` bytes of the buffer.
  void KeepBuffered(uint64_t n) { buffer_.Truncate(static_cast<size_t>(n)); }
  // After a large message: the buffer back to its usual size, if empty.
  void ShrinkBuffer();

 private:
  // Hands the sink records within the first `limit` bytes of the buffer,
  // and consumes what it took.
  Status AppendSome(size_t limit, size_t* n, Clock::time_point now);
  void Taken(size_t n, Clock::time_point now);

  std::unique_ptr<Sink> sink_;
  const SlotConfig& config_;
  std::atomic<uint64_t>* bytes_;
  size_t buffer_capacity_;  // what buffer_ starts with
  RecordBuffer buffer_;
  bool unsynced_ = false;  // accepted bytes a costly sync has not covered
  Clock::time_point unsynced_since_;
};

}  // namespace pgslotd
