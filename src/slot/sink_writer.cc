#include "slot/sink_writer.h"

#include <poll.h>

#include <algorithm>

namespace pgslotd {

SinkWriter::SinkWriter(std::unique_ptr<Sink> sink, const SlotConfig& config,
                       std::atomic<uint64_t>* bytes)
    : sink_(std::move(sink)),
      config_(config),
      bytes_(bytes),
      buffer_capacity_(static_cast<size_t>(std::min<uint64_t>(config.buffer_size, 1 << 20))),
      buffer_(buffer_capacity_) {
  buffer_.set_wants_keys(sink_->byte_sink() == nullptr);
}

void SinkWriter::Taken(size_t n, Clock::time_point now) {
  if (n == 0) return;
  bytes_->fetch_add(n, std::memory_order_relaxed);
  if (!unsynced_) {
    unsynced_ = true;
    unsynced_since_ = now;
  }
}

Status SinkWriter::AppendSome(size_t limit, size_t* n, Clock::time_point now) {
  *n = 0;
  Status s = sink_->Append(buffer_, limit, n);
  buffer_.Consume(*n);
  Taken(*n, now);
  return s;
}

Status SinkWriter::Write(Clock::time_point now) {
  while (!buffer_.empty()) {
    size_t want = buffer_.size();
    size_t n = 0;
    Status s = AppendSome(want, &n, now);
    if (!s.ok()) return s;
    if (n < want) break;  // the sink takes no more now
  }
  return Status::Ok();
}

Status SinkWriter::WriteThrough(std::string_view payload, Lsn lsn, Clock::time_point now) {
  size_t done = 0;
  Status s = Write(now);
  if (s.ok() && buffer_.empty()) {
    s = sink_->byte_sink()->Write(payload.data(), payload.size(), &done);
    Taken(done, now);
  }
  if (!s.ok()) return s.Prefixed(sink_->Describe());
  buffer_.bytes()->Append(payload.data() + done, payload.size() - done);
  buffer_.bytes()->Append('\n');
  RecordInfo info;
  info.lsn = lsn;
  buffer_.EndRecord(info);
  return Status::Ok();
}

void SinkWriter::WaitForSinkBriefly() const {
  Sink::Wait w = sink_->WaitSpec();
  struct pollfd pfd = {w.fd, w.events, 0};
  ::poll(&pfd, w.fd >= 0 ? 1 : 0, static_cast<int>(std::min<int64_t>(w.retry.count(), 100)));
}

void SinkWriter::WriteUpTo(uint64_t boundary, Clock::time_point until,
                           const std::atomic<bool>* stop, std::atomic<int64_t>* heartbeat) {
  while (sink_->accepted() < boundary && !buffer_.empty() && Clock::now() < until &&
         !stop->load(std::memory_order_acquire)) {
    heartbeat->store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    size_t n = 0;
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(boundary - sink_->accepted(), buffer_.size()));
    Status ws = AppendSome(want, &n, Clock::now());
    if (!ws.ok()) break;
    if (n < want) WaitForSinkBriefly();
  }
}

Status SinkWriter::Sync(Clock::time_point now, bool force, bool* synced) {
  if (synced) *synced = false;
  bool costly = sink_->SyncIsCostly();
  if (costly && !force && config_.fsync_interval.count() > 0 &&
      !(unsynced_ && now - unsynced_since_ >= config_.fsync_interval)) {
    return Status::Ok();
  }
  Status s = sink_->Sync();
  if (synced) *synced = costly && s.ok();
  if (s.ok() && !sink_->SyncIsCostly()) unsynced_ = false;
  return s;
}

SinkWriter::Clock::time_point SinkWriter::SyncDue() const {
  if (!unsynced_ || !sink_->SyncIsCostly()) return Clock::time_point::max();
  return unsynced_since_ + config_.fsync_interval;
}

Status SinkWriter::DropSince(uint64_t start) {
  uint64_t accepted = sink_->accepted();
  if (start >= accepted) {
    buffer_.Truncate(static_cast<size_t>(start - accepted));
    return Status::Ok();
  }
  buffer_.Clear();
  Status s = sink_->Discard(start);
  return s.ok() ? s : s.Prefixed(sink_->Describe());
}

Status SinkWriter::CutBack(uint64_t keep) {
  Status s = sink_->Discard(keep);
  buffer_.Clear();
  unsynced_ = false;
  return s;
}

void SinkWriter::ShrinkBuffer() { buffer_.Shrink(buffer_capacity_); }

}  // namespace pgslotd
