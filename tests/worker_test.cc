// The slot worker in-process against the real server, with a sink that
// fails on demand: nothing past the last durable byte is ever acknowledged.
#include <gtest/gtest.h>

#include <thread>

#include "fake_sink.h"
#include "pg_cluster.h"
#include "slot/slot_worker.h"
#include "test_util.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

// Without background work's empty transactions (autovacuum's commit at any
// moment): a sink then holds the test's own transactions and nothing else.
const std::vector<std::pair<std::string, std::string>> kOptions = {{"include-xids", "1"},
                                                                   {"skip-empty-xacts", "1"}};

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { pg_ = PgCluster::Shared(); }

  SlotConfig Slot(const std::string& name) {
    SlotConfig c;
    c.name = name;
    c.connection = pg_->Conninfo();
    c.plugin = "test_decoding";
    c.options = kOptions;
    c.status_interval = std::chrono::milliseconds(200);
    c.fsync_interval = std::chrono::milliseconds(0);
    return c;
  }
  std::unique_ptr<SlotWorker> StartWorker(const SlotConfig& c, FakeSink::Shared* shared) {
    SlotWorker::Options o;
    o.make_sink = [shared](const SlotConfig&) { return std::make_unique<FakeSink>(shared); };
    auto w = std::make_unique<SlotWorker>(c, std::move(o));
    w->Start();
    return w;
  }
  bool FlushReaches(const std::string& slot, const std::string& lsn) {
    return WaitFor(
        [&] {
          return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + lsn +
                             "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + slot +
                             "'") == "t";
        },
        seconds(20));
  }
  std::unique_ptr<SlotWorker> StartRecordWorker(const SlotConfig& c,
                                                AsyncFakeSink::Shared* shared) {
    SlotWorker::Options o;
    o.make_sink = [shared](const SlotConfig&) { return std::make_unique<AsyncFakeSink>(shared); };
    auto w = std::make_unique<SlotWorker>(c, std::move(o));
    w->Start();
    return w;
  }
  // Waits until the record sink holds `count` records, completes all of
  // them, waits until `slot` is confirmed up to `end`, and stops `w`, which
  // must end without an error.
  void CompleteAllAndStop(SlotWorker* w, AsyncFakeSink::Shared* shared, size_t count,
                          const std::string& slot, const std::string& end) {
    ASSERT_TRUE(WaitFor(
        [&] {
          std::lock_guard<std::mutex> l(shared->mu);
          return shared->records.size() >= count;
        },
        seconds(30)));
    uint64_t last_end;
    {
      std::lock_guard<std::mutex> l(shared->mu);
      last_end = shared->records.back().end;
    }
    shared->Complete(0, last_end);
    ASSERT_TRUE(FlushReaches(slot, end));
    w->RequestStop();
    w->Join();
    EXPECT_TRUE(w->error().ok()) << w->error().message();
  }
  std::string Reference(const std::string& slot, const std::string& upto) {
    std::string out;
    for (auto& l : pg_->PeekChanges(slot, upto, kOptions)) out += l + "\n";
    return out;
  }
  // Whether the slot (from its confirmed_flush_lsn on) still holds a change
  // containing `held` and none containing `acked` (if not empty).
  bool StillHeld(const std::string& slot, const std::string& held, const std::string& acked) {
    std::string all;
    for (auto& l : pg_->PeekChanges(slot, "", {})) all += l + "\n";
    bool ok = all.find(held) != std::string::npos &&
              (acked.empty() || all.find(acked) == std::string::npos);
    if (!ok) ADD_FAILURE() << "slot " << slot << " holds:\n" << all;
    return ok;
  }
  PgCluster* pg_;
};

TEST_F(WorkerTest, FailedSyncIsNeverAcknowledged) {
  pg_->Exec("DROP TABLE IF EXISTS wf; CREATE TABLE wf(id serial primary key, v text)");
  pg_->DropSlotIfExists("wt_sync");
  pg_->CreateLogicalSlot("wt_sync");
  FakeSink::Shared shared;
  auto w = StartWorker(Slot("wt_sync"), &shared);

  pg_->Exec("INSERT INTO wf(v) VALUES ('durable')");
  std::string durable_end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("wt_sync", durable_end));
  std::string durable_content;
  {
    std::lock_guard<std::mutex> l(shared.mu);
    shared.fail_sync = true;
    durable_content = shared.content;
  }
  pg_->Exec("INSERT INTO wf(v) VALUES ('written, never synced')");
  ASSERT_TRUE(WaitFor([&] { return w->finished(); }, seconds(20)));
  EXPECT_EQ(w->error().code(), Status::Code::kProcessFatal);
  EXPECT_NE(w->error().message().find("injected fsync failure"), std::string::npos);
  {
    std::lock_guard<std::mutex> l(shared.mu);
    // The worker wrote part or all of the second transaction (the server
    // may send its BEGIN alone) and failed to sync it.
    EXPECT_GT(shared.content.size(), durable_content.size()) << "the write did happen";
    EXPECT_EQ(shared.content.substr(0, shared.durable_bytes), durable_content);
  }
  // The server still holds the unsynced transaction for us, and only it.
  EXPECT_TRUE(StillHeld("wt_sync", "never synced", "durable"));
}

// A retryable failure of the last sync at a stop (a pipe whose reader left,
// a state record that could not be written) is not a reason to reconnect:
// the worker ends the stream cleanly, and what failed stays unacknowledged.
TEST_F(WorkerTest, RetryableSyncFailureAtStopEndsCleanlyAndAcknowledgesNothingMore) {
  pg_->Exec("DROP TABLE IF EXISTS wstop; CREATE TABLE wstop(id serial primary key, v text)");
  pg_->DropSlotIfExists("wt_stop");
  pg_->CreateLogicalSlot("wt_stop");
  FakeSink::Shared shared;
  SlotConfig c = Slot("wt_stop");
  c.fsync_interval = std::chrono::hours(1);  // only the stop syncs
  auto w = StartWorker(c, &shared);
  pg_->Exec("INSERT INTO wstop(v) VALUES ('written at the stop')");
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(shared.mu);
        return shared.content.find("written at the stop") != std::string::npos;
      },
      seconds(20)));
  {
    std::lock_guard<std::mutex> l(shared.mu);
    shared.sync_error = Status::Code::kRetryable;
    shared.fail_sync = true;
  }
  w->RequestStop();
  w->Join();
  EXPECT_EQ(w->stats().reconnects.load(), 0u) << "a stop turned into a reconnect";
  {
    std::lock_guard<std::mutex> l(shared.mu);
    EXPECT_EQ(shared.durable_bytes, 0u);
  }
  EXPECT_TRUE(StillHeld("wt_stop", "written at the stop", ""));
}

TEST_F(WorkerTest, FailedWriteIsCutBackAndResentWhole) {
  pg_->Exec("DROP TABLE IF EXISTS ww; CREATE TABLE ww(id serial primary key, v text)");
  pg_->DropSlotIfExists("wt_write");
  pg_->DropSlotIfExists("wt_write_ref");
  pg_->CreateLogicalSlot("wt_write");
  pg_->CopyLogicalSlot("wt_write", "wt_write_ref");
  FakeSink::Shared shared;
  auto w = StartWorker(Slot("wt_write"), &shared);
  pg_->Exec("INSERT INTO ww(v) VALUES ('first')");
  std::string first_end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("wt_write", first_end));
  {
    std::lock_guard<std::mutex> l(shared.mu);
    shared.fail_write = true;
  }
  pg_->Exec("INSERT INTO ww(v) SELECT 'second ' || g FROM generate_series(1, 20) g");
  ASSERT_TRUE(WaitFor([&] { return w->stats().reconnects.load() > 0; }, seconds(20)));
  EXPECT_TRUE(StillHeld("wt_write", "second 20", "'first'"));
  {
    std::lock_guard<std::mutex> l(shared.mu);
    EXPECT_GE(shared.discards, 1);
    shared.fail_write = false;
  }
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("wt_write", end));
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(w->error().ok()) << w->error().message();
  std::lock_guard<std::mutex> l(shared.mu);
  EXPECT_EQ(shared.content, Reference("wt_write_ref", end)) << "half-written bytes were kept";
}

// A sink that learns later, out of order, what is durable (a broker's
// delivery reports): a report that leaves a gap acknowledges nothing past
// the gap; the one that fills it acknowledges everything up to the end.
TEST_F(WorkerTest, OutOfOrderDeliveryReportsAreAcknowledgedOnlyWithoutAGap) {
  pg_->Exec("DROP TABLE IF EXISTS wa; CREATE TABLE wa(id serial primary key, v text)");
  pg_->DropSlotIfExists("wt_async");
  pg_->DropSlotIfExists("wt_async_ref");
  pg_->CreateLogicalSlot("wt_async");
  pg_->CopyLogicalSlot("wt_async", "wt_async_ref");
  AsyncFakeSink::Shared shared;
  auto w = StartRecordWorker(Slot("wt_async"), &shared);
  // The sink's offsets of the end of each transaction, once it has all of it.
  auto taken_through = [&](const std::string& value) {
    uint64_t end = 0;
    EXPECT_TRUE(WaitFor(
        [&] {
          std::lock_guard<std::mutex> l(shared.mu);
          size_t at = shared.content.find(value);
          size_t commit = at == std::string::npos ? at : shared.content.find("COMMIT", at);
          size_t line_end =
              commit == std::string::npos ? commit : shared.content.find('\n', commit);
          if (line_end == std::string::npos) return false;
          end = line_end + 1;
          return true;
        },
        seconds(20)));
    return end;
  };
  pg_->Exec("INSERT INTO wa(v) VALUES ('first')");
  std::string first_end = pg_->CurrentWalLsn();
  uint64_t a_end = taken_through("'first'");
  pg_->Exec("INSERT INTO wa(v) VALUES ('second')");
  std::string second_end = pg_->CurrentWalLsn();
  uint64_t b_end = taken_through("'second'");

  shared.Complete(a_end, b_end);  // the second transaction's report first
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(shared.mu);
        return shared.taken_reports == 1;
      },
      seconds(20)));
  // A turn that began after the report was taken: the one that took it has
  // published what it would acknowledge.
  int64_t taken_at = std::chrono::steady_clock::now().time_since_epoch().count();
  ASSERT_TRUE(WaitFor([&] { return w->stats().heartbeat_ns.load() > taken_at; }, seconds(20)));
  EXPECT_LT(w->stats().flushed_lsn.load(), *ParseLsn(first_end))
      << "acknowledged past a transaction whose delivery was not reported";
  EXPECT_EQ(pg_->Scalar("SELECT confirmed_flush_lsn < '" + first_end +
                        "'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'wt_async'"),
            "t");

  shared.Complete(0, a_end);  // fills the gap
  ASSERT_TRUE(FlushReaches("wt_async", second_end));
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(w->error().ok()) << w->error().message();
  std::lock_guard<std::mutex> l(shared.mu);
  EXPECT_EQ(shared.content, Reference("wt_async_ref", second_end));
}

// A record sink is handed records, not bytes: each JSON line with the
// position it came from, its transaction and commit position, its table
// and its key columns, in a streamed (spooled) transaction too, and the
// records together are exactly the lines a file would hold.
TEST_F(WorkerTest, ARecordSinkGetsEachChangeWithItsPositionTransactionTableAndKey) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS rk_pub; DROP TABLE IF EXISTS rk, rk_nokey;"
      "CREATE TABLE rk(id int, region text, v text, PRIMARY KEY (id, region));"
      "CREATE TABLE rk_nokey(v text); ALTER TABLE rk_nokey REPLICA IDENTITY FULL;"
      "CREATE PUBLICATION rk_pub FOR TABLE rk, rk_nokey");
  pg_->DropSlotIfExists("wt_records");
  pg_->CreateLogicalSlot("wt_records", "pgoutput");
  SlotConfig c = Slot("wt_records");
  // A small decoding memory: the large transaction is streamed and spooled.
  c.connection += " options='-c logical_decoding_work_mem=64kB'";
  c.plugin = "pgoutput";
  c.format = OutputFormat::kJson;
  c.include_transactions = true;
  c.options = {{"proto_version", "2"}, {"publication_names", "rk_pub"}, {"streaming", "on"}};
  AsyncFakeSink::Shared shared;
  auto w = StartRecordWorker(c, &shared);
  pg_->Exec(
      "BEGIN; INSERT INTO rk VALUES (1, 'eu', 'a'); UPDATE rk SET v = 'b' WHERE id = 1;"
      "INSERT INTO rk_nokey VALUES ('x'); DELETE FROM rk WHERE id = 1; COMMIT");
  pg_->Exec("INSERT INTO rk SELECT g, 'us', repeat('v', 200) FROM generate_series(1, 2000) g");
  std::string end = pg_->CurrentWalLsn();
  const size_t kRecords = 6 + 2002;
  ASSERT_NO_FATAL_FAILURE(CompleteAllAndStop(w.get(), &shared, kRecords, "wt_records", end));
  EXPECT_NE(pg_->Scalar("SELECT stream_txns FROM pg_stat_replication_slots "
                        "WHERE slot_name = 'wt_records'"),
            "0")
      << "the large transaction was not streamed";

  std::lock_guard<std::mutex> l(shared.mu);
  ASSERT_EQ(shared.records.size(), kRecords);
  std::string lines;
  for (const auto& r : shared.records) {
    lines += r.payload + "\n";
    EXPECT_EQ(r.end, lines.size()) << "a record's sequence number is where it ends";
    EXPECT_EQ(FormatLsn(r.info.lsn), JsonText(r.payload, "lsn")) << r.payload;
    EXPECT_EQ(FormatLsn(r.info.commit_lsn), JsonText(r.payload, "commit_lsn")) << r.payload;
    EXPECT_NE(r.info.xid, 0u) << r.payload;
    size_t txn_begin = lines.size() <= shared.records[5].end ? 0 : 6;
    EXPECT_EQ(r.info.xid, shared.records[txn_begin].info.xid) << "its transaction's: " << r.payload;
  }
  EXPECT_EQ(shared.content, lines) << "the records are the lines, in order";

  const std::vector<RecordKind> first_kinds = {RecordKind::kBegin,  RecordKind::kChange,
                                               RecordKind::kChange, RecordKind::kChange,
                                               RecordKind::kChange, RecordKind::kCommit};
  const std::vector<std::string> first_tables = {"", "rk", "rk", "rk_nokey", "rk", ""};
  const std::vector<std::string> first_keys = {
      "", R"({"id":1,"region":"eu"})", R"({"id":1,"region":"eu"})",
      "", R"({"id":1,"region":"eu"})", ""};
  for (size_t i = 0; i < 6; ++i) {
    const auto& r = shared.records[i];
    EXPECT_EQ(r.info.kind, first_kinds[i]) << r.payload;
    EXPECT_EQ(r.table, first_tables[i]) << r.payload;
    EXPECT_EQ(r.schema, first_tables[i].empty() ? "" : "public") << r.payload;
    EXPECT_EQ(r.key, first_keys[i]) << "REPLICA IDENTITY FULL is no key: " << r.payload;
  }
  EXPECT_EQ(shared.records[6].info.kind, RecordKind::kBegin);
  EXPECT_EQ(shared.records.back().info.kind, RecordKind::kCommit);
  for (size_t i = 7; i + 1 < kRecords; ++i) {
    const auto& r = shared.records[i];
    ASSERT_EQ(r.info.kind, RecordKind::kChange) << r.payload;
    ASSERT_EQ(r.table, "rk") << r.payload;
    ASSERT_EQ(r.key, "{\"id\":" + std::to_string(i - 6) + ",\"region\":\"us\"}") << r.payload;
  }
}

TEST_F(WorkerTest, ARecordSinksKeysAreThePrimaryKeyWhateverTheReplicaIdentity) {
  // The key routes a row to its partition, so every change of a row must
  // carry the same one: the primary key, never every column (FULL) nor
  // another index's.
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS ri_pub; DROP TABLE IF EXISTS ri_full, ri_index, ri_nopk;"
      "CREATE TABLE ri_full(region text, id int, v text, PRIMARY KEY (id, region));"
      "ALTER TABLE ri_full REPLICA IDENTITY FULL;"
      "CREATE TABLE ri_index(id int PRIMARY KEY, code text NOT NULL, v text);"
      "CREATE UNIQUE INDEX ri_index_code ON ri_index(code);"
      "ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;"
      "CREATE TABLE ri_nopk(v text); ALTER TABLE ri_nopk REPLICA IDENTITY FULL;"
      "CREATE PUBLICATION ri_pub FOR TABLE ri_full, ri_index, ri_nopk");
  pg_->DropSlotIfExists("wt_ri");
  pg_->CreateLogicalSlot("wt_ri", "pgoutput");
  SlotConfig c = Slot("wt_ri");
  c.plugin = "pgoutput";
  c.format = OutputFormat::kJson;
  c.options = {{"proto_version", "1"}, {"publication_names", "ri_pub"}};
  AsyncFakeSink::Shared shared;
  auto w = StartRecordWorker(c, &shared);
  pg_->Exec(
      "INSERT INTO ri_full VALUES ('eu', 1, 'a'); UPDATE ri_full SET v = 'b';"
      "DELETE FROM ri_full;"
      "INSERT INTO ri_index VALUES (7, 'c7', 'a'); UPDATE ri_index SET v = 'b';"
      "DELETE FROM ri_index;"
      "INSERT INTO ri_nopk VALUES ('x')");
  std::string end = pg_->CurrentWalLsn();
  const size_t kRecords = 7;
  ASSERT_NO_FATAL_FAILURE(CompleteAllAndStop(w.get(), &shared, kRecords, "wt_ri", end));

  std::lock_guard<std::mutex> l(shared.mu);
  ASSERT_EQ(shared.records.size(), kRecords);
  const std::vector<std::string> keys = {
      R"({"region":"eu","id":1})",
      R"({"region":"eu","id":1})",
      R"({"region":"eu","id":1})",
      R"({"id":7})",
      R"({"id":7})",
      "",  // the delete names only the code (its replica identity): no key rather than a wrong one
      ""};
  for (size_t i = 0; i < kRecords; ++i) {
    EXPECT_EQ(shared.records[i].key, keys[i]) << shared.records[i].payload;
  }
}

TEST_F(WorkerTest, StatusUpdatesFlowWhileTheSinkIsStuck) {
  // A sink that takes bytes but never makes them durable (a pipe reader
  // that stopped reading): the worker keeps reporting its write position,
  // so wal_sender_timeout never fires, and never reports a flush past what
  // is durable, however many keepalives carry a later WAL end.
  pg_->Exec("DROP TABLE IF EXISTS wst; CREATE TABLE wst(id serial primary key, v text)");
  pg_->DropSlotIfExists("wt_stuck");
  pg_->CreateLogicalSlot("wt_stuck");
  FakeSink::Shared shared;
  shared.hold = true;
  auto w = StartWorker(Slot("wt_stuck"), &shared);
  pg_->Exec("INSERT INTO wst(v) VALUES ('stuck')");
  std::string after = pg_->CurrentWalLsn();
  pg_->Exec("SELECT pg_switch_wal()");  // more WAL: keepalives with a later end
  auto write_reported = [&] {
    return pg_->Scalar("SELECT coalesce(bool_or(write_lsn >= '" + after +
                       "'::pg_lsn), false) FROM pg_stat_replication "
                       "WHERE application_name = 'pgslotd_wt_stuck'") == "t";
  };
  ASSERT_TRUE(WaitFor(write_reported, seconds(20)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Acknowledging the transaction means reaching its end, `after`.
  auto below = [&] {
    return pg_->Scalar("SELECT confirmed_flush_lsn < '" + after +
                       "'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'wt_stuck'") == "t";
  };
  EXPECT_TRUE(below()) << pg_->ConfirmedFlushLsn("wt_stuck") << " vs " << after;
  EXPECT_EQ(w->stats().reconnects.load(), 0u);
  {
    std::lock_guard<std::mutex> l(shared.mu);
    EXPECT_NE(shared.content.find("'stuck'"), std::string::npos);
  }
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(below()) << pg_->ConfirmedFlushLsn("wt_stuck") << " vs " << after;
}

}  // namespace
}  // namespace pgslotd::test
