// The snapshot progress a file's state record carries: its text form, with
// names and keys that need escaping, and what is refused.
#include "snapshot/snapshot_progress.h"

#include <gtest/gtest.h>

#include <string>

namespace pgslotd {
namespace {

SnapshotProgress Awkward() {
  SnapshotProgress p;
  p.queue = {{"my schema", "a\\b"}, {}, {"public", "t\tab\nle"}};
  p.started = true;
  p.rows = 1200;
  p.after_key = {"", "two words", "\\e"};
  p.ranges_done = true;
  p.read_again = {{"1", ""}, {" ", "x"}};
  p.tables_done = 4;
  p.rows_total = 98765;
  return p;
}

TEST(SnapshotProgressTest, EveryFieldComesBackAsItWasInOneLine) {
  const std::string text = SerializeSnapshotProgress(Awkward());
  EXPECT_EQ(text,
            "queue 3 t my\\sschema a\\\\b all t public t\\tab\\nle started 1 rows 1200 after 3 \\e "
            "two\\swords \\\\e ranges 1 again 2 2 1 \\e 2 \\s x done 4 total 98765");
  SnapshotProgress back;
  std::string err;
  ASSERT_TRUE(ParseSnapshotProgress(text, &back, &err)) << err;
  EXPECT_EQ(back, Awkward());
}

TEST(SnapshotProgressTest, AQueueNotStartedHasNoKeys) {
  SnapshotProgress p;
  p.queue = {{}};
  const std::string text = SerializeSnapshotProgress(p);
  EXPECT_EQ(text, "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0");
  SnapshotProgress back;
  std::string err;
  ASSERT_TRUE(ParseSnapshotProgress(text, &back, &err)) << err;
  EXPECT_EQ(back, p);
  EXPECT_FALSE(back.empty());
  EXPECT_TRUE(SnapshotProgress().empty());
}

TEST(SnapshotProgressTest, WhatIsNotOneIsRefused) {
  const std::string good = SerializeSnapshotProgress(Awkward());
  for (const std::string& bad : {
           std::string(""),
           good + " more",                       // trailing tokens
           good.substr(0, good.find(" total")),  // a field missing
           std::string("queue 1 t public started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 x a b started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 2 rows 0 after 0 ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 0 ranges 2 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 0 again 0 done 0 total 0"),
           std::string(
               "queue 1 all started 1 rows 0 after 0 ranges 0 again 0 done 0 total 0"),  // "all"
                                                                                         // started
           std::string("queue 0 started 1 rows 0 after 0 ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows -1 after 0 ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 2 a ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 1 a\\q ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 1 a\\ ranges 0 again 0 done 0 total 0"),
           std::string("queue 1 all started 0 rows 0 after 1  ranges 0 again 0 done 0 total 0"),
           std::string(
               "queue 1 all started 0 rows 0 after 0 ranges 0 again 99999999999 done 0 total 0"),
           std::string("queue 1 all  started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0"),
       }) {
    SnapshotProgress p;
    std::string err;
    EXPECT_FALSE(ParseSnapshotProgress(bad, &p, &err)) << bad;
    EXPECT_EQ(err, "the snapshot's progress is malformed") << bad;
  }
}

TEST(SnapshotProgressTest, TheRequestFilesItHoldsComeLastAndOnlyWhenThereAreAny) {
  SnapshotProgress p;
  p.queue = {{"public", "orders"}};
  p.requests = {"00000001764999000000000000-12", "a b"};
  const std::string text = SerializeSnapshotProgress(p);
  EXPECT_EQ(text,
            "queue 1 t public orders started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 "
            "requests 2 00000001764999000000000000-12 a\\sb");
  SnapshotProgress back;
  std::string err;
  ASSERT_TRUE(ParseSnapshotProgress(text, &back, &err)) << err;
  EXPECT_EQ(back, p);
  // A record of the version before has none.
  ASSERT_TRUE(ParseSnapshotProgress(
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0", &back, &err));
  EXPECT_TRUE(back.requests.empty());
  EXPECT_FALSE(ParseSnapshotProgress(
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 requests", &back,
      &err));
  EXPECT_FALSE(ParseSnapshotProgress(
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 requests 2 x", &back,
      &err));
  EXPECT_FALSE(ParseSnapshotProgress(
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 extra 0", &back, &err));
}

}  // namespace
}  // namespace pgslotd
