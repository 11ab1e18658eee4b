// The kafka sink against a real server and librdkafka's mock cluster (a
// process of its own), read back with kcat: what a consumer of the topics
// sees, and what the server is told is safe.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "kafka_harness.h"
#include "pg/lsn.h"
#include "pg_cluster.h"
#include "sink/kafka_position.h"
#include "sink/kafka_sink.h"
#include "slot/slot_worker.h"
#include "snapshot/snapshot_request.h"
#include "test_util.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

std::string Header(const KafkaRecord& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "(none)";
}

class KafkaSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    kafka_.Start(3);
  }

  SlotConfig JsonSlot(const std::string& name, const std::string& publication) {
    SlotConfig c;
    c.name = name;
    c.connection = pg_->Conninfo();
    c.plugin = "pgoutput";
    c.format = OutputFormat::kJson;
    c.options = {{"proto_version", "1"}, {"publication_names", publication}};
    c.status_interval = std::chrono::milliseconds(200);
    c.fsync_interval = std::chrono::milliseconds(0);
    c.sink.type = SinkType::kKafka;
    c.sink.brokers = kafka_.bootstrap();
    c.sink.exactly_once = false;
    return c;
  }

  std::string Confirmed(const std::string& slot) {
    return pg_->Scalar("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" +
                       slot + "'");
  }
  std::string Below(const std::string& slot, const std::string& lsn) {
    return pg_->Scalar("SELECT confirmed_flush_lsn < '" + lsn +
                       "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + slot + "'");
  }
  bool FlushReaches(const std::string& slot, const std::string& lsn) {
    return WaitFor(
        [&] {
          return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + lsn +
                             "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + slot +
                             "'") == "t";
        },
        seconds(60));
  }

  void BrokersDown(bool exactly_once);

  // A json slot with exactly_once that takes snapshots (`mode`), `chunk_rows`
  // rows a chunk, with its state (request files) in `state`, started on a
  // new pgoutput slot <name>_json of publication <name>_pub.
  std::unique_ptr<SlotWorker> StartSnapshotSlot(const std::string& name, SnapshotMode mode,
                                                uint64_t chunk_rows, const TempDir& state) {
    pg_->DropSlotIfExists(name + "_json");
    pg_->CreateLogicalSlot(name + "_json", "pgoutput");
    configs_.push_back(std::make_unique<SlotConfig>(JsonSlot(name + "_json", name + "_pub")));
    SlotConfig& c = *configs_.back();
    c.sink.exactly_once = true;
    c.snapshot = mode;
    c.snapshot_chunk_rows = chunk_rows;
    c.state_directory = state.path();
    auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
    w->Start();
    return w;
  }

  // Table `name` (`columns`) published by <name>_pub, a new pgoutput slot
  // <name>_json, and a json slot config for them.
  SlotConfig FreshTableAndSlot(const std::string& name, const std::string& columns) {
    pg_->Exec("DROP PUBLICATION IF EXISTS " + name + "_pub; DROP TABLE IF EXISTS " + name +
              "; CREATE TABLE " + name + "(" + columns + "); CREATE PUBLICATION " + name +
              "_pub FOR TABLE " + name);
    pg_->DropSlotIfExists(name + "_json");
    pg_->CreateLogicalSlot(name + "_json", "pgoutput");
    return JsonSlot(name + "_json", name + "_pub");
  }

  PgCluster* pg_ = nullptr;
  std::vector<std::unique_ptr<SlotConfig>> configs_;  // outlive their workers
  MockKafka kafka_;
};

TEST_F(KafkaSinkTest, ChangesGoToTheirTablesTopicKeyedByPrimaryKeyWithTheirPositions) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS ks_pub; DROP TABLE IF EXISTS ks_orders, ks_log;"
      "CREATE TABLE ks_orders(id int PRIMARY KEY, item text);"
      "ALTER TABLE ks_orders REPLICA IDENTITY FULL;"
      "CREATE TABLE ks_log(v text);"
      "CREATE PUBLICATION ks_pub FOR TABLE ks_orders, ks_log");
  pg_->DropSlotIfExists("ks_json");
  pg_->CreateLogicalSlot("ks_json", "pgoutput");
  SlotConfig c = JsonSlot("ks_json", "ks_pub");
  auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
  w->Start();
  for (int i = 1; i <= 20; ++i) {
    pg_->Exec("INSERT INTO ks_orders VALUES (" + std::to_string(i) + ", 'item" + std::to_string(i) +
              "')");
  }
  pg_->Exec(
      "UPDATE ks_orders SET item = 'changed' WHERE id <= 10; INSERT INTO ks_log VALUES ('x')");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("ks_json", end)) << w->last_error();
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(w->error().ok()) << w->error().message();

  std::vector<KafkaRecord> orders = kafka_.ReadTopicUntil("ks_json.public.ks_orders", 30);
  ASSERT_EQ(orders.size(), 30u);
  std::map<std::string, int32_t> partition_of;
  std::map<std::string, std::vector<std::string>> ops_of;
  for (const KafkaRecord& r : orders) {
    ASSERT_TRUE(r.key && r.value) << ToString(r);
    EXPECT_EQ(Header(r, "slot"), "ks_json") << ToString(r);
    EXPECT_EQ(Header(r, "lsn"), JsonText(*r.value, "lsn")) << ToString(r);
    EXPECT_EQ(Header(r, "commit_lsn"), JsonText(*r.value, "commit_lsn")) << ToString(r);
    auto [it, fresh] = partition_of.emplace(*r.key, r.partition);
    EXPECT_EQ(it->second, r.partition) << "a row's changes stay in one partition: " << ToString(r);
    ops_of[*r.key].push_back(JsonText(*r.value, "op"));
  }
  ASSERT_EQ(partition_of.size(), 20u);
  EXPECT_EQ(ops_of["{\"id\":1}"], (std::vector<std::string>{"insert", "update"}))
      << "in commit order, keyed by the primary key, not every column (REPLICA IDENTITY FULL)";
  EXPECT_EQ(ops_of["{\"id\":20}"], (std::vector<std::string>{"insert"}));
  std::set<int32_t> partitions;
  for (const auto& [key, p] : partition_of) partitions.insert(p);
  EXPECT_GT(partitions.size(), 1u) << "keys spread over the partitions";

  std::vector<KafkaRecord> log = kafka_.ReadTopicUntil("ks_json.public.ks_log", 1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_FALSE(log[0].key) << "a table without a primary key is unkeyed";
  EXPECT_EQ(log[0].partition, 0) << ToString(log[0]);
}

// The brokers go down: the worker keeps receiving, and tells the server so,
// but acknowledges nothing more until they are back and have the records.
void KafkaSinkTest::BrokersDown(bool exactly_once) {
  SlotConfig c = FreshTableAndSlot("kd", "id int PRIMARY KEY");
  c.sink.exactly_once = exactly_once;
  auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
  w->Start();
  pg_->Exec("INSERT INTO kd VALUES (1)");
  std::string first = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("kd_json", first));
  for (int b = 1; b <= 3; ++b) kafka_.Down(b);
  std::string held = Confirmed("kd_json");
  pg_->Exec("INSERT INTO kd VALUES (2)");
  std::string second = pg_->CurrentWalLsn();
  // The worker has the change and says so (write_lsn passes it), and in the
  // same status update it says the change is not flushed.
  std::string reported;
  ASSERT_TRUE(WaitFor(
      [&] {
        reported = pg_->Scalar(
            "SELECT coalesce(string_agg(flush_lsn::text, ','), '') FROM pg_stat_replication "
            "WHERE application_name = 'pgslotd_kd_json' AND write_lsn >= '" +
            second + "'::pg_lsn");
        return !reported.empty();
      },
      seconds(60)));
  EXPECT_EQ(reported, held) << "the flush reported with the write";
  EXPECT_EQ(Confirmed("kd_json"), held);
  for (int b = 1; b <= 3; ++b) kafka_.Up(b);
  ASSERT_TRUE(FlushReaches("kd_json", second)) << w->last_error();
  w->RequestStop();
  w->Join();
  std::vector<KafkaRecord> records = kafka_.ReadTopicUntil("kd_json.public.kd", 2);
  ASSERT_GE(records.size(), 2u);
  EXPECT_EQ(JsonText(*records.back().value, "op"), "insert");
}

TEST_F(KafkaSinkTest, NothingIsAcknowledgedWhileTheBrokersAreDown) { BrokersDown(false); }

TEST_F(KafkaSinkTest, ExactlyOnceNothingIsAcknowledgedWhileTheBrokersAreDown) { BrokersDown(true); }

// A record larger than the producer's message.max.bytes stops the slot with
// what to raise, naming the table and the size; nothing is acknowledged
// past it.
TEST_F(KafkaSinkTest, ARecordTooLargeStopsTheSlotNamingTheTableTheSizeAndTheSetting) {
  SlotConfig c = FreshTableAndSlot("kb", "id int PRIMARY KEY, v text");
  c.sink.properties = {{"message.max.bytes", "2000"}};
  auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
  w->Start();
  pg_->Exec("INSERT INTO kb VALUES (1, repeat('x', 5000))");
  std::string end = pg_->CurrentWalLsn();
  w->Join();  // the slot stops by itself
  EXPECT_EQ(w->error().code(), Status::Code::kSlotFatal) << w->error().message();
  for (const char* words : {"of table public.kb", "message.max.bytes", "Message size too large"}) {
    EXPECT_NE(w->error().message().find(words), std::string::npos) << w->error().message();
  }
  EXPECT_NE(w->error().message().find("record of 5"), std::string::npos) << w->error().message();
  EXPECT_EQ(Below("kb_json", end), "t") << "the insert is not acknowledged";
}

// The credentials may not write the topic: the slot stops with the broker's
// reason rather than retrying for ever.
TEST_F(KafkaSinkTest, ATopicTheCredentialsMayNotWriteStopsTheSlot) {
  SlotConfig c = FreshTableAndSlot("ka", "id int PRIMARY KEY");
  c.sink.exactly_once = true;
  auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
  w->Start();
  pg_->Exec("INSERT INTO ka VALUES (1)");
  ASSERT_TRUE(FlushReaches("ka_json", pg_->CurrentWalLsn())) << w->last_error();
  kafka_.InjectErrors("Produce", 1000, "TOPIC_AUTHORIZATION_FAILED");
  pg_->Exec("INSERT INTO ka VALUES (2)");
  std::string end = pg_->CurrentWalLsn();
  w->Join();  // the slot stops by itself
  EXPECT_EQ(w->error().code(), Status::Code::kSlotFatal) << w->error().message();
  EXPECT_NE(w->error().message().find("Topic authorization failed"), std::string::npos)
      << w->error().message();
  EXPECT_EQ(Below("ka_json", end), "t") << "the second insert is not acknowledged";
}

// Exactly once: the changes are in committed Kafka transactions, each
// ending with the slot's position record, and at a restart the committed
// position is read back and obeyed. The slot is made to forget what it was
// told (it is put back to a copy taken at the start): the server then sends
// every transaction again, as after a crash before the acknowledgement, and
// none of them reaches the topic twice.
TEST_F(KafkaSinkTest, ExactlyOnceTheCommittedPositionIsReadBackAndTheTransactionsBelowItSkipped) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS ke_pub; DROP TABLE IF EXISTS ke;"
      "CREATE TABLE ke(id int PRIMARY KEY, v text); CREATE PUBLICATION ke_pub FOR TABLE ke");
  pg_->DropSlotIfExists("ke_json");
  pg_->DropSlotIfExists("ke_json_start");
  pg_->CreateLogicalSlot("ke_json", "pgoutput");
  pg_->Exec("SELECT pg_copy_logical_replication_slot('ke_json', 'ke_json_start')");
  SlotConfig c = JsonSlot("ke_json", "ke_pub");
  c.sink.exactly_once = true;
  c.sink.topic = "ke";  // every record, begin and commit lines too, in order
  c.sink.key = KafkaKey::kNone;
  auto run = [&](int first, int last) {
    auto w = std::make_unique<SlotWorker>(c, SlotWorker::Options{});
    w->Start();
    for (int i = first; i <= last; ++i) {
      pg_->Exec("INSERT INTO ke VALUES (" + std::to_string(i) + ", 'v')");
    }
    std::string end = pg_->CurrentWalLsn();
    EXPECT_TRUE(FlushReaches("ke_json", end)) << w->last_error();
    w->RequestStop();
    w->Join();
    EXPECT_TRUE(w->error().ok()) << w->error().message();
    return end;
  };
  run(1, 5);
  std::string system_id = pg_->Scalar("SELECT system_identifier FROM pg_control_system()");
  std::vector<KafkaRecord> positions = kafka_.ReadTopicUntil("pgslotd_positions", 1);
  ASSERT_FALSE(positions.empty());
  const KafkaRecord& last = positions.back();
  EXPECT_EQ(last.partition, 0);
  EXPECT_EQ(last.key.value_or(""), system_id + "/ke_json");
  EXPECT_EQ(JsonText(last.value.value_or(""), "slot"), "ke_json");
  EXPECT_EQ(JsonText(last.value.value_or(""), "transactional_id"),
            "pgslotd-" + system_id + "-ke_json");
  EXPECT_EQ(JsonText(last.value.value_or(""), "lsn"), Confirmed("ke_json"))
      << "the position acknowledged is the one committed";

  // The slot forgets: the server will send transactions 1..5 again.
  pg_->DropSlotIfExists("ke_json");
  pg_->Exec("SELECT pg_copy_logical_replication_slot('ke_json_start', 'ke_json')");
  run(6, 8);
  std::vector<KafkaRecord> records = kafka_.ReadTopicUntil("ke", 8);
  ASSERT_EQ(records.size(), 8u) << "each transaction once";
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_NE(records[i].value->find("\"id\":" + std::to_string(i + 1) + ","), std::string::npos)
        << "in commit order: " << ToString(records[i]);
  }
  EXPECT_EQ(JsonText(kafka_.ReadTopic("pgslotd_positions").back().value.value_or(""), "lsn"),
            Confirmed("ke_json"));
}

// A snapshot into Kafka with exactly_once: each read line goes to its
// table's topic keyed by the row's primary key, so to the partition of the
// row's later changes; the start and end lines go to the table's topic too,
// partition 0, without a key. Once it is done the position record holds no
// snapshot.
TEST_F(KafkaSinkTest, ExactlyOnceSnapshotRowsFollowTheirKeysAndTheFramesGoToPartitionZero) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS kn_pub; DROP TABLE IF EXISTS kn;"
      "CREATE TABLE kn(id int PRIMARY KEY, v text);"
      "INSERT INTO kn SELECT i, 'v' || i FROM generate_series(1, 50) i;"
      "CREATE PUBLICATION kn_pub FOR TABLE kn");
  TempDir state("pgslotd-kafka-snapshot");
  auto w = StartSnapshotSlot("kn", SnapshotMode::kInitial, 10, state);
  const std::string topic = "kn_json.public.kn";
  ASSERT_EQ(kafka_.ReadTopicUntil(topic, 52).size(), 52u) << w->last_error();
  pg_->Exec("UPDATE kn SET v = 'changed' WHERE id <= 5");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("kn_json", end)) << w->last_error();
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(w->error().ok()) << w->error().message();

  std::vector<KafkaRecord> records = kafka_.ReadTopicUntil(topic, 57);
  ASSERT_EQ(records.size(), 57u) << "50 rows, a start and an end line, 5 updates";
  std::vector<std::string> frames;
  std::map<std::string, int32_t> read_partition;
  std::set<int32_t> partitions;
  for (const KafkaRecord& r : records) {
    const std::string op = JsonText(r.value.value_or(""), "op");
    if (op == "snapshot") {
      EXPECT_FALSE(r.key) << ToString(r);
      EXPECT_EQ(r.partition, 0) << ToString(r);
      frames.push_back(*r.value);
    } else if (op == "read") {
      ASSERT_TRUE(r.key) << ToString(r);
      EXPECT_TRUE(read_partition.emplace(*r.key, r.partition).second)
          << "read once: " << ToString(r);
      partitions.insert(r.partition);
    } else {
      ASSERT_EQ(op, "update") << ToString(r);
      ASSERT_TRUE(r.key && read_partition.count(*r.key)) << ToString(r);
      EXPECT_EQ(r.partition, read_partition[*r.key]) << "a row's read and change share a partition";
    }
  }
  EXPECT_EQ(read_partition.size(), 50u);
  EXPECT_GT(partitions.size(), 1u) << "rows spread over the partitions by key";
  EXPECT_EQ(frames, (std::vector<std::string>{
                        "{\"op\":\"snapshot\",\"event\":\"start\",\"schema\":\"public\",\"table\":"
                        "\"kn\"}",
                        "{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\",\"table\":"
                        "\"kn\",\"rows\":50}"}));
  std::vector<KafkaRecord> positions = kafka_.ReadTopic("pgslotd_positions");
  ASSERT_FALSE(positions.empty());
  EXPECT_EQ(ParsePosition(positions.back().value.value_or("")).snapshot, "")
      << ToString(positions.back());
  EXPECT_EQ(FormatLsn(PositionOf(positions.back().value.value_or(""))), Confirmed("kn_json"));
}

// pgslotd --snapshot's request, for a slot streaming into Kafka with
// exactly_once: the table asked for is read into its topic, and the request
// file is deleted once a committed position record holds the request.
TEST_F(KafkaSinkTest, ExactlyOnceARequestedSnapshotIsReadAndItsFileDeletedOnceCommitted) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS kr_pub; DROP TABLE IF EXISTS kr_a, kr_b;"
      "CREATE TABLE kr_a(id int PRIMARY KEY); CREATE TABLE kr_b(id int PRIMARY KEY);"
      "INSERT INTO kr_a SELECT generate_series(1, 20); INSERT INTO kr_b VALUES (1);"
      "CREATE PUBLICATION kr_pub FOR TABLE kr_a, kr_b");
  TempDir state("pgslotd-kafka-request");
  auto w = StartSnapshotSlot("kr", SnapshotMode::kOnRequest, 5, state);
  pg_->Exec("INSERT INTO kr_b VALUES (2)");
  ASSERT_TRUE(FlushReaches("kr_json", pg_->CurrentWalLsn())) << w->last_error();
  std::string warning;
  Result<std::string> request =
      WriteSnapshotRequest(state.path(), "kr_json", {{"public", "kr_a"}}, &warning);
  ASSERT_TRUE(request.ok()) << request.status().message();
  w->RequestSnapshot();
  EXPECT_TRUE(WaitFor([&] { return !FileExists(request.value()); }, seconds(60)))
      << "the request file stays: " << w->last_error();
  pg_->Exec("INSERT INTO kr_b VALUES (3)");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(FlushReaches("kr_json", end)) << w->last_error();
  w->RequestStop();
  w->Join();
  EXPECT_TRUE(w->error().ok()) << w->error().message();

  std::vector<KafkaRecord> a = kafka_.ReadTopicUntil("kr_json.public.kr_a", 22);
  ASSERT_EQ(a.size(), 22u) << "20 rows, a start and an end line";
  size_t reads = 0;
  size_t ends = 0;
  for (const KafkaRecord& r : a) {
    reads += JsonText(r.value.value_or(""), "op") == "read" ? 1 : 0;
    ends += r.value.value_or("") ==
                    "{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\",\"table\":"
                    "\"kr_a\",\"rows\":20}"
                ? 1
                : 0;
  }
  EXPECT_EQ(reads, 20u);
  EXPECT_EQ(ends, 1u);
  std::vector<KafkaRecord> b = kafka_.ReadTopicUntil("kr_json.public.kr_b", 2);
  ASSERT_EQ(b.size(), 2u) << "only the table asked for is read";
  const std::string id = request.value().substr(request.value().rfind('.') + 1);
  std::vector<KafkaRecord> positions = kafka_.ReadTopic("pgslotd_positions");
  bool named = false;
  for (const KafkaRecord& r : positions) {
    named = named || ParsePosition(r.value.value_or("")).snapshot.find(id) != std::string::npos;
  }
  EXPECT_TRUE(named) << "a committed position record held the request";
  ASSERT_FALSE(positions.empty());
  EXPECT_EQ(ParsePosition(positions.back().value.value_or("")).snapshot, "");
}

// A Kafka commit records the snapshot progress it was produced with: a
// progress set while the commit is under way (a request queued meanwhile)
// is not taken as recorded when that commit ends, but committed again.
// (The worker deletes a request file once a record holds its request.)
TEST_F(KafkaSinkTest, ACommitUnderWayIsNotTakenForTheRecordOfAProgressSetSinceItBegan) {
  SlotConfig c = JsonSlot("kc_json", "kc_pub");
  c.sink.exactly_once = true;
  c.sink.topic = "kc";
  KafkaSink sink(c);
  ASSERT_TRUE(sink.Open().ok());
  ExactlyOnceSink::StateKey key{"", "4242", "kc_json", kInvalidLsn, kInvalidLsn};
  std::string note;
  bool warn = false;
  Status recovered = Status::Ok();
  ASSERT_TRUE(WaitFor(
      [&] {
        Result<Lsn> r = sink.Recover(key, &note, &warn);
        recovered = r.status();
        return r.ok();
      },
      seconds(60)))
      << recovered.message();
  RecordBuffer buffer;
  buffer.bytes()->Append("x\n", 2);
  RecordInfo info;
  info.lsn = 0x100;
  info.unit_end = true;
  buffer.EndRecord(info);
  size_t taken = 0;
  ASSERT_TRUE(sink.Append(buffer, buffer.size(), &taken).ok());
  ASSERT_EQ(taken, 2u);
  std::vector<Sink::Range> ranges;
  ASSERT_TRUE(WaitFor(
      [&] {
        EXPECT_TRUE(sink.Sync().ok());
        sink.TakeCompleted(&ranges);
        return sink.in_flight() == 0;
      },
      seconds(60)));

  kafka_.InjectErrors("EndTxn", 3, "COORDINATOR_LOAD_IN_PROGRESS");
  sink.SetSnapshotProgress("queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0");
  Result<bool> first = sink.Checkpoint(2, 0x200);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_FALSE(first.value()) << "the commit ended at once: the test proves nothing";
  const std::string since =
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0 requests 1 "
      "00000001796600000000000000-1";
  sink.SetSnapshotProgress(since);
  Status checkpointed = Status::Ok();
  ASSERT_TRUE(WaitFor(
      [&] {
        Result<bool> r = sink.Checkpoint(2, 0x200);
        checkpointed = r.status();
        return r.ok() && r.value();
      },
      seconds(60)))
      << checkpointed.message();
  std::vector<KafkaRecord> positions = kafka_.ReadTopic("pgslotd_positions");
  ASSERT_EQ(positions.size(), 2u) << "the commit under way, then one with the newer progress";
  EXPECT_EQ(ParsePosition(positions.back().value.value_or("")).snapshot, since);
  EXPECT_EQ(PositionOf(positions.back().value.value_or("")), Lsn{0x200});
  EXPECT_TRUE(sink.Close().ok());
}

}  // namespace
}  // namespace pgslotd::test
