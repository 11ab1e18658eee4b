#include "slot/server_position.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

TEST(ServerPositionTest, KeepalivesAdvanceOnlyAsFarAsTheServerProved) {
  ServerPosition p;
  p.Reset(0x3000000);
  EXPECT_EQ(p.Cap(0x2000000), 0x2000000u);  // behind the reading: as it is
  EXPECT_EQ(p.Cap(0x3000100), 0x3000000u);  // a little ahead: the reading
  p.Note(0x3000200);
  EXPECT_EQ(p.Cap(0x3000100), 0x3000100u);
  p.Note(0x1000000);  // an older reading never moves it back
  EXPECT_EQ(p.proven(), 0x3000200u);
  EXPECT_EQ(p.Cap(0xFFFFFFFF00000000ull), 0x3000200u);
}

TEST(ServerPositionTest, OnlyPositionsFarBeyondTheReadingNeedANewOne) {
  ServerPosition p;
  p.Reset(5 * kGiB);
  EXPECT_FALSE(p.NeedsReading(kInvalidLsn));
  EXPECT_FALSE(p.NeedsReading(4 * kGiB));
  EXPECT_FALSE(p.NeedsReading(6 * kGiB));  // exactly the margin
  EXPECT_TRUE(p.NeedsReading(6 * kGiB + 1));
  EXPECT_TRUE(p.NeedsReading(0xFFFFFFFF00000000ull));
  p.Note(6 * kGiB);
  EXPECT_FALSE(p.NeedsReading(6 * kGiB + 1));
  // A new session starts from its own IDENTIFY_SYSTEM.
  p.Reset(kGiB);
  EXPECT_TRUE(p.NeedsReading(6 * kGiB));
}

}  // namespace
}  // namespace pgslotd
