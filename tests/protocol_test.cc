#include "pg/protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace pgslotd {
namespace {

std::string U64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
  return s;
}

TEST(ProtocolTest, ParsesXLogData) {
  std::string msg = "w" + U64(0x1000) + U64(0x2000) + U64(42) + "BEGIN 7";
  ServerMessage m;
  ASSERT_TRUE(ParseServerMessage(msg.data(), msg.size(), &m).ok());
  EXPECT_EQ(m.kind, ServerMessage::Kind::kXLogData);
  EXPECT_EQ(m.data_start, 0x1000u);
  EXPECT_EQ(m.wal_end, 0x2000u);
  EXPECT_EQ(m.send_time, 42);
  EXPECT_EQ(m.payload, "BEGIN 7");
}

TEST(ProtocolTest, ParsesEmptyPayloadAndKeepalive) {
  std::string w = "w" + U64(1) + U64(2) + U64(3);
  ServerMessage m;
  ASSERT_TRUE(ParseServerMessage(w.data(), w.size(), &m).ok());
  EXPECT_EQ(m.payload.size(), 0u);

  std::string k = "k" + U64(0xABCDEF) + U64(9) + std::string(1, '\1');
  ASSERT_TRUE(ParseServerMessage(k.data(), k.size(), &m).ok());
  EXPECT_EQ(m.kind, ServerMessage::Kind::kKeepalive);
  EXPECT_EQ(m.wal_end, 0xABCDEFu);
  EXPECT_TRUE(m.reply_requested);
  k.back() = '\0';
  ASSERT_TRUE(ParseServerMessage(k.data(), k.size(), &m).ok());
  EXPECT_FALSE(m.reply_requested);
}

TEST(ProtocolTest, ShortAndUnknownMessagesAreErrors) {
  ServerMessage m;
  std::string w = "w" + U64(1) + U64(2) + U64(3);
  for (size_t len = 0; len < w.size(); ++len) {
    Status s = ParseServerMessage(w.data(), len, &m);
    EXPECT_FALSE(s.ok()) << len;
  }
  EXPECT_NE(ParseServerMessage(w.data(), 10, &m).message().find("shorter than its 25-byte header"),
            std::string::npos);
  std::string k = "k" + U64(1) + U64(2) + std::string(1, '\0');
  for (size_t len = 1; len < k.size(); ++len) {
    EXPECT_FALSE(ParseServerMessage(k.data(), len, &m).ok()) << len;
  }
  std::string x = "x123";
  Status s = ParseServerMessage(x.data(), x.size(), &m);
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_NE(s.message().find("unknown CopyData message type 0x78"), std::string::npos);
}

TEST(ProtocolTest, BuildsStatusUpdate) {
  char out[kStatusUpdateSize];
  BuildStatusUpdate(0x0102030405060708ull, 0x1112131415161718ull, 0x2122232425262728ull, 0x33, true,
                    out);
  std::string s(out, sizeof out);
  EXPECT_EQ(s, "r" + U64(0x0102030405060708ull) + U64(0x1112131415161718ull) +
                   U64(0x2122232425262728ull) + U64(0x33) + std::string(1, '\1'));
}

TEST(ProtocolTest, TimestampsCountFrom2000) {
  // 2026 is about 26.9 years after 2000-01-01.
  double years = static_cast<double>(NowPgTimestamp()) / 1e6 / 86400 / 365.25;
  EXPECT_GT(years, 20);
  EXPECT_LT(years, 100);
}

}  // namespace
}  // namespace pgslotd
