#include "pg/lsn.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

TEST(LsnTest, ParsesAndFormatsLikePostgres) {
  EXPECT_EQ(ParseLsn("0/16B3748"), 0x16B3748u);
  EXPECT_EQ(ParseLsn("16/b374d848"), (0x16ull << 32) | 0xB374D848u);
  EXPECT_EQ(ParseLsn("FFFFFFFF/FFFFFFFF"), ~0ull);
  EXPECT_EQ(FormatLsn(0x16B3748), "0/16B3748");
  EXPECT_EQ(FormatLsn((0x16ull << 32) | 0xB374D848u), "16/B374D848");
  EXPECT_EQ(FormatLsn(0), "0/0");
  for (const char* text : {"0/0", "1/0", "A/BCDEF012", "FFFFFFFF/FFFFFFFF"}) {
    EXPECT_EQ(FormatLsn(*ParseLsn(text)), text);
  }
}

TEST(LsnTest, RejectsMalformedText) {
  for (const char* bad : {"", "/", "0/", "/0", "0", "0x1/0", "1/2/3", " 0/1", "0/1 ", "G/0",
                          "123456789/0", "0/123456789", "-1/0", "0:1"}) {
    EXPECT_FALSE(ParseLsn(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace pgslotd
