// CRC-32C against the published check values.
#include "util/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace pgslotd {
namespace {

TEST(Crc32cTest, MatchesTheCheckValues) {
  // The "check" value of the CRC catalogue, and RFC 3720 (iSCSI), B.4.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0x00000000u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, EveryFlippedBitChangesIt) {
  std::string text = "size 10485760\nlsn 16/B374D848\n";
  uint32_t good = Crc32c(text);
  for (size_t i = 0; i < text.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = text;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_NE(Crc32c(flipped), good) << "byte " << i << " bit " << bit;
    }
  }
}

}  // namespace
}  // namespace pgslotd
