// The lag alarm of one slot: a state machine fed a sample every second or
// so, which says when to raise, repeat and clear the alarm.
//
// Raised when any of these holds:
//   - lag_bytes stays above `bytes` for longer than `seconds`;
//   - lag_seconds (age of the oldest change received but not yet durable)
//     exceeds `seconds`;
//   - the server reports wal_status "unreserved" (or "lost");
//   - the server's safe_wal_size for the slot falls below the floor: the
//     configured `safe_wal_size`, capped at a quarter of the server's
//     max_slot_wal_keep_size, so that a server with a small limit does not
//     alarm all the time;
//   - the slot has not been streaming (connecting, reconnecting, failed) for
//     longer than `seconds`: a connection that keeps failing or a server
//     that refuses the slot is a stuck slot too.
// A burst that drains within `seconds` never raises it: an alarm means stuck
// or falling behind, not busy.
//
// Cleared once every figure is back under half its threshold (safe_wal_size
// at least 1.5 times the same floor, capped as for raising: a drained slot
// has the server's whole limit ahead of it), the slot streams, and this has
// lasted min(seconds, 30 s): hysteresis, so that it does not flap.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"

namespace pgslotd {

struct LagSample {
  uint64_t lag_bytes = 0;
  double lag_seconds = 0;
  std::string wal_status;                          // "" when unknown
  std::optional<int64_t> safe_wal_size;            // none when unknown or unlimited
  std::optional<uint64_t> max_slot_wal_keep_size;  // the server's limit, when known
  bool streaming = true;
  std::string state;  // the slot's state, for the reason text
};

class LagAlarm {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Event { kNone, kRaised, kRepeated, kCleared };

  // Feeds one sample. *reason gets the cause(s) of a raised or repeated
  // alarm ("lag 1.5 GiB above 1.0 GiB for 312 s"), or "" otherwise.
  Event Update(Clock::time_point now, const LagSample& sample, const LagAlarmConfig& config,
               std::string* reason);
  bool active() const { return active_; }

 private:
  std::optional<Clock::time_point> bytes_over_since_;
  std::optional<Clock::time_point> not_streaming_since_;
  std::optional<Clock::time_point> healthy_since_;
  Clock::time_point last_logged_;
  bool active_ = false;
};

}  // namespace pgslotd
