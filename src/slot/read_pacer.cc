#include "slot/read_pacer.h"

namespace pgslotd {

void ReadPacer::Received(Clock::time_point now, uint64_t bytes) {
  window_bytes_ += bytes;
  if (now - window_start_ < kWindow) return;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - window_start_).count();
  fast_ = window_bytes_ * 1000000 >= kFastRate * static_cast<uint64_t>(us);
  window_bytes_ = 0;
  window_start_ = now;
}

}  // namespace pgslotd
