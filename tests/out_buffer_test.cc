#include "util/out_buffer.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

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
