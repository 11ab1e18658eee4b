#include "slot/ack_tracker.h"

#include <gtest/gtest.h>

#include "util/out_buffer.h"

namespace pgslotd {
namespace {

using Clock = AckTracker::Clock;

TEST(AckTrackerTest, AcknowledgesOnlyDurableMarks) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(100, 0x10, now);
  t.AddMark(250, 0x20, now);
  t.AddMark(400, 0x30, now);
  EXPECT_FALSE(t.Advance(99));
  EXPECT_EQ(t.flushed(), kInvalidLsn);
  EXPECT_TRUE(t.Advance(260));
  EXPECT_EQ(t.flushed(), 0x20u);
  EXPECT_EQ(t.SafeOffset(), 250u);
  EXPECT_TRUE(t.HasPending());
  EXPECT_TRUE(t.Advance(400));
  EXPECT_EQ(t.flushed(), 0x30u);
  EXPECT_FALSE(t.HasPending());
}

TEST(AckTrackerTest, NeverMovesBackwardsNorBelowFloor) {
  AckTracker t;
  t.SetFloor(0x500);
  auto now = Clock::now();
  t.AddMark(10, 0x100, now);  // a BEGIN whose first_lsn is older than the floor
  EXPECT_FALSE(t.Advance(10));
  EXPECT_EQ(t.flushed(), 0x500u);
  t.AddMark(20, 0x600, now);
  t.AddMark(30, 0x550, now);
  t.Advance(30);
  EXPECT_EQ(t.flushed(), 0x600u);
  t.SetFloor(0x10);
  EXPECT_EQ(t.flushed(), 0x600u);
}

TEST(AckTrackerTest, KeepaliveWhenIdleAppliesAtOnce) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(50, 0x10, now);
  t.Advance(50);
  t.AddMark(50, 0x99, now);  // keepalive at the current end, all durable
  EXPECT_EQ(t.flushed(), 0x99u);
}

TEST(AckTrackerTest, KeepaliveWaitsForEarlierBytes) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(50, 0x10, now);
  t.AddMark(50, 0x99, now);  // keepalive right after that data: coalesced
  EXPECT_EQ(t.flushed(), kInvalidLsn);
  t.Advance(49);
  EXPECT_EQ(t.flushed(), kInvalidLsn);
  t.Advance(50);
  EXPECT_EQ(t.flushed(), 0x99u);
}

TEST(AckTrackerTest, ResetDropsPendingAndGrowsPastRing) {
  AckTracker t;
  auto now = Clock::now();
  for (uint64_t i = 1; i <= 10000; ++i) t.AddMark(i * 10, i, now);
  EXPECT_EQ(t.OldestPending(), now);
  t.Advance(5000 * 10 + 5);
  EXPECT_EQ(t.flushed(), 5000u);
  EXPECT_EQ(t.SafeOffset(), 50000u);
  t.Reset(50000);
  EXPECT_FALSE(t.HasPending());
  t.Advance(1000000);
  EXPECT_EQ(t.flushed(), 5000u);
}

TEST(AckTrackerTest, SafeOffsetIsOnlyEverAMark) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(100, 0x10, now);
  t.Advance(350);  // durable past the mark, inside what follows it
  EXPECT_EQ(t.SafeOffset(), 100u);
  EXPECT_FALSE(t.HasPending());
  t.AddMark(300, 0x20, now);  // a mark already durable applies at once
  EXPECT_EQ(t.flushed(), 0x20u);
  EXPECT_EQ(t.SafeOffset(), 300u);
}

TEST(AckTrackerTest, RestartMayLowerTheFlushedPosition) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(100, 0x50, now);
  t.Advance(100);
  t.Restart(60, 0x30);  // a file cut back to its state record
  EXPECT_EQ(t.flushed(), 0x30u);
  EXPECT_EQ(t.SafeOffset(), 60u);
  t.AddMark(90, 0x40, now);
  EXPECT_FALSE(t.Advance(80));
  EXPECT_TRUE(t.Advance(90));
  EXPECT_EQ(t.flushed(), 0x40u);
}

TEST(AckTrackerTest, TruncateForgetsDurabilityPastTheCut) {
  AckTracker t;
  auto now = Clock::now();
  t.AddMark(100, 0x10, now);
  t.Advance(500);
  t.Truncate(100);            // bytes after 100 were dropped and written anew
  t.AddMark(400, 0x20, now);  // not durable yet, although 400 once was
  EXPECT_EQ(t.flushed(), 0x10u);
  EXPECT_TRUE(t.Advance(400));
  EXPECT_EQ(t.flushed(), 0x20u);
}

TEST(OutBufferTest, AppendsConsumesAndReusesStorage) {
  OutBuffer b(8);
  b.Append("hello", 5);
  b.Append('\n');
  b.Append("world!!", 7);
  EXPECT_EQ(std::string(b.data(), b.size()), "hello\nworld!!");
  b.Consume(6);
  EXPECT_EQ(std::string(b.data(), b.size()), "world!!");
  b.Append("x", 1);
  EXPECT_EQ(std::string(b.data(), b.size()), "world!!x");
  b.Consume(8);
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace pgslotd
