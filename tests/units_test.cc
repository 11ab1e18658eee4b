#include "config/units.h"

#include <gtest/gtest.h>

#include <limits>

namespace pgslotd {
namespace {

using std::chrono::milliseconds;

TEST(ParseDurationTest, EveryUnit) {
  EXPECT_EQ(ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(ParseDuration("10s"), milliseconds(10000));
  EXPECT_EQ(ParseDuration("5m"), milliseconds(300000));
  EXPECT_EQ(ParseDuration("1h"), milliseconds(3600000));
  EXPECT_EQ(ParseDuration("2d"), milliseconds(2 * 86400000LL));
}

TEST(ParseDurationTest, Zero) {
  EXPECT_EQ(ParseDuration("0"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0ms"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0s"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0d"), milliseconds(0));
}

TEST(ParseDurationTest, LeadingZerosAreDigits) {
  EXPECT_EQ(ParseDuration("010s"), milliseconds(10000));
}

TEST(ParseDurationTest, LargestValues) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(ParseDuration(std::to_string(kMax) + "ms"), milliseconds(kMax));
  EXPECT_EQ(ParseDuration(std::to_string(kMax / 1000) + "s"), milliseconds(kMax / 1000 * 1000));
  EXPECT_EQ(ParseDuration(std::to_string(kMax / 1000 + 1) + "s"), std::nullopt);
  EXPECT_EQ(ParseDuration(std::to_string(kMax / 86400000) + "d"),
            milliseconds(kMax / 86400000 * 86400000));
  EXPECT_EQ(ParseDuration(std::to_string(kMax / 86400000 + 1) + "d"), std::nullopt);
  // One more than int64_t can hold, in milliseconds.
  EXPECT_EQ(ParseDuration("9223372036854775808ms"), std::nullopt);
}

TEST(ParseDurationTest, Rejections) {
  for (const char* text : {"",
                           "10",
                           "1",
                           "-1s",
                           "+1s",
                           "1.5s",
                           " 1s",
                           "1s ",
                           "1 s",
                           "10x",
                           "s",
                           "ms",
                           "1S",
                           "1MS",
                           "1sec",
                           "1min",
                           "1ss",
                           "1s1",
                           "0x10s",
                           "1e3ms",
                           "99999999999999999999s",
                           "99999999999999999999ms",
                           "18446744073709551616ms",
                           "00",
                           "-0",
                           "0 "}) {
    EXPECT_EQ(ParseDuration(text), std::nullopt) << '"' << text << '"';
  }
  EXPECT_EQ(ParseDuration(std::string_view("1s\0", 3)), std::nullopt);
}

TEST(ParseSizeTest, EveryUnit) {
  EXPECT_EQ(ParseSize("7B"), 7u);
  EXPECT_EQ(ParseSize("3kB"), 3000u);
  EXPECT_EQ(ParseSize("3KB"), 3000u);
  EXPECT_EQ(ParseSize("2MB"), 2000000u);
  EXPECT_EQ(ParseSize("2GB"), 2000000000u);
  EXPECT_EQ(ParseSize("2TB"), 2000000000000u);
  EXPECT_EQ(ParseSize("64KiB"), 65536u);
  EXPECT_EQ(ParseSize("8MiB"), 8u << 20);
  EXPECT_EQ(ParseSize("3GiB"), 3ull << 30);
  EXPECT_EQ(ParseSize("5TiB"), 5ull << 40);
  EXPECT_EQ(ParseSize("0B"), 0u);
  EXPECT_EQ(ParseSize("0MiB"), 0u);
}

TEST(ParseSizeTest, LargestValues) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(ParseSize("18446744073709551615B"), kMax);
  EXPECT_EQ(ParseSize("18446744073709551616B"), std::nullopt);
  EXPECT_EQ(ParseSize("16777215TiB"), 16777215ull << 40);
  EXPECT_EQ(ParseSize("16777216TiB"), std::nullopt);  // exactly 2^64
  EXPECT_EQ(ParseSize(std::to_string(kMax / 1000000000000) + "TB"),
            kMax / 1000000000000 * 1000000000000);
  EXPECT_EQ(ParseSize(std::to_string(kMax / 1000000000000 + 1) + "TB"), std::nullopt);
}

TEST(ParseSizeTest, Rejections) {
  for (const char* text : {"",
                           "0",
                           "10",
                           "-1MB",
                           "+1MB",
                           "1.5MB",
                           " 1MB",
                           "1MB ",
                           "1 MB",
                           "10x",
                           "MB",
                           "1b",
                           "1kb",
                           "1Kb",
                           "1mb",
                           "1kiB",
                           "1KIB",
                           "1Ki",
                           "1M",
                           "1G",
                           "1PB",
                           "1PiB",
                           "1MiBs",
                           "99999999999999999999B",
                           "99999999999999999999TiB"}) {
    EXPECT_EQ(ParseSize(text), std::nullopt) << '"' << text << '"';
  }
}

TEST(FormatDurationTest, LargestExactUnit) {
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0");
  EXPECT_EQ(FormatDuration(milliseconds(1)), "1ms");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(milliseconds(10000)), "10s");
  EXPECT_EQ(FormatDuration(milliseconds(90000)), "90s");
  EXPECT_EQ(FormatDuration(milliseconds(300000)), "5m");
  EXPECT_EQ(FormatDuration(milliseconds(7200000)), "2h");
  EXPECT_EQ(FormatDuration(milliseconds(86400000)), "1d");
  EXPECT_EQ(FormatDuration(milliseconds(90000000)), "25h");
  EXPECT_EQ(FormatDuration(milliseconds(-5000)), "-5s");
}

TEST(FormatDurationTest, RoundTrips) {
  for (int64_t ms :
       {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{61000}, int64_t{3600000},
        int64_t{86400000} * 3, int64_t{123456789}, std::numeric_limits<int64_t>::max()}) {
    std::string text = FormatDuration(milliseconds(ms));
    EXPECT_EQ(ParseDuration(text), milliseconds(ms)) << text;
  }
}

}  // namespace
}  // namespace pgslotd
