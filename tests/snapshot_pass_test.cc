// The worker's side of a snapshot pass, driven by hand: chunks as the reader
// would answer them (libpq results built in memory), the stream's changes,
// commits and watermarks as the formatter would tell them, and the exact
// read lines written.
#include "snapshot/snapshot_pass.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <string>
#include <vector>

#include "decode/pgoutput_formatter.h"
#include "decode/record_buffer.h"

namespace pgslotd {
namespace {

// public.items (id int4 key, note text).
TableDescription Items() {
  TableDescription t;
  t.schema = "public";
  t.table = "items";
  t.columns = {{"id", 23}, {"note", 25}};
  t.key_columns = {"id"};
  t.key_types = {"integer"};
  return t;
}

// A chunk as the reader answers it: rows (id, note, then the key's id).
Chunk MakeChunk(const std::string& snapshot, const std::vector<std::pair<int, std::string>>& rows,
                const std::string& watermark) {
  Chunk chunk;
  Result<PgSnapshot> s = PgSnapshot::Parse(snapshot);
  EXPECT_TRUE(s.ok()) << s.status().message();
  chunk.snapshot = s.value();
  chunk.watermark = watermark;
  PGresult* res = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  PGresAttDesc attrs[3] = {};
  char id[] = "id", note[] = "note", key[] = "id";
  attrs[0].name = id;
  attrs[1].name = note;
  attrs[2].name = key;
  EXPECT_TRUE(PQsetResultAttrs(res, 3, attrs));
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string n = std::to_string(rows[r].first);
    std::string note = rows[r].second;
    EXPECT_TRUE(PQsetvalue(res, static_cast<int>(r), 0, n.data(), static_cast<int>(n.size())));
    EXPECT_TRUE(
        PQsetvalue(res, static_cast<int>(r), 1, note.data(), static_cast<int>(note.size())));
    EXPECT_TRUE(PQsetvalue(res, static_cast<int>(r), 2, n.data(), static_cast<int>(n.size())));
  }
  chunk.rows.reset(res);
  if (!rows.empty()) chunk.last_key = {std::to_string(rows.back().first)};
  return chunk;
}

std::string ReadLine(int id, const std::string& note, const std::string& lsn) {
  return "{\"op\":\"read\",\"lsn\":\"" + lsn +
         "\",\"schema\":\"public\",\"table\":\"items\",\"new\":{\"id\":" + std::to_string(id) +
         ",\"note\":\"" + note + "\"}}\n";
}

class SnapshotPassTest : public ::testing::Test {
 protected:
  SnapshotPassTest() : formatter_(JsonOptions()), pass_("s1", 3) {}

  ChunkRequest Next() {
    Result<ChunkRequest> r = pass_.NextRequest();
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : ChunkRequest();
  }
  std::string Take() {
    std::string s(out_.data(), out_.size());
    out_.Clear();
    return s;
  }

  PgoutputFormatter formatter_;
  SnapshotPass pass_;
  RecordBuffer out_{256};
};

TEST_F(SnapshotPassTest, AChunkIsWrittenAtItsWatermarkWithoutTheKeysItsSnapshotDidNotSeeChange) {
  pass_.StartTable(Items(), {}, &formatter_);
  const ChangeObserver::Watch* watch = pass_.WatchOf("public", "items");
  ASSERT_NE(watch, nullptr);
  EXPECT_EQ(watch->key_columns, std::vector<std::string>{"id"});
  EXPECT_EQ(pass_.WatchOf("public", "other"), nullptr);

  ChunkRequest first = Next();
  EXPECT_TRUE(first.after_key.empty());
  EXPECT_TRUE(first.keys.empty());
  ASSERT_EQ(first.watermark.size(), std::string("s1 ").size() + 32);
  EXPECT_EQ(first.watermark.substr(0, 3), "s1 ");
  pass_.Failed();
  ChunkRequest request = Next();
  EXPECT_NE(request.watermark, first.watermark) << "every request has a watermark of its own";

  // Before the watermark: transaction 102 (running when the chunk's
  // snapshot was taken) changed row 2; 101 (which it saw) changed row 3.
  pass_.OnChange(watch->id, "{\"id\":2}", 102, false);
  pass_.OnChange(watch->id, "{\"id\":3}", 101, false);
  pass_.Answered(MakeChunk("100:105:102", {{1, "a"}, {2, "stale"}, {3, "b"}}, request.watermark));
  EXPECT_FALSE(pass_.ChunkDue()) << "answered, but its watermark has not come";
  pass_.OnWatermark(first.watermark, 0x5000000);  // an older request's: ignored
  pass_.OnWatermark("s1 forged", 0x5000000);
  EXPECT_FALSE(pass_.ChunkDue());
  pass_.OnWatermark(request.watermark, 0x5000010);
  ASSERT_TRUE(pass_.ChunkDue());
  EXPECT_EQ(pass_.WriteDue(&out_), 2u);
  EXPECT_EQ(Take(), ReadLine(1, "a", "0/5000010") + ReadLine(3, "b", "0/5000010"));
  EXPECT_EQ(pass_.last_key(), std::vector<std::string>{"3"});
  EXPECT_FALSE(pass_.TableDone());

  // The next chunk continues after row 3; its watermark comes first.
  request = Next();
  EXPECT_EQ(request.after_key, std::vector<std::string>{"3"});
  pass_.OnWatermark(request.watermark, 0x5000020);
  EXPECT_FALSE(pass_.ChunkDue());
  pass_.Answered(MakeChunk("106:106:", {{4, "c"}}, request.watermark));
  ASSERT_TRUE(pass_.ChunkDue());
  EXPECT_EQ(pass_.WriteDue(&out_), 1u);
  EXPECT_EQ(Take(), ReadLine(4, "c", "0/5000020"));
  EXPECT_TRUE(pass_.TableDone()) << "a chunk shorter than the chunk size ends the ranges";
  pass_.EndTable();
  EXPECT_EQ(pass_.WatchOf("public", "items"), nullptr);
}

TEST_F(SnapshotPassTest, AKeyChangedAgainBySomethingTheSnapshotSawIsWritten) {
  pass_.StartTable(Items(), {}, &formatter_);
  uint32_t id = pass_.WatchOf("public", "items")->id;
  ChunkRequest request = Next();
  pass_.OnChange(id, "{\"id\":1}", 99, false);  // below xmin: seen
  pass_.OnChange(id, "{\"id\":2}", 103, false);
  pass_.OnChange(id, "{\"id\":2}", 101, false);  // the newest change of row 2, seen
  pass_.OnWatermark(request.watermark, 0x10);
  pass_.Answered(MakeChunk("100:104:103", {{1, "a"}, {2, "b"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 2u);
  EXPECT_EQ(Take(), ReadLine(1, "a", "0/10") + ReadLine(2, "b", "0/10"));
}

TEST_F(SnapshotPassTest, ATruncateTheSnapshotDidNotSeeMakesTheChunkReadAgain) {
  pass_.StartTable(Items(), {"7"}, &formatter_);
  uint32_t id = pass_.WatchOf("public", "items")->id;
  ChunkRequest request = Next();
  EXPECT_EQ(request.after_key, std::vector<std::string>{"7"}) << "resumed after the recorded key";
  pass_.OnTruncate(id, 120);
  pass_.OnWatermark(request.watermark, 0x10);
  pass_.Answered(MakeChunk("110:121:120", {{8, "gone"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 0u);
  EXPECT_EQ(Take(), "");
  EXPECT_FALSE(pass_.TableDone());
  ChunkRequest again = Next();
  EXPECT_EQ(again.after_key, std::vector<std::string>{"7"});
  EXPECT_NE(again.watermark, request.watermark);
  pass_.OnWatermark(again.watermark, 0x20);
  pass_.Answered(MakeChunk("121:122:", {}, again.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 0u);
  EXPECT_TRUE(pass_.TableDone());
  EXPECT_EQ(pass_.last_key(), std::vector<std::string>{"7"});
}

TEST_F(SnapshotPassTest, AChangeOfAKeyTheStreamDidNotTellMakesTheChunkReadAgain) {
  pass_.StartTable(Items(), {}, &formatter_);
  uint32_t id = pass_.WatchOf("public", "items")->id;
  ChunkRequest request = Next();
  pass_.OnChange(id, "", 120, false);
  pass_.OnWatermark(request.watermark, 0x10);
  pass_.Answered(MakeChunk("110:121:120", {{1, "a"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 0u);
  EXPECT_TRUE(Next().after_key.empty());
}

// snapshot_keyless: read_whole: a table without a key is read whole; a
// read that a change unseen by its snapshot makes stale is read again, and
// the third in a row is written as read (said once).
TEST_F(SnapshotPassTest, ATableWithoutAKeyChangedWhileEachReadRanIsWrittenAsReadTheThirdTime) {
  TableDescription log = Items();
  log.key_columns.clear();
  log.key_types.clear();
  pass_.StartTable(log, {}, &formatter_);
  uint32_t id = pass_.WatchOf("public", "items")->id;
  for (uint32_t read = 1; read <= 3; ++read) {
    SCOPED_TRACE(read);
    ChunkRequest request = Next();
    EXPECT_TRUE(request.after_key.empty());
    EXPECT_TRUE(request.keys.empty());
    const uint32_t xid = 120 + read;
    pass_.OnChange(id, "", xid, false);  // no key: the stream cannot tell which row
    pass_.OnWatermark(request.watermark, 0x10 * read);
    pass_.Answered(MakeChunk("110:" + std::to_string(xid + 1) + ":" + std::to_string(xid),
                             {{1, "a"}, {2, "b"}}, request.watermark));
    uint64_t written = pass_.WriteDue(&out_);
    EXPECT_EQ(written, read < 3 ? 0u : 2u);
    EXPECT_EQ(pass_.TakeWrittenDespiteChanges(), read == 3);
    EXPECT_FALSE(pass_.TakeWrittenDespiteChanges());
  }
  EXPECT_EQ(Take(), ReadLine(1, "a", "0/30") + ReadLine(2, "b", "0/30"));
  EXPECT_TRUE(pass_.TableDone());
}

TEST_F(SnapshotPassTest, AKeyLeftOutWhoseChangeLackedAToastedValueIsReadAgainByKey) {
  pass_.StartTable(Items(), {}, &formatter_);
  uint32_t id = pass_.WatchOf("public", "items")->id;
  ChunkRequest request = Next();
  pass_.OnChange(id, "{\"id\":2}", 120, true);
  pass_.OnWatermark(request.watermark, 0x10);
  pass_.Answered(MakeChunk("110:121:120", {{1, "a"}, {2, "b"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 1u);
  EXPECT_EQ(Take(), ReadLine(1, "a", "0/10"));
  EXPECT_FALSE(pass_.TableDone()) << "row 2's value is still owed";
  request = Next();
  EXPECT_EQ(request.keys, (std::vector<std::vector<std::string>>{{"2"}}));
  pass_.OnWatermark(request.watermark, 0x20);
  pass_.Answered(MakeChunk("121:121:", {{2, "b2"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 1u);
  EXPECT_EQ(Take(), ReadLine(2, "b2", "0/20"));
  EXPECT_TRUE(pass_.TableDone());
  EXPECT_EQ(pass_.last_key(), std::vector<std::string>{"2"}) << "by key reads are not progress";
}

TEST_F(SnapshotPassTest, AFailedReadIsAskedForAgainAndItsLateWatermarkIgnored) {
  pass_.StartTable(Items(), {}, &formatter_);
  ChunkRequest request = Next();
  pass_.Failed();
  EXPECT_FALSE(pass_.outstanding());
  EXPECT_FALSE(pass_.TableDone());
  ChunkRequest again = Next();
  EXPECT_TRUE(again.after_key.empty());
  pass_.OnWatermark(request.watermark, 0x10);
  pass_.Answered(MakeChunk("1:1:", {{1, "a"}}, again.watermark));
  EXPECT_FALSE(pass_.ChunkDue());
  pass_.OnWatermark(again.watermark, 0x20);
  EXPECT_TRUE(pass_.ChunkDue());
}

TEST_F(SnapshotPassTest, TheRecentlyCommittedAreTheLastOnesNewestLast) {
  for (uint32_t x = 1; x <= 5000; ++x) pass_.OnCommit(x);
  std::vector<uint32_t> recent = pass_.RecentlyCommitted();
  ASSERT_EQ(recent.size(), 4096u);
  EXPECT_EQ(recent.front(), 5000u - 4095u);
  EXPECT_EQ(recent.back(), 5000u);
}

TEST(KeyTextValuesTest, TheObserversKeysGiveBackTheTextOfEachValue) {
  std::vector<std::string> v;
  ASSERT_TRUE(
      KeyTextValues("{\"a\":1,\"b\":\"x\\\"y\\\\z\\n\\u0001\",\"c\":true,\"d\":-2.5e3}", &v));
  EXPECT_EQ(v, (std::vector<std::string>{"1", "x\"y\\z\n\x01", "t", "-2.5e3"}));
  ASSERT_TRUE(KeyTextValues("{\"k\":\"h\xC3\xA9\"}", &v));
  EXPECT_EQ(v, std::vector<std::string>{"h\xC3\xA9"});
  EXPECT_FALSE(KeyTextValues("", &v));
  EXPECT_FALSE(KeyTextValues("{}", &v));
  EXPECT_FALSE(KeyTextValues("{\"a\":null}", &v));
  EXPECT_FALSE(KeyTextValues("{\"a\":\"x}", &v));
  EXPECT_FALSE(KeyTextValues("[1]", &v));
}

TEST_F(SnapshotPassTest, AStreamedTransactionOpenWhenThePassBeganCountsAsUnknownKeys) {
  // Stream Start of xid 130 (its first block): open when the pass begins.
  std::string start = {'S', 0, 0, 0, static_cast<char>(130), 1};
  std::string stop = {'E'};
  ASSERT_TRUE(formatter_.Format(start, 0x10, &out_).ok());
  ASSERT_TRUE(formatter_.Format(stop, 0x11, &out_).ok());
  pass_.StartTable(Items(), {}, &formatter_);
  ChunkRequest request = Next();
  pass_.OnCommit(130);  // its Stream Commit: the keys of its first block are not known
  pass_.OnWatermark(request.watermark, 0x20);
  pass_.Answered(MakeChunk("120:131:130", {{1, "a"}}, request.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 0u) << "a chunk that does not see it is read again";
  ChunkRequest again = Next();
  EXPECT_TRUE(again.after_key.empty());
  pass_.OnWatermark(again.watermark, 0x30);
  pass_.Answered(MakeChunk("131:131:", {{1, "a"}}, again.watermark));
  EXPECT_EQ(pass_.WriteDue(&out_), 1u);
  // A transaction that was not open at the start is an ordinary commit.
  pass_.OnCommit(140);
  EXPECT_TRUE(pass_.TableDone());
}

}  // namespace
}  // namespace pgslotd
