// Decides whether a slot worker waits a moment before it polls its
// connection again, so that a fast stream is read in large batches rather
// than in the few messages that arrived since the last read.
//
// A walsender sends every message with its own send(). A client that polls
// as soon as anything arrives keeps pace with it so closely that each
// wakeup finds a few dozen messages, and the wakeups (a context switch in
// the client, a wakeup call in the walsender, recv calls, a write per
// batch) cost more CPU than the messages themselves. Waiting kWait before
// each poll lets a batch gather first; measured on test_decoding, that
// halves the client's CPU (docs/performance.md).
//
// The wait is short and fixed on purpose. A Unix socket holds only the
// sender's SO_SNDBUF (208 KiB by default) of buffers, about 1.2 KiB each for
// a small message, so it fills up after some 170 test_decoding messages, and
// a full socket stops the walsender, which is the bottleneck. In 250 us a
// walsender on this machine sends about 30 messages; the rest of a batch
// arrives while the worker handles the previous one. Longer waits (500 us,
// 1 ms) made the walsender wait for the client, and so the run slower;
// controllers that aimed at a number of messages per wakeup either woke
// more often or let the socket fill up.
//
// The pacer only waits while the stream is fast: at least kFastRate bytes
// per second over a window of kWindow. A slower stream is read at once,
// so a trickle of commits waits at most once, in the window right after a
// burst.
//
// Not thread-safe: owned by one slot worker. No allocation.
#pragma once

#include <chrono>
#include <cstdint>

namespace pgslotd {

class ReadPacer {
 public:
  using Clock = std::chrono::steady_clock;
  using Nanos = std::chrono::nanoseconds;

  static constexpr uint64_t kFastRate = 4 << 20;  // bytes per second
  static constexpr std::chrono::milliseconds kWindow{10};
  static constexpr Nanos kWait{250000};

  // A new stream starts slow.
  explicit ReadPacer(Clock::time_point now) : window_start_(now) {}

  // One turn of the worker, at `now`, received `bytes` bytes (zero when
  // nothing came).
  void Received(Clock::time_point now, uint64_t bytes);

  // How long to wait before the next poll: kWait on a fast stream, else 0.
  Nanos Wait() const { return fast_ ? kWait : Nanos::zero(); }

 private:
  Clock::time_point window_start_;
  uint64_t window_bytes_ = 0;
  bool fast_ = false;
};

}  // namespace pgslotd
