#include "slot/ack_tracker.h"

#include <algorithm>
#include <cstring>

namespace pgslotd {

AckTracker::AckTracker() { ring_.resize(256); }

void AckTracker::SetFloor(Lsn lsn) { flushed_ = std::max(flushed_, lsn); }

void AckTracker::Grow() {
  std::vector<Mark> bigger(ring_.size() * 2);
  for (size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
  ring_.swap(bigger);
  head_ = 0;
}

void AckTracker::AddMark(uint64_t offset, Lsn lsn, Clock::time_point received_at) {
  if (count_ == 0 && offset <= durable_) {
    flushed_ = std::max(flushed_, lsn);
    safe_offset_ = std::max(safe_offset_, offset);
    return;
  }
  // Coalesce with the newest mark at the same offset (keepalives while idle).
  if (count_ > 0) {
    Mark& last = ring_[(head_ + count_ - 1) % ring_.size()];
    if (last.offset == offset) {
      last.lsn = std::max(last.lsn, lsn);
      return;
    }
  }
  if (count_ == ring_.size()) Grow();
  ring_[(head_ + count_) % ring_.size()] = Mark{offset, lsn, received_at};
  ++count_;
}

bool AckTracker::Advance(uint64_t durable) {
  durable_ = std::max(durable_, durable);
  Lsn before = flushed_;
  while (count_ > 0) {
    const Mark& m = ring_[head_];
    if (m.offset > durable_) break;
    flushed_ = std::max(flushed_, m.lsn);
    safe_offset_ = m.offset;
    head_ = (head_ + 1) % ring_.size();
    --count_;
  }
  return flushed_ != before;
}

uint64_t AckTracker::NextBoundary(uint64_t offset) const {
  for (size_t i = 0; i < count_; ++i) {
    const Mark& m = ring_[(head_ + i) % ring_.size()];
    if (m.offset > offset) return m.offset;
  }
  return offset;
}

void AckTracker::DropAbove(uint64_t offset) {
  while (count_ > 0 && ring_[(head_ + count_ - 1) % ring_.size()].offset > offset) --count_;
}

bool AckTracker::IsBoundary(uint64_t offset) const {
  if (offset == safe_offset_) return true;
  for (size_t i = 0; i < count_; ++i) {
    if (ring_[(head_ + i) % ring_.size()].offset == offset) return true;
  }
  return false;
}

void AckTracker::Restart(uint64_t offset, Lsn lsn) {
  Reset(offset);
  flushed_ = lsn;
}

void AckTracker::Reset(uint64_t offset) {
  head_ = 0;
  count_ = 0;
  durable_ = offset;
  safe_offset_ = offset;
}

AckTracker::Clock::time_point AckTracker::OldestPending() const {
  return count_ > 0 ? ring_[head_].received_at : Clock::time_point();
}

}  // namespace pgslotd
