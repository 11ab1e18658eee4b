// The snapshot pass's pieces without a server: a snapshot's text and which
// stream transactions it sees (across xid epochs), the changed keys a chunk
// leaves out, and the SQL that reads chunks.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/changed_keys.h"
#include "snapshot/chunk_query.h"
#include "snapshot/pg_snapshot.h"

namespace pgslotd {
namespace {

constexpr uint64_t kEpoch = uint64_t{1} << 32;

PgSnapshot Snap(const std::string& text) {
  Result<PgSnapshot> s = PgSnapshot::Parse(text);
  EXPECT_TRUE(s.ok()) << text << ": " << s.status().message();
  return s.ok() ? s.value() : PgSnapshot();
}

TEST(PgSnapshotTest, ParsesTheServersText) {
  PgSnapshot s = Snap("740:752:745,741,750");
  EXPECT_EQ(s.xmin(), 740u);
  EXPECT_EQ(s.xmax(), 752u);
  EXPECT_EQ(s.in_progress(), (std::vector<uint64_t>{741, 745, 750}));

  PgSnapshot none = Snap("740:740:");
  EXPECT_EQ(none.xmin(), 740u);
  EXPECT_EQ(none.xmax(), 740u);
  EXPECT_TRUE(none.in_progress().empty());

  PgSnapshot big = Snap("18446744073709551610:18446744073709551615:18446744073709551614");
  EXPECT_EQ(big.xmax(), UINT64_MAX);
  EXPECT_EQ(big.in_progress(), (std::vector<uint64_t>{UINT64_MAX - 1}));
  // Duplicates are dropped.
  EXPECT_EQ(Snap("10:20:15,15").in_progress(), (std::vector<uint64_t>{15}));
}

TEST(PgSnapshotTest, RejectsGarbageAndImpossibleSnapshots) {
  for (const char* bad : {"",
                          "740",
                          "740:740",
                          ":740:",
                          "740::",
                          "a:740:",
                          "740:74x:",
                          "740:750:741,",
                          "740:750:,741",
                          "740:750:741,,742",
                          " 740:750:",
                          "740:750: 741",
                          "-1:750:",
                          "+740:750:",
                          "740:750:741:",
                          "18446744073709551616:18446744073709551617:",
                          "751:750:",        // xmin above xmax
                          "740:750:739",     // in progress below xmin
                          "740:750:750",     // in progress at xmax
                          "740:740:740"}) {  // nothing can be in progress in an empty range
    Result<PgSnapshot> s = PgSnapshot::Parse(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), Status::Code::kRetryable) << bad;
    EXPECT_NE(s.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << s.status().message();
  }
}

TEST(PgSnapshotTest, SeesWhatCommittedBeforeItAndNothingInProgressOrLater) {
  PgSnapshot s = Snap("100:110:104,107");
  EXPECT_TRUE(s.Sees(50));
  EXPECT_TRUE(s.Sees(99));
  EXPECT_TRUE(s.Sees(100));   // xmin itself, not in progress: committed
  EXPECT_FALSE(s.Sees(104));  // in progress when the snapshot was taken
  EXPECT_TRUE(s.Sees(105));
  EXPECT_FALSE(s.Sees(107));
  EXPECT_TRUE(s.Sees(109));
  EXPECT_FALSE(s.Sees(110));  // xmax: not yet assigned when it was taken
  EXPECT_FALSE(s.Sees(111));
  EXPECT_FALSE(s.Sees(5000));
  // The special ids (invalid, bootstrap, frozen) are always seen.
  for (uint32_t special : {0u, 1u, 2u}) EXPECT_TRUE(s.Sees(special)) << special;
  EXPECT_TRUE(s.SeesFull(99));
  EXPECT_FALSE(s.SeesFull(104));
  EXPECT_FALSE(s.SeesFull(110));
  EXPECT_FALSE(s.SeesFull(kEpoch + 100));  // the same low bits, an epoch later
}

// xmax is 5 ids into epoch 1; xmin and one open transaction are still in
// epoch 0, another open one is in epoch 1.
TEST(PgSnapshotTest, StreamXidsAreWidenedToTheEpochNearestXmax) {
  PgSnapshot s = Snap(std::to_string(kEpoch - 32) + ":" + std::to_string(kEpoch + 5) + ":" +
                      std::to_string(kEpoch - 16) + "," + std::to_string(kEpoch + 4));
  EXPECT_EQ(s.Widen(0xFFFFFFF0u), kEpoch - 16);  // the previous epoch
  EXPECT_FALSE(s.Sees(0xFFFFFFF0u));             // in progress
  EXPECT_TRUE(s.Sees(0xFFFFFFF1u));              // committed before
  EXPECT_TRUE(s.Sees(0xFFFFFF00u));              // below xmin
  EXPECT_EQ(s.Widen(3), kEpoch + 3);             // the first normal id of epoch 1
  EXPECT_TRUE(s.Sees(3));
  EXPECT_FALSE(s.Sees(4));  // in progress
  // The low half of xmax: the first transaction that started after the
  // snapshot, in xmax's epoch, not one 2^32 ids old. A chunk must leave out
  // the keys it changed.
  EXPECT_EQ(s.Widen(5), kEpoch + 5);
  EXPECT_FALSE(s.Sees(5));
  EXPECT_EQ(s.Widen(6), kEpoch + 6);
  EXPECT_FALSE(s.Sees(6));
}

TEST(PgSnapshotTest, HalfTheXidSpaceEitherSideOfXmax) {
  const uint64_t xmax = 3 * kEpoch + 10;
  PgSnapshot s = Snap(std::to_string(xmax - 1000) + ":" + std::to_string(xmax) + ":");
  // Up to 2^31 - 1 ids after xmax: later transactions.
  EXPECT_EQ(s.Widen(10u + 0x7FFFFFFFu), xmax + 0x7FFFFFFFu);
  EXPECT_FALSE(s.Sees(10u + 0x7FFFFFFFu));
  // 2^31 ids away and more: earlier ones (wraparound protection keeps a
  // live xid within 2^31 of the next one).
  EXPECT_EQ(s.Widen(10u + 0x80000000u), xmax - 0x80000000u);
  EXPECT_TRUE(s.Sees(10u + 0x80000000u));
  EXPECT_EQ(s.Widen(9), xmax - 1);
  EXPECT_TRUE(s.Sees(9));
  // In epoch 0 nothing comes before id 3: a high xid is a later one.
  PgSnapshot first = Snap("90:100:");
  EXPECT_EQ(first.Widen(0xFFFFFFF0u), 0xFFFFFFF0u);
  EXPECT_FALSE(first.Sees(0xFFFFFFF0u));
  EXPECT_EQ(first.Widen(50), 50u);
}

const char kK1[] = R"({"id":1})";
const char kK2[] = R"({"id":2})";
const char kK3[] = R"({"id":3})";
const char kK4[] = R"({"id":4})";

TEST(ChangedKeysTest, LeavesOutTheKeysOfTransactionsTheSnapshotDoesNotSee) {
  ChangedKeys keys;
  keys.Note(kK1, 105, false);  // committed before the snapshot
  keys.Note(kK2, 104, false);  // in progress at the snapshot
  keys.Note(kK3, 112, false);  // started after it
  keys.Note(kK4, 90, false);   // below xmin
  PgSnapshot s = Snap("100:110:104");
  EXPECT_FALSE(keys.Changed(kK1, s));
  EXPECT_TRUE(keys.Changed(kK2, s));
  EXPECT_TRUE(keys.Changed(kK3, s));
  EXPECT_FALSE(keys.Changed(kK4, s));
  EXPECT_FALSE(keys.Changed(R"({"id":5})", s));  // never changed
  EXPECT_FALSE(keys.TruncatedSince(s));
  EXPECT_EQ(keys.size(), 4u);
}

TEST(ChangedKeysTest, TheNewestChangeOfAKeyCounts) {
  PgSnapshot s = Snap("100:110:104");
  ChangedKeys keys;
  keys.Note(kK1, 104, true);   // unseen, lacking a TOASTed value
  keys.Note(kK1, 105, false);  // then a change the snapshot sees
  EXPECT_FALSE(keys.Changed(kK1, s));
  EXPECT_TRUE(keys.LackingToastUnseenBy(s).empty());
  keys.Note(kK2, 90, false);
  keys.Note(kK2, 112, true);
  EXPECT_TRUE(keys.Changed(kK2, s));
  EXPECT_EQ(keys.LackingToastUnseenBy(s), std::vector<std::string>{kK2});
  EXPECT_EQ(keys.size(), 2u);
}

TEST(ChangedKeysTest, ListsTheUnseenKeysThatLackedAToastedValueInOrder) {
  ChangedKeys keys;
  keys.Note(kK4, 112, true);   // unseen, lacking
  keys.Note(kK1, 104, true);   // unseen, lacking
  keys.Note(kK2, 105, true);   // seen: the chunk has the whole row
  keys.Note(kK3, 113, false);  // unseen, but its line was whole
  PgSnapshot s = Snap("100:110:104");
  EXPECT_EQ(keys.LackingToastUnseenBy(s), (std::vector<std::string>{kK1, kK4}));
  // A later snapshot that sees them all has none to read again.
  EXPECT_TRUE(keys.LackingToastUnseenBy(Snap("114:114:")).empty());
}

TEST(ChangedKeysTest, RaiseFloorForgetsWhatEveryLaterSnapshotSees) {
  ChangedKeys keys;
  keys.Note(kK1, 90, false);
  keys.Note(kK2, 104, false);
  keys.Note(kK3, 112, false);
  keys.RaiseFloor(Snap("100:110:104"));
  EXPECT_EQ(keys.size(), 2u);
  PgSnapshot later = Snap("106:115:");
  EXPECT_FALSE(keys.Changed(kK2, later));
  keys.RaiseFloor(later);
  EXPECT_EQ(keys.size(), 1u);
  // What is left still counts for a snapshot that does not see it.
  EXPECT_TRUE(keys.Changed(kK3, Snap("106:115:112")));
}

TEST(ChangedKeysTest, RaiseFloorAcrossAnEpoch) {
  ChangedKeys keys;
  keys.Note(kK1, 0xFFFFFFF0u, false);  // epoch 0
  keys.Note(kK2, 3, false);            // epoch 1, below xmin
  keys.Note(kK3, 20, false);           // epoch 1, above xmin
  PgSnapshot s = Snap(std::to_string(kEpoch + 10) + ":" + std::to_string(kEpoch + 30) + ":" +
                      std::to_string(kEpoch + 20));
  keys.RaiseFloor(s);
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.Changed(kK3, s));
}

TEST(ChangedKeysTest, AnUnseenTruncateLeavesOutEveryRow) {
  ChangedKeys keys;
  keys.Note(kK1, 90, false);
  keys.NoteTruncate(104);
  EXPECT_EQ(keys.size(), 0u);
  PgSnapshot s = Snap("100:110:104");
  EXPECT_TRUE(keys.TruncatedSince(s));
  EXPECT_TRUE(keys.Changed(kK1, s));
  EXPECT_TRUE(keys.Changed(R"({"id":99})", s));
  // Keys changed after the truncate are noted as before.
  keys.Note(kK2, 108, false);
  EXPECT_EQ(keys.size(), 1u);
  // A snapshot that sees the truncate leaves out only what it does not see.
  PgSnapshot after = Snap("105:112:108");
  EXPECT_FALSE(keys.TruncatedSince(after));
  EXPECT_FALSE(keys.Changed(kK1, after));
  EXPECT_TRUE(keys.Changed(kK2, after));
  // Below a floor that does not reach it, the truncate stays.
  keys.RaiseFloor(Snap("104:110:104"));
  EXPECT_TRUE(keys.TruncatedSince(s));
  keys.RaiseFloor(after);
  EXPECT_FALSE(keys.TruncatedSince(s));
  EXPECT_EQ(keys.size(), 1u);
}

TEST(ChangedKeysTest, ClearForgetsKeysAndTruncate) {
  ChangedKeys keys;
  keys.Note(kK1, 104, true);
  keys.NoteTruncate(105);
  keys.Note(kK2, 106, true);
  keys.Clear();
  PgSnapshot s = Snap("100:100:");
  EXPECT_EQ(keys.size(), 0u);
  EXPECT_FALSE(keys.TruncatedSince(s));
  EXPECT_FALSE(keys.Changed(kK2, s));
  EXPECT_TRUE(keys.LackingToastUnseenBy(s).empty());
}

ChunkQuery Orders() {
  ChunkQuery q;
  q.schema = "public";
  q.table = "orders";
  q.columns = {"region", "n", "payload"};
  q.key_columns = {"region", "n"};
  q.key_types = {"text", "numeric(20,5)"};
  q.limit = 7;
  return q;
}

TEST(ChunkQueryTest, CompositeKeyInKeyOrder) {
  ChunkQuery q = Orders();
  EXPECT_EQ(q.Sql(false),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(ORDER BY "region", "n" LIMIT 7)");
  EXPECT_EQ(q.Sql(true), R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
                         R"(WHERE ("region", "n") > ($1::text, $2::numeric(20,5)) )"
                         R"(ORDER BY "region", "n" LIMIT 7)");
}

TEST(ChunkQueryTest, OddNamesStayQuoted) {
  ChunkQuery q;
  q.schema = R"(Mixed "Case")";
  q.table = "my table";
  q.columns = {R"(Mixed "Case")", "select"};
  q.key_columns = {R"(Mixed "Case")"};
  q.key_types = {"timestamp with time zone"};
  q.limit = 10000;
  EXPECT_EQ(
      q.Sql(true),
      R"(SELECT "Mixed ""Case""", "select", "Mixed ""Case""" FROM "Mixed ""Case"""."my table" )"
      R"(WHERE ("Mixed ""Case""") > ($1::timestamp with time zone) )"
      R"(ORDER BY "Mixed ""Case""" LIMIT 10000)");
}

TEST(ChunkQueryTest, RowFiltersAreOred) {
  ChunkQuery q = Orders();
  q.row_filters = {"(n > 10)", "(region = 'it''s')"};
  EXPECT_EQ(q.Sql(false),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE (((n > 10)) OR ((region = 'it''s'))) ORDER BY "region", "n" LIMIT 7)");
  EXPECT_EQ(q.Sql(true),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE ("region", "n") > ($1::text, $2::numeric(20,5)) )"
            R"(AND (((n > 10)) OR ((region = 'it''s'))) ORDER BY "region", "n" LIMIT 7)");
  q.row_filters = {"n > 10"};
  EXPECT_EQ(q.Sql(false),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE ((n > 10)) ORDER BY "region", "n" LIMIT 7)");
}

TEST(ChunkQueryTest, WithoutAKeyTheWholeTable) {
  ChunkQuery q;
  q.schema = "public";
  q.table = "log";
  q.columns = {"at", "line"};
  EXPECT_EQ(q.Sql(false), R"(SELECT "at", "line" FROM "public"."log")");
  EXPECT_EQ(q.Sql(true), R"(SELECT "at", "line" FROM "public"."log")");
  EXPECT_EQ(q.SqlForKeys(3), R"(SELECT "at", "line" FROM "public"."log")");
  q.row_filters = {"line <> ''"};
  EXPECT_EQ(q.Sql(false), R"(SELECT "at", "line" FROM "public"."log" WHERE ((line <> '')))");
}

TEST(ChunkQueryTest, SqlForKeysReadsTheNamedKeys) {
  ChunkQuery q = Orders();
  EXPECT_EQ(q.SqlForKeys(2),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE ("region", "n") IN (($1::text, $2::numeric(20,5)), )"
            R"(($3::text, $4::numeric(20,5))) ORDER BY "region", "n")");
  q.row_filters = {"n > 10"};
  EXPECT_EQ(q.SqlForKeys(1),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE ("region", "n") IN (($1::text, $2::numeric(20,5))) AND ((n > 10)) )"
            R"(ORDER BY "region", "n")");
  // No keys: a query that returns no rows.
  q.row_filters.clear();
  EXPECT_EQ(q.SqlForKeys(0),
            R"(SELECT "region", "n", "payload", "region", "n" FROM "public"."orders" )"
            R"(WHERE false ORDER BY "region", "n")");
}

TEST(ChangedKeysTest, AChangeOfUnknownKeysReadsTheChunkAgainAndKeepsTheKnownKeys) {
  ChangedKeys keys;
  keys.Note("{\"id\":1}", 105, false);
  keys.NoteUnknown(106);
  // 105 unseen, 106 seen: row 1 is still left out, nothing is read again.
  PgSnapshot sees_106 = Snap("105:107:105");
  EXPECT_FALSE(keys.MustReadAgain(sees_106));
  EXPECT_TRUE(keys.Changed("{\"id\":1}", sees_106)) << "an unknown change does not clear keys";
  EXPECT_FALSE(keys.TruncatedSince(sees_106));
  // 106 unseen: read again.
  EXPECT_TRUE(keys.MustReadAgain(Snap("105:107:106")));
  EXPECT_FALSE(keys.Changed("{\"id\":2}", Snap("105:107:106")));
  // Below the floor it is forgotten.
  keys.RaiseFloor(Snap("107:107:"));
  EXPECT_FALSE(keys.MustReadAgain(Snap("100:107:106")));
  EXPECT_EQ(keys.size(), 0u);
}

}  // namespace
}  // namespace pgslotd
