#include "slot/ack_policy.h"

#include <cstddef>

namespace pgslotd {

AckPolicy::AckPolicy(bool exactly_once) : exactly_once_(exactly_once) { ring_.resize(256); }

void AckPolicy::NewStream() {
  in_transaction_ = false;
  in_pieces_ = false;
  keepalive_ = KeepaliveClaim();
}

void AckPolicy::Restart(uint64_t offset, Lsn lsn) {
  head_ = 0;
  count_ = 0;
  completed_.clear();
  durable_ = offset;
  safe_offset_ = offset;
  last_mark_offset_ = offset;
  has_pending_ = false;
  in_pieces_ = false;
  durable_lsn_ = lsn;
}

void AckPolicy::StartFromRecord(uint64_t offset, Lsn lsn) {
  Restart(offset, lsn != kInvalidLsn ? lsn : durable_lsn_);
  recorded_ = Point{offset, lsn};
}

void AckPolicy::Data(Lsn lsn, uint64_t end, TxnState state, Clock::time_point now) {
  in_pieces_ = false;
  in_transaction_ = state.in_transaction;
  // For an exactly-once sink a unit ends where no transaction is open. A
  // message outside any transaction (a non-transactional logical message)
  // is known by its own start, which the server sends again when restarted
  // exactly there: its record names the position just past it, so that it
  // is written once.
  bool unit_done = exactly_once_ && !state.in_transaction;
  Lsn unit_lsn = unit_done && !state.ended_transaction ? lsn + 1 : lsn;
  pending_lsn_ = has_pending_ ? std::max(pending_lsn_, unit_lsn) : unit_lsn;
  has_pending_ = true;
  if (unit_done || end - last_mark_offset_ >= kMarkEvery) MarkPending(end, now);
}

void AckPolicy::InPieces(uint64_t start, Clock::time_point now) {
  // What came before is safe at `start`; no mark may fall inside the
  // message's output (a cut-back there would keep half a transaction).
  if (has_pending_) {
    last_mark_offset_ = start;
    AddMark(start, pending_lsn_, now);
    has_pending_ = false;
  }
  in_pieces_ = true;
}

void AckPolicy::Dropped(uint64_t start) {
  Unwritten(start);
  durable_ = std::min(durable_, start);
  in_transaction_ = false;
}

void AckPolicy::Unwritten(uint64_t offset) {
  while (count_ > 0 && ring_[(head_ + count_ - 1) % ring_.size()].offset > offset) --count_;
  while (!completed_.empty() && completed_.back().second > offset) {
    if (completed_.back().first >= offset) {
      completed_.pop_back();
    } else {
      completed_.back().second = offset;
    }
  }
  last_mark_offset_ = std::min(last_mark_offset_, offset);
  has_pending_ = false;
  in_pieces_ = false;
}

void AckPolicy::EndOfBatch(uint64_t end, Clock::time_point now) { MarkPending(end, now); }

void AckPolicy::Positionless(uint64_t end, Clock::time_point now) {
  if (!exactly_once_ || !AtBoundary() || has_pending_) return;
  Lsn before = count_ > 0 ? ring_[(head_ + count_ - 1) % ring_.size()].lsn : durable_lsn_;
  if (before == kInvalidLsn) return;
  last_mark_offset_ = end;
  AddMark(end, before, now);
}

void AckPolicy::MarkPending(uint64_t end, Clock::time_point now) {
  if (!has_pending_ || (exactly_once_ && !AtBoundary())) return;
  last_mark_offset_ = end;
  AddMark(end, pending_lsn_, now);
  has_pending_ = false;
}

Lsn AckPolicy::Keepalive(Lsn claim, uint64_t end, Clock::time_point now) {
  MarkPending(end, now);
  Lsn ackable = server_.Cap(claim);
  // Inside a transaction, this point is not one a file may be cut back to;
  // the commit brings its own, higher, mark.
  if (!exactly_once_ || AtBoundary()) {
    AddMark(end, ackable, now);
    keepalive_ = KeepaliveClaim{claim, end, ackable};
  }
  return ackable;
}

void AckPolicy::FollowReadings(uint64_t end, Clock::time_point now) {
  // An idle slot's last keepalive was capped at the reading of its time; a
  // newer reading lets it go further, as long as nothing came after it.
  if (keepalive_.claim <= keepalive_.acked || end != keepalive_.offset ||
      (exactly_once_ && !AtBoundary())) {
    return;
  }
  Lsn cap = server_.Cap(keepalive_.claim);
  if (cap <= keepalive_.acked) return;
  AddMark(keepalive_.offset, cap, now);
  keepalive_.acked = cap;
}

void AckPolicy::Grow() {
  std::vector<Mark> bigger(ring_.size() * 2);
  for (size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
  ring_.swap(bigger);
  head_ = 0;
}

void AckPolicy::AddMark(uint64_t offset, Lsn lsn, Clock::time_point received_at) {
  if (count_ == 0 && offset <= durable_) {
    durable_lsn_ = std::max(durable_lsn_, lsn);
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

bool AckPolicy::Durable(uint64_t durable) {
  durable_ = std::max(durable_, durable);
  // Completed ranges that now join the durable prefix without a gap.
  while (!completed_.empty() && completed_.front().first <= durable_) {
    durable_ = std::max(durable_, completed_.front().second);
    completed_.erase(completed_.begin());
  }
  Lsn before = durable_lsn_;
  while (count_ > 0) {
    const Mark& m = ring_[head_];
    if (m.offset > durable_) break;
    durable_lsn_ = std::max(durable_lsn_, m.lsn);
    safe_offset_ = m.offset;
    head_ = (head_ + 1) % ring_.size();
    --count_;
  }
  return durable_lsn_ != before;
}

bool AckPolicy::Completed(uint64_t begin, uint64_t end) {
  if (end <= begin || end <= durable_) return false;
  // Keep the ranges sorted and disjoint: insert, then merge with the
  // neighbours it touches (in place: the vector's storage is reused).
  auto range = std::make_pair(begin, end);
  size_t i = static_cast<size_t>(std::lower_bound(completed_.begin(), completed_.end(), range) -
                                 completed_.begin());
  completed_.insert(completed_.begin() + static_cast<std::ptrdiff_t>(i), range);
  if (i > 0 && completed_[i - 1].second >= completed_[i].first) {
    completed_[i - 1].second = std::max(completed_[i - 1].second, completed_[i].second);
    completed_.erase(completed_.begin() + static_cast<std::ptrdiff_t>(i));
    --i;
  }
  while (i + 1 < completed_.size() && completed_[i + 1].first <= completed_[i].second) {
    completed_[i].second = std::max(completed_[i].second, completed_[i + 1].second);
    completed_.erase(completed_.begin() + static_cast<std::ptrdiff_t>(i + 1));
  }
  return Durable(durable_);
}

std::optional<AckPolicy::Point> AckPolicy::CheckpointWanted() const {
  if (durable_lsn_ == kInvalidLsn) return std::nullopt;
  if (durable_lsn_ == recorded_.lsn && safe_offset_ == recorded_.offset) return std::nullopt;
  return Point{safe_offset_, durable_lsn_};
}

uint64_t AckPolicy::NextBoundary(uint64_t offset) const {
  for (size_t i = 0; i < count_; ++i) {
    const Mark& m = ring_[(head_ + i) % ring_.size()];
    if (m.offset > offset) return m.offset;
  }
  return offset;
}

bool AckPolicy::IsBoundary(uint64_t offset) const {
  if (offset == safe_offset_) return true;
  for (size_t i = 0; i < count_; ++i) {
    if (ring_[(head_ + i) % ring_.size()].offset == offset) return true;
  }
  return false;
}

AckPolicy::Clock::time_point AckPolicy::OldestPending() const {
  return count_ > 0 ? ring_[head_].received_at : Clock::time_point();
}

}  // namespace pgslotd
