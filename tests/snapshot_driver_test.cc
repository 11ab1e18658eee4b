// The snapshot driver with a recording fake in place of the reader thread:
// what it asks for, in which order, and the exact lines it writes.
#include "snapshot/snapshot_driver.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <optional>
#include <string>
#include <vector>

#include "decode/pgoutput_formatter.h"
#include "decode/record_buffer.h"

namespace pgslotd {
namespace {

using Kind = SnapshotAsk::Kind;

class FakeReads : public SnapshotReads {
 public:
  void Ask(SnapshotAsk ask) override {
    asks.push_back(ask);
    busy_ = true;
  }
  bool busy() const override { return busy_; }
  std::optional<SnapshotAnswer> TakeAnswer() override {
    if (!answer_) return std::nullopt;
    std::optional<SnapshotAnswer> a = std::move(answer_);
    answer_.reset();
    busy_ = false;
    return a;
  }
  void Answer(SnapshotAnswer a) {
    a.kind = asks.back().kind;
    answer_ = std::move(a);
  }
  const SnapshotAsk& last() const { return asks.back(); }

  std::vector<SnapshotAsk> asks;

 private:
  bool busy_ = false;
  std::optional<SnapshotAnswer> answer_;
};

TableDescription Items(bool keyed = true) {
  TableDescription t;
  t.schema = "public";
  t.table = "items";
  t.columns = {{"id", 23}};
  if (keyed) {
    t.key_columns = {"id"};
    t.key_types = {"integer"};
  }
  return t;
}

// A chunk of rows with ids `ids` (the id column, then the key again).
Chunk RowsChunk(const std::vector<int>& ids, const std::string& watermark) {
  Chunk chunk;
  chunk.snapshot = PgSnapshot::Parse("100:100:").value();
  chunk.watermark = watermark;
  PGresult* res = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  PGresAttDesc attrs[2] = {};
  char id[] = "id", key[] = "id";
  attrs[0].name = id;
  attrs[1].name = key;
  EXPECT_TRUE(PQsetResultAttrs(res, 2, attrs));
  for (size_t r = 0; r < ids.size(); ++r) {
    std::string v = std::to_string(ids[r]);
    EXPECT_TRUE(PQsetvalue(res, static_cast<int>(r), 0, v.data(), static_cast<int>(v.size())));
    EXPECT_TRUE(PQsetvalue(res, static_cast<int>(r), 1, v.data(), static_cast<int>(v.size())));
  }
  chunk.rows.reset(res);
  if (!ids.empty()) chunk.last_key = {std::to_string(ids.back())};
  return chunk;
}

class SnapshotDriverTest : public ::testing::Test {
 protected:
  SnapshotDriverTest() : formatter_(JsonOptions()), driver_("s1", {"pub"}, 3, &reads_) {}

  bool Turn(bool can_write = true) { return driver_.Turn(&formatter_, &out_, can_write, now_); }
  std::string Take() {
    std::string s(out_.data(), out_.size());
    out_.Clear();
    return s;
  }
  // Answers what was asked, up to the table's first chunk request.
  void UpToFirstRead(const TableDescription& table) {
    ASSERT_EQ(reads_.last().kind, Kind::kDescribe);
    SnapshotAnswer described;
    described.described = table;
    reads_.Answer(std::move(described));
    Turn();
    ASSERT_EQ(reads_.last().kind, Kind::kBeginPass);
    reads_.Answer(SnapshotAnswer());
    Turn();
    ASSERT_EQ(reads_.last().kind, Kind::kRead);
  }
  // Answers the outstanding read with `ids` and its watermark.
  void AnswerRead(const std::vector<int>& ids) {
    SnapshotAnswer a;
    a.chunk = RowsChunk(ids, reads_.last().chunk.watermark);
    reads_.Answer(std::move(a));
    driver_.observer()->OnWatermark(reads_.last().chunk.watermark, 0x100);
  }

  FakeReads reads_;
  PgoutputFormatter formatter_;
  SnapshotDriver driver_;
  RecordBuffer out_{256};
  SnapshotDriver::Clock::time_point now_ = SnapshotDriver::Clock::now();
};

const char kStart[] =
    "{\"op\":\"snapshot\",\"event\":\"start\",\"schema\":\"public\",\"table\":\"items\"}\n";

// The items table's end line, with its count of rows.
std::string End(int rows) {
  return "{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\",\"table\":\"items\","
         "\"rows\":" +
         std::to_string(rows) + "}\n";
}

std::string Read(int id) {
  return "{\"op\":\"read\",\"lsn\":\"0/"
         "100\",\"schema\":\"public\",\"table\":\"items\",\"new\":{\"id\":" +
         std::to_string(id) + "}}\n";
}

TEST_F(SnapshotDriverTest, ListsDescribesWaitsThenReadsInChunksFramedByStartAndEnd) {
  driver_.Request({});
  EXPECT_TRUE(driver_.active());
  Turn();
  ASSERT_EQ(reads_.asks.size(), 1u);
  EXPECT_EQ(reads_.last().kind, Kind::kListTables);
  EXPECT_EQ(reads_.last().publications, std::vector<std::string>{"pub"});
  SnapshotAnswer listed;
  listed.tables = {{"public", "items"}};
  reads_.Answer(std::move(listed));
  Turn();
  EXPECT_EQ(reads_.last().schema, "public");
  EXPECT_EQ(reads_.last().table, "items");
  UpToFirstRead(Items());
  EXPECT_EQ(Take(), kStart) << "the start line once the pass has begun";
  EXPECT_TRUE(reads_.last().chunk.after_key.empty());
  EXPECT_EQ(reads_.last().chunk_rows, 3u);

  AnswerRead({1, 2, 3});
  EXPECT_FALSE(Turn(false)) << "nothing is written inside a transaction";
  EXPECT_TRUE(Turn());
  EXPECT_EQ(Take(), Read(1) + Read(2) + Read(3));
  EXPECT_EQ(reads_.last().chunk.after_key, std::vector<std::string>{"3"});
  EXPECT_EQ(driver_.figures().table, "public.items");
  EXPECT_EQ(driver_.figures().rows, 3u);

  AnswerRead({4});
  Turn();
  EXPECT_EQ(Take(), Read(4));
  Turn();
  EXPECT_EQ(Take(), End(4));
  Turn();
  EXPECT_EQ(reads_.last().kind, Kind::kClose) << "the connection is given back";
  EXPECT_FALSE(driver_.active());
  EXPECT_EQ(driver_.figures().rows_total, 4u);
  EXPECT_EQ(driver_.figures().tables_done, 1u);
  EXPECT_EQ(driver_.figures().tables_left, 0u);
}

TEST_F(SnapshotDriverTest, ATableWithoutAKeyEndsWithAFailedLineAndTheNextGoesOn) {
  driver_.Request({{"public", "items"}, {"public", "other"}});
  Turn();
  SnapshotAnswer described;
  described.described = Items(false);
  reads_.Answer(std::move(described));
  Turn();
  EXPECT_EQ(Take(),
            "{\"op\":\"snapshot\",\"event\":\"failed\",\"schema\":\"public\",\"table\":\"items\","
            "\"rows\":0,\"error\":\"table public.items has no primary key and no unique index over "
            "NOT NULL columns: its rows cannot be read in chunks; give it a primary key, or set "
            "snapshot_keyless: read_whole to read it whole\"}\n");
  EXPECT_EQ(reads_.last().kind, Kind::kDescribe);
  EXPECT_EQ(reads_.last().table, "other");
}

TEST_F(SnapshotDriverTest, ARetryableFailureIsAskedAgainASecondLaterAPermanentOneFailsTheTable) {
  driver_.Request({{"public", "items"}});
  Turn();
  SnapshotAnswer failed;
  failed.status = Status::Retryable("connection lost");
  reads_.Answer(std::move(failed));
  Turn();
  EXPECT_EQ(reads_.asks.size(), 1u) << "not at once";
  now_ += std::chrono::seconds(1);
  Turn();
  ASSERT_EQ(reads_.asks.size(), 2u);
  EXPECT_EQ(reads_.last().kind, Kind::kDescribe);
  SnapshotAnswer denied;
  denied.status = Status::SlotFatal("permission denied for table items");
  reads_.Answer(std::move(denied));
  Turn();
  std::string out = Take();
  EXPECT_NE(out.find("\"event\":\"failed\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"error\":\"permission denied for table items\""), std::string::npos) << out;
}

TEST_F(SnapshotDriverTest, LinesLostWithAFailedSessionAreReadAgainAfterWhatTheOutputKept) {
  driver_.Request({{"public", "items"}});
  Turn();
  UpToFirstRead(Items());
  EXPECT_EQ(Take(), kStart);
  driver_.Wrote(100);  // the start line ends at 100
  AnswerRead({1, 2, 3});
  Turn();
  EXPECT_EQ(Take(), Read(1) + Read(2) + Read(3));
  driver_.Wrote(200);  // the chunk ends at 200

  driver_.Rewind(150);  // the chunk was dropped, the start line kept
  AnswerRead({4});      // the read in flight: from before, not written
  Turn();
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(reads_.last().kind, Kind::kDescribe) << "the table again, its pass anew";
  UpToFirstRead(Items());
  EXPECT_EQ(Take(), "") << "its start line is in the output already";
  EXPECT_TRUE(reads_.last().chunk.after_key.empty()) << "no chunk was kept";
  AnswerRead({1, 2, 3});
  Turn();
  EXPECT_EQ(Take(), Read(1) + Read(2) + Read(3));
  driver_.Wrote(250);
  EXPECT_EQ(reads_.last().chunk.after_key, std::vector<std::string>{"3"});

  AnswerRead({4});
  Turn();
  EXPECT_EQ(Take(), Read(4));
  driver_.Wrote(300);
  driver_.Rewind(260);  // the second chunk was dropped
  Turn();
  UpToFirstRead(Items());
  EXPECT_EQ(reads_.last().chunk.after_key, std::vector<std::string>{"3"})
      << "on after the chunk kept";
  AnswerRead({4});
  Turn();
  EXPECT_EQ(Take(), Read(4));
  Turn();
  EXPECT_EQ(Take(), End(4)) << "the rows the output holds";

  driver_.Wrote(350);
  driver_.Rewind(350);  // all kept: nothing to do
  Turn();
  EXPECT_EQ(reads_.last().kind, Kind::kClose);
}

TEST_F(SnapshotDriverTest, TheProgressAtAnOffsetIsWhatTheOutputHoldsUpToIt) {
  EXPECT_EQ(driver_.ProgressAt(0), "") << "no snapshot";
  driver_.Request({});
  const std::string queued = "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0";
  EXPECT_EQ(driver_.ProgressAt(0), queued) << "asked for, nothing written yet";
  Turn();
  SnapshotAnswer listed;
  listed.tables = {{"public", "items"}, {"public", "more items"}};
  reads_.Answer(std::move(listed));
  Turn();
  UpToFirstRead(Items());
  driver_.Wrote(100);
  AnswerRead({1, 2, 3});
  Turn();
  driver_.Wrote(200);
  EXPECT_EQ(driver_.ProgressAt(99), queued);
  EXPECT_EQ(driver_.ProgressAt(100),
            "queue 2 t public items t public more\\sitems started 1 rows 0 after 0 ranges 0 again "
            "0 done 0 "
            "total 0");
  EXPECT_EQ(driver_.ProgressAt(250),
            "queue 2 t public items t public more\\sitems started 1 rows 3 after 1 3 ranges 0 "
            "again 0 done "
            "0 total 3");

  driver_.Settled(200);
  EXPECT_EQ(driver_.ProgressAt(0), driver_.ProgressAt(200)) << "never cut back before 200";
  EXPECT_FALSE(driver_.finished());
}

TEST_F(SnapshotDriverTest, AResumedPassGoesOnAfterItsKeyWithoutASecondStartLine) {
  SnapshotProgress progress;
  progress.queue = {{"public", "items"}, {"public", "later"}};
  progress.started = true;
  progress.rows = 3;
  progress.after_key = {"3"};
  progress.read_again = {{"2"}};
  progress.rows_total = 3;
  driver_.Resume(progress);
  EXPECT_TRUE(driver_.active());
  Turn();
  ASSERT_EQ(reads_.last().kind, Kind::kDescribe);
  EXPECT_EQ(reads_.last().table, "items");
  UpToFirstRead(Items());
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(reads_.last().chunk.after_key, std::vector<std::string>{"3"});
  AnswerRead({4});  // fewer than a chunk: the ranges are read
  Turn();
  EXPECT_EQ(Take(), Read(4));
  ASSERT_EQ(reads_.last().kind, Kind::kRead);
  EXPECT_EQ(reads_.last().chunk.keys, std::vector<std::vector<std::string>>{{"2"}})
      << "the key recorded to read again";
  AnswerRead({2});
  Turn();
  EXPECT_EQ(Take(), Read(2));
  Turn();
  EXPECT_EQ(Take(), End(5));
  EXPECT_EQ(reads_.last().kind, Kind::kDescribe);
  EXPECT_EQ(reads_.last().table, "later") << "then the rest of the queue";
}

TEST_F(SnapshotDriverTest, APassResumedWithItsRangesReadReadsOnlyItsKeysAgain) {
  SnapshotProgress progress;
  progress.queue = {{"public", "items"}};
  progress.started = true;
  progress.rows = 7;
  progress.after_key = {"7"};
  progress.ranges_done = true;
  progress.read_again = {{"5"}};
  driver_.Resume(progress);
  Turn();
  UpToFirstRead(Items());
  EXPECT_EQ(reads_.last().chunk.keys, std::vector<std::vector<std::string>>{{"5"}})
      << "no range again: a key read again since could be read twice";
  AnswerRead({5});
  Turn();
  EXPECT_EQ(Take(), Read(5));
  Turn();
  EXPECT_EQ(Take(), End(8));
}

TEST_F(SnapshotDriverTest, ASnapshotOfNoTablesIsFinishedWithoutALine) {
  driver_.Request({});
  Turn();
  reads_.Answer(SnapshotAnswer());  // the publications hold no table
  Turn();
  EXPECT_EQ(reads_.last().kind, Kind::kClose);
  EXPECT_EQ(Take(), "");
  EXPECT_TRUE(driver_.finished()) << "nothing is left for a record to hold";
  EXPECT_EQ(driver_.ProgressAt(0), "");
}

TEST_F(SnapshotDriverTest, ItIsFinishedOnlyOnceTheOutputCannotLoseItsLastLine) {
  driver_.Request({{"public", "items"}});
  Turn();
  UpToFirstRead(Items());
  AnswerRead({1});
  Turn();
  Turn();  // the end line
  driver_.Wrote(100);
  Turn();
  EXPECT_EQ(reads_.last().kind, Kind::kClose);
  EXPECT_FALSE(driver_.active());
  EXPECT_FALSE(driver_.finished()) << "the lines may yet be cut back";
  EXPECT_EQ(driver_.ProgressAt(100), "") << "a record there has no snapshot to go on with";
  EXPECT_NE(driver_.ProgressAt(99), "") << "one before it has";
  driver_.Settled(100);
  EXPECT_TRUE(driver_.finished());
}

TEST_F(SnapshotDriverTest, ATableIsWatchedFromAPointBetweenTransactionsOnly) {
  driver_.Request({{"public", "items"}});
  Turn();
  SnapshotAnswer described;
  described.described = Items();
  reads_.Answer(std::move(described));
  Turn(false);  // inside a transaction: half of it would go unseen
  EXPECT_EQ(reads_.asks.size(), 1u);
  EXPECT_EQ(driver_.observer()->WatchOf("public", "items"), nullptr);
  Turn(true);
  ASSERT_EQ(reads_.asks.size(), 2u);
  EXPECT_EQ(reads_.last().kind, Kind::kBeginPass);
  EXPECT_NE(driver_.observer()->WatchOf("public", "items"), nullptr);
}

// An on-demand request's file is named by the progress of every offset
// from the request on (so that a record holds it), done or not, until its
// file is deleted; a resumed driver knows it.
TEST_F(SnapshotDriverTest, AnOnDemandRequestIsNamedByTheProgressUntilItsFileIsDeleted) {
  driver_.Wrote(0);
  driver_.Request({{"public", "items"}}, "0001-7");
  EXPECT_TRUE(driver_.HoldsRequest("0001-7"));
  EXPECT_FALSE(driver_.HoldsRequest("0002-7"));
  EXPECT_EQ(driver_.ProgressAt(0),
            "queue 1 t public items started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 "
            "requests 1 0001-7");
  Turn();
  UpToFirstRead(Items());
  Take();
  driver_.Wrote(100);
  EXPECT_NE(driver_.ProgressAt(100).find(" requests 1 0001-7"), std::string::npos)
      << driver_.ProgressAt(100);
  driver_.Request({}, "0002-7");  // a second one while the first is read
  EXPECT_NE(driver_.ProgressAt(100).find("requests 2 0001-7 0002-7"), std::string::npos)
      << driver_.ProgressAt(100);

  SnapshotProgress recorded;
  std::string err;
  ASSERT_TRUE(ParseSnapshotProgress(driver_.ProgressAt(100), &recorded, &err)) << err;
  FakeReads other_reads;
  SnapshotDriver resumed("s1", {"pub"}, 3, &other_reads);
  resumed.Resume(recorded);
  EXPECT_TRUE(resumed.HoldsRequest("0001-7"));
  EXPECT_TRUE(resumed.HoldsRequest("0002-7"));

  // A file deleted while the snapshot runs is named until it is done.
  driver_.RequestFilesGone({"0001-7"});
  EXPECT_TRUE(driver_.HoldsRequest("0001-7"));
  AnswerRead({1});
  Turn();
  Turn();
  EXPECT_EQ(Take(), Read(1) + End(1));
  Turn();  // "all": listed
  SnapshotAnswer none;
  reads_.Answer(std::move(none));
  Turn();
  Turn();
  EXPECT_EQ(reads_.last().kind, Kind::kClose);
  // Done: the progress names the files not yet deleted, so that a record
  // written before their deletion keeps a crash from reading the tables
  // again.
  EXPECT_FALSE(driver_.HoldsRequest("0001-7"));
  EXPECT_TRUE(driver_.HoldsRequest("0002-7"));
  driver_.Wrote(200);
  EXPECT_EQ(driver_.ProgressAt(200),
            "queue 0 started 0 rows 0 after 0 ranges 0 again 0 done 1 total 1 requests 1 0002-7");
  EXPECT_FALSE(driver_.finished()) << "not until its last line is settled";
  driver_.Settled(200);
  EXPECT_TRUE(driver_.finished());
  driver_.RequestFilesGone({"0002-7"});
  EXPECT_FALSE(driver_.HoldsRequest("0002-7"));
  EXPECT_EQ(driver_.ProgressAt(200), "");
}

// A watermark the stream passes without giving it (the reading connection
// reached another server; a failover lost it): the chunk is read again,
// and after three misses running the table fails, saying why.
TEST_F(SnapshotDriverTest, AChunkWhoseWatermarkTheStreamPassesIsReadAgainThenTheTableFails) {
  driver_.Request({{"public", "items"}});
  Turn();
  UpToFirstRead(Items());
  EXPECT_EQ(Take(), kStart);
  auto answer_unseen = [&](const std::vector<int>& ids, Lsn end) {
    SnapshotAnswer a;
    a.chunk = RowsChunk(ids, reads_.last().chunk.watermark);
    a.chunk.watermark_end = end;
    reads_.Answer(std::move(a));
    Turn();
  };
  answer_unseen({1, 2, 3}, 0x200);
  const std::string first_watermark = reads_.last().chunk.watermark;
  size_t asks = reads_.asks.size();
  driver_.StreamAt(0x200);  // up to the watermark's end: it may still come
  Turn();
  EXPECT_EQ(reads_.asks.size(), asks);
  driver_.StreamAt(0x201);
  Turn();
  ASSERT_EQ(reads_.asks.size(), asks + 1) << "the same rows are asked for again";
  EXPECT_EQ(reads_.last().kind, Kind::kRead);
  EXPECT_TRUE(reads_.last().chunk.after_key.empty());
  EXPECT_NE(reads_.last().chunk.watermark, first_watermark);
  EXPECT_EQ(Take(), "") << "nothing of the missed chunk is written";

  // One that comes resets the count.
  answer_unseen({1, 2, 3}, 0x300);
  driver_.StreamAt(0x301);
  Turn();
  AnswerRead({1, 2, 3});
  Turn();
  EXPECT_EQ(Take(), Read(1) + Read(2) + Read(3));
  EXPECT_EQ(reads_.last().chunk.after_key, std::vector<std::string>{"3"});
  for (Lsn end : {0x400, 0x500, 0x600}) {
    answer_unseen({4}, end);
    driver_.StreamAt(end + 1);
    Turn();
  }
  Turn();
  EXPECT_EQ(Take(),
            "{\"op\":\"snapshot\",\"event\":\"failed\",\"schema\":\"public\",\"table\":"
            "\"items\",\"rows\":3,\"error\":\"the watermarks of its chunks do not reach the "
            "slot's stream (3 running): the snapshot's connection reaches another server than the "
            "slot's (several hosts in connection?)\"}\n");
}

}  // namespace
}  // namespace pgslotd
