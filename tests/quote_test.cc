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

// Hostile names and values stay inside their quotes: after removing every
// doubled quote, exactly the opening and closing quotes remain.
TEST(QuoteTest, HostileValuesCannotBreakOut) {
  const std::string hostile[] = {"1'); DROP TABLE t; --", "'",   "''",   "\"", "a\" 'b",
                                 "x') , (\"y\" 'z",       "\\'", "\n'\n"};
  for (const std::string& v : hostile) {
    std::string lit = QuoteLiteral(v);
    ASSERT_EQ(lit.front(), '\'');
    ASSERT_EQ(lit.back(), '\'');
    std::string inner = lit.substr(1, lit.size() - 2);
    for (size_t i = 0; i < inner.size(); ++i) {
      if (inner[i] == '\'') {
        ASSERT_LT(i + 1, inner.size()) << v;
        ASSERT_EQ(inner[i + 1], '\'') << "lone quote in " << lit;
        ++i;
      }
    }
    std::string id = QuoteIdent(v);
    std::string inner_id = id.substr(1, id.size() - 2);
    for (size_t i = 0; i < inner_id.size(); ++i) {
      if (inner_id[i] == '"') {
        ASSERT_LT(i + 1, inner_id.size()) << v;
        ASSERT_EQ(inner_id[i + 1], '"') << "lone quote in " << id;
        ++i;
      }
    }
  }
}

}  // namespace
}  // namespace pgslotd
