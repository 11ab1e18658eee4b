// Checking the stream's word against the server's: the I/O half of
// slot/server_position.h.
//
// A position the stream names far beyond the last independent reading (a
// keepalive's WAL end, a change's position) is read again on a plain
// connection (pg_current_wal_lsn()); if it is still beyond, the session
// ends (CheckClaim). A server that asks for a reply at a position beyond
// the last reading gets a fresh reading, at most every kReplyReadingEvery
// (AnswerReplyRequest): a walsender whose server shuts down waits for its
// final position to be acknowledged, so when no reading can prove it the
// session ends rather than hold the shutdown.
//
// Owned by one slot worker; its readings go into that worker's
// ServerPosition.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

#include "config/config.h"
#include "pg/lsn.h"
#include "slot/server_position.h"
#include "util/status.h"

namespace pgslotd {

class ClaimCheck {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kClaimReadingTimeout{10};
  static constexpr std::chrono::seconds kReplyReadingEvery{1};
  static constexpr std::chrono::seconds kReplyReadingTimeout{2};
  static constexpr std::chrono::seconds kReplyRequestsApart{3};  // more: a new run
  static constexpr std::chrono::seconds kReplyRequestsUnanswered{5};

  // Readings are taken on connections of `config.connection`; a stop
  // (`wakeup_fd`, `stop`) interrupts them; `heartbeat` is touched while
  // they wait.
  ClaimCheck(const SlotConfig& config, ServerPosition* position, int wakeup_fd,
             const std::atomic<bool>* stop, std::atomic<int64_t>* heartbeat)
      : config_(config),
        position_(position),
        wakeup_fd_(wakeup_fd),
        stop_(stop),
        heartbeat_(heartbeat) {}

  // `claim` (what: "a keepalive", "a change") needs a reading
  // (position->NeedsReading): reads, and returns a retryable error ending
  // the session if the claim is still beyond it (or the reading was
  // interrupted by a stop).
  Status CheckClaim(Lsn claim, const char* what);
  // The server asks for a reply at `claim`, beyond the last reading: reads
  // again (rate-limited), and ends the session (retryable) when the server
  // refuses connections because it shuts down (57P03), or when readings
  // have failed for kReplyRequestsUnanswered while it kept asking.
  Status AnswerReplyRequest(Lsn claim, Clock::time_point now);

 private:
  const SlotConfig& config_;
  ServerPosition* position_;
  int wakeup_fd_;
  const std::atomic<bool>* stop_;
  std::atomic<int64_t>* heartbeat_;
  // AnswerReplyRequest's rate limit, and the run of reply requests whose
  // readings failed (none while the last one succeeded).
  Clock::time_point next_reply_reading_;
  std::optional<Clock::time_point> reply_readings_failing_since_;
  Clock::time_point last_failed_reply_reading_;
};

}  // namespace pgslotd
