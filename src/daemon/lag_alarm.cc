#include "daemon/lag_alarm.h"

#include <algorithm>
#include <cstdio>

#include "daemon/status_line.h"

namespace pgslotd {

namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

void Add(std::string* reason, const std::string& part) {
  if (!reason->empty()) *reason += "; ";
  *reason += part;
}

// The safe_wal_size floor in force, for raising and clearing alike: the
// configured one, capped at a quarter of the server's max_slot_wal_keep_size
// when that is known. 0 disables the check.
uint64_t SafeWalFloor(const LagSample& s, const LagAlarmConfig& c) {
  uint64_t floor = c.safe_wal_size;
  if (s.max_slot_wal_keep_size) floor = std::min(floor, *s.max_slot_wal_keep_size / 4);
  return floor;
}

// Whether the server reports a safe_wal_size and it is below `bytes`.
bool SafeWalBelow(const LagSample& s, uint64_t bytes) {
  return s.safe_wal_size &&
         (*s.safe_wal_size < 0 || static_cast<uint64_t>(*s.safe_wal_size) < bytes);
}

// Whether every figure is back under half its threshold (safe_wal_size
// above 1.5 times the floor) and the slot streams.
bool Healthy(const LagSample& s, const LagAlarmConfig& c, uint64_t floor, double limit) {
  return s.streaming && s.lag_bytes < c.bytes / 2 && s.lag_seconds < limit / 2 &&
         s.wal_status != "unreserved" && s.wal_status != "lost" &&
         (floor == 0 || !SafeWalBelow(s, floor + floor / 2));
}

}  // namespace

LagAlarm::Event LagAlarm::Update(Clock::time_point now, const LagSample& s, const LagAlarmConfig& c,
                                 std::string* reason) {
  reason->clear();
  const uint64_t floor = SafeWalFloor(s, c);
  const double limit = std::chrono::duration<double>(c.seconds).count();

  if (s.lag_bytes > c.bytes) {
    if (!bytes_over_since_) bytes_over_since_ = now;
  } else {
    bytes_over_since_.reset();
  }
  if (!s.streaming) {
    if (!not_streaming_since_) not_streaming_since_ = now;
  } else {
    not_streaming_since_.reset();
  }

  if (bytes_over_since_ && Seconds(now - *bytes_over_since_) > limit) {
    Add(reason, "lag " + FormatBytes(s.lag_bytes) + " above " + FormatBytes(c.bytes) + " for " +
                    Fixed(Seconds(now - *bytes_over_since_)) + " s");
  }
  if (s.lag_seconds > limit) {
    Add(reason, "the oldest change not yet durable is " + Fixed(s.lag_seconds) + " s old");
  }
  if (s.wal_status == "unreserved" || s.wal_status == "lost") {
    Add(reason, "the server reports wal_status " + s.wal_status);
  }
  if (floor > 0 && SafeWalBelow(s, floor)) {
    Add(reason, "safe_wal_size " +
                    FormatBytes(static_cast<uint64_t>(std::max<int64_t>(0, *s.safe_wal_size))) +
                    " below " + FormatBytes(floor));
  }
  if (not_streaming_since_ && Seconds(now - *not_streaming_since_) > limit) {
    Add(reason, "not streaming (" + s.state + ") for " +
                    Fixed(Seconds(now - *not_streaming_since_)) + " s");
  }

  if (!reason->empty()) {
    healthy_since_.reset();
    if (!active_) {
      active_ = true;
      last_logged_ = now;
      return Event::kRaised;
    }
    if (now - last_logged_ >= c.repeat) {
      last_logged_ = now;
      return Event::kRepeated;
    }
    return Event::kNone;
  }
  if (!active_) return Event::kNone;

  if (!Healthy(s, c, floor, limit)) {
    healthy_since_.reset();
    return Event::kNone;
  }
  if (!healthy_since_) healthy_since_ = now;
  auto hold = std::min<Clock::duration>(c.seconds, std::chrono::seconds(30));
  if (now - *healthy_since_ >= hold) {
    active_ = false;
    healthy_since_.reset();
    return Event::kCleared;
  }
  return Event::kNone;
}

}  // namespace pgslotd
