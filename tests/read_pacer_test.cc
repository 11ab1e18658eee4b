#include "slot/read_pacer.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using Nanos = ReadPacer::Nanos;

constexpr ReadPacer::Clock::time_point kT0{std::chrono::seconds(1000)};

// Feeds `turns` turns of `bytes` each, `step` apart, starting at *t.
void Feed(ReadPacer* p, ReadPacer::Clock::time_point* t, int turns, uint64_t bytes,
          microseconds step) {
  for (int i = 0; i < turns; ++i) {
    *t += step;
    p->Received(*t, bytes);
  }
}

TEST(ReadPacerTest, NewStreamIsReadAtOnce) {
  ReadPacer p(kT0);
  EXPECT_EQ(p.Wait(), Nanos::zero());
}

TEST(ReadPacerTest, FastStreamWaitsBeforePolling) {
  ReadPacer p(kT0);
  auto t = kT0;
  // 16 KiB every 500 us is 32 MiB/s.
  Feed(&p, &t, 19, 16 << 10, microseconds(500));
  EXPECT_EQ(p.Wait(), Nanos::zero()) << "decided before a whole window passed";
  Feed(&p, &t, 1, 16 << 10, microseconds(500));
  EXPECT_EQ(p.Wait(), ReadPacer::kWait);
}

TEST(ReadPacerTest, TrickleOfCommitsIsNeverDelayed) {
  ReadPacer p(kT0);
  auto t = kT0;
  // 1,000 commits a second of 500 bytes each: 0.5 MB/s.
  Feed(&p, &t, 5000, 500, microseconds(1000));
  EXPECT_EQ(p.Wait(), Nanos::zero());
}

TEST(ReadPacerTest, RateJustBelowAndAtTheThreshold) {
  // kFastRate bytes per second is kFastRate / 100 per 10 ms window,
  // rounded up to whole bytes.
  uint64_t per_window = (ReadPacer::kFastRate + 99) / 100;
  {
    ReadPacer p(kT0);
    p.Received(kT0 + milliseconds(10), per_window - 1);
    EXPECT_EQ(p.Wait(), Nanos::zero());
  }
  {
    ReadPacer p(kT0);
    p.Received(kT0 + milliseconds(10), per_window);
    EXPECT_EQ(p.Wait(), ReadPacer::kWait);
  }
}

TEST(ReadPacerTest, PauseEndsTheWaiting) {
  ReadPacer p(kT0);
  auto t = kT0;
  Feed(&p, &t, 40, 32 << 10, microseconds(500));
  ASSERT_EQ(p.Wait(), ReadPacer::kWait);
  // The stream stops: the next turn comes after a long poll with nothing.
  t += std::chrono::seconds(2);
  p.Received(t, 0);
  EXPECT_EQ(p.Wait(), Nanos::zero());
  // The first message after the pause is read at once, not after a wait.
  t += microseconds(100);
  p.Received(t, 200);
  EXPECT_EQ(p.Wait(), Nanos::zero());
}

TEST(ReadPacerTest, SlowingDownEndsTheWaitingWithinAWindow) {
  ReadPacer p(kT0);
  auto t = kT0;
  Feed(&p, &t, 40, 32 << 10, microseconds(500));
  ASSERT_EQ(p.Wait(), ReadPacer::kWait);
  // 1 KiB per ms is 1 MiB/s, below kFastRate.
  Feed(&p, &t, 25, 1 << 10, microseconds(1000));
  EXPECT_EQ(p.Wait(), Nanos::zero());
}

}  // namespace
}  // namespace pgslotd
