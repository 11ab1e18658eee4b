#include "pg/quote.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

TEST(QuoteTest, IdentifiersAndLiterals) {
  EXPECT_EQ(QuoteIdent("include-xids"), "\"include-xids\"");
  EXPECT_EQ(QuoteIdent("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(QuoteLiteral("1"), "'1'");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(QuoteLiteral("back\\slash"), "'back\\slash'");
  EXPECT_EQ(QuoteLiteral(""), "''");
}

TEST(QuoteTest, StartReplicationCommand) {
  EXPECT_EQ(BuildStartReplication("orders", 0x16B3748, {}),
            "START_REPLICATION SLOT \"orders\" LOGICAL 0/16B3748");
  EXPECT_EQ(BuildStartReplication("orders", 0, {{"include-xids", "1"}, {"skip-empty-xacts", "0"}}),
            "START_REPLICATION SLOT \"orders\" LOGICAL 0/0 (\"include-xids\" '1', "
            "\"skip-empty-xacts\" '0')");
  EXPECT_EQ(BuildCreateSlot("orders", "test_decoding"),
            "CREATE_REPLICATION_SLOT \"orders\" LOGICAL \"test_decoding\"");
}

// Whether `quoted` is `q` + text + `q` where every `q` inside is doubled:
// then the parser reads it as one token, whatever the text.
bool StaysQuoted(const std::string& quoted, char q) {
  if (quoted.size() < 2 || quoted.front() != q || quoted.back() != q) return false;
  std::string inner = quoted.substr(1, quoted.size() - 2);
  for (size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] != q) continue;
    if (i + 1 >= inner.size() || inner[i + 1] != q) return false;
    ++i;
  }
  return true;
}

// Hostile names and values stay inside their quotes.
TEST(QuoteTest, HostileValuesCannotBreakOut) {
  const std::string hostile[] = {"1'); DROP TABLE t; --", "'",   "''",   "\"", "a\" 'b",
                                 "x') , (\"y\" 'z",       "\\'", "\n'\n"};
  for (const std::string& v : hostile) {
    EXPECT_TRUE(StaysQuoted(QuoteLiteral(v), '\'')) << QuoteLiteral(v);
    EXPECT_TRUE(StaysQuoted(QuoteIdent(v), '"')) << QuoteIdent(v);
  }
  EXPECT_FALSE(StaysQuoted("'a'b'", '\'')) << "the checker itself must be able to fail";
}

}  // namespace
}  // namespace pgslotd
