// How far a slot may trust the positions its stream names.
//
// A keepalive's WAL end lets an idle slot advance (that keeps its WAL from
// piling up), and each change comes with its position: but both are only
// the stream's word. A forged keepalive of FFFFFFFF/0 once went into a state
// record and, pointed back at the real server, skipped every change the
// slot held. So the acknowledgement never rests on the stream alone: the
// server's WAL position as read independently (IDENTIFY_SYSTEM's xlogpos at
// the start of a session, pg_current_wal_lsn() on a plain connection since:
// the monitor's readings, or one read for the purpose) is what it proves;
// a reading taken before the session began (perhaps of another server, before
// a failover) proves nothing in it.
//
//   - a keepalive advances the acknowledgement at most to proven();
//   - a position more than kMargin beyond proven() (a keepalive's, or a
//     change's) needs a fresh reading before anything more is trusted; if
//     it is still beyond after one, the session ends (retryable).
// An honest server is only ever a little ahead of the last reading (the WAL
// written since), which the margin leaves room for.
//
// No I/O; owned by one slot worker.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "pg/lsn.h"

namespace pgslotd {

class ServerPosition {
 public:
  static constexpr uint64_t kMargin = 1ull << 30;  // 1 GiB

  // A new session: IDENTIFY_SYSTEM's xlogpos is the only reading so far.
  void Reset(Lsn identify_xlogpos) { proven_ = identify_xlogpos; }
  // An independent reading of the server's WAL position (never moves back).
  void Note(Lsn reading) { proven_ = std::max(proven_, reading); }

  Lsn proven() const { return proven_; }
  // What a keepalive's WAL end may advance the acknowledgement to.
  Lsn Cap(Lsn claim) const { return std::min(claim, proven_); }
  // Whether `claim` is so far beyond the last reading that it needs a fresh
  // one before it is trusted.
  bool NeedsReading(Lsn claim) const {
    return claim != kInvalidLsn && claim - std::min(claim, proven_) > kMargin;
  }

 private:
  Lsn proven_ = kInvalidLsn;
};

// The latest independent reading (the monitor's), handed from the
// supervisor's thread to a slot worker's. Only a reading taken since the
// worker's session began counts in it: one of an earlier server (before a
// failover or a restore) proves nothing about this one.
class ReportedReading {
 public:
  using Clock = std::chrono::steady_clock;
  // Any thread (one at a time).
  void Note(Lsn lsn, Clock::time_point read_at) {
    // The position is stored before its time, so that a time read
    // (acquire) comes with that reading or a newer.
    lsn_.store(lsn, std::memory_order_relaxed);
    at_ns_.store(read_at.time_since_epoch().count(), std::memory_order_release);
  }
  // The worker's thread: the reading if taken at or after `since`, else
  // kInvalidLsn.
  Lsn TakenSince(Clock::time_point since) const {
    Clock::time_point at{Clock::duration(at_ns_.load(std::memory_order_acquire))};
    return at < since ? kInvalidLsn : lsn_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> lsn_{0};
  std::atomic<int64_t> at_ns_{0};  // steady clock
};

}  // namespace pgslotd
