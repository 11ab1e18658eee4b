// Time helpers for poll(2) timeouts.
#pragma once

#include <chrono>
#include <cstdint>

namespace pgslotd {

// Milliseconds from `now` until `t`, rounded up so that a poll of that long
// does not wake just before it; 0 when `t` has passed.
inline int64_t MillisUntil(std::chrono::steady_clock::time_point t,
                           std::chrono::steady_clock::time_point now) {
  if (t <= now) return 0;
  return std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
}

}  // namespace pgslotd
