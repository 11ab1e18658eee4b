// snapshot: initial into a kafka sink with exactly_once, pgslotd killed
// with SIGKILL in the middle of each table while pgbench changes them: the
// snapshot goes on from the progress in the committed position record, and
// what the committed Kafka transactions hold has one start and one end line
// per table, no key read twice within a table, every transaction once, and,
// applied in order, exactly the tables' rows.
//
// What the mock can show (tests/kafka_harness.h): it writes no transaction
// markers, so a reader sees the records of aborted Kafka transactions too.
// The topic (one partition, the position topic as well) is therefore read
// as a whole and the committed transactions are picked out as pgslotd
// itself sees them at a restart: the records before a position record are
// committed with it; those after the last one a killed run produced are
// aborted. After each kill, before the next start, the test writes a marker
// record: the killed run's requests have all reached the mock by then (its
// sockets are closed, their bytes delivered), so the records between the
// last position record and the marker are exactly the aborted ones.
#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "fault_util.h"
#include "kafka_harness.h"
#include "sink/kafka_position.h"
#include "snapshot/snapshot_progress.h"
#include "snapshot_apply.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kDb[] = "fault_kafka_snapshot";
constexpr char kTopic[] = "fa_ksnap";
constexpr char kMarker[] = "test: the run before was killed";

// What the topic holds, as a read_committed consumer of a real cluster
// would see it.
struct Committed {
  std::string lines;  // the committed records' values, one per line
  std::vector<CommittedPosition> positions;
  size_t aborted = 0;  // records of aborted transactions
};

Committed ReadCommitted(const std::vector<KafkaRecord>& records, const std::string& position_key) {
  Committed c;
  std::string pending;
  size_t pending_records = 0;
  for (const KafkaRecord& r : records) {
    if (r.key && *r.key == position_key) {
      c.positions.push_back(ParsePosition(r.value.value_or("")));
      c.lines += pending;
      pending.clear();
      pending_records = 0;
    } else if (r.key && *r.key == kMarker) {
      c.aborted += pending_records;
      pending.clear();
      pending_records = 0;
    } else {
      pending += r.value.value_or("") + "\n";
      ++pending_records;
    }
  }
  c.aborted += pending_records;  // the last run's open transaction, aborted at its stop
  return c;
}

class KafkaSnapshotTest : public FaultTest {
 protected:
  void SetUp() override {
    FaultTest::SetUp();
    pg_->CreateDatabase(kDb);
    pg_->DropSlotIfExists("ksnap");
  }
  void TearDown() override { pg_->DropSlotIfExists("ksnap"); }
  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }

  AppliedTables Expected() {
    AppliedTables expected;
    for (const auto& r : pg_->Rows("SELECT id::text, v FROM ksn_a", kDb))
      expected["ksn_a"][r[0]] = r[1];
    for (const auto& r : pg_->Rows("SELECT k, n::text FROM ksn_b", kDb))
      expected["ksn_b"][r[0]] = r[1];
    return expected;
  }
};

// Tables of 3000 rows each, read 2 rows a chunk (so that each takes
// seconds, to be killed in), while pgbench, at 10 scripts (50 transactions)
// a second, updates, deletes, inserts and moves rows of both. The mock
// keeps about 5 MB a partition, some 20000 of these records: the test
// writes about half as many.
TEST_F(KafkaSnapshotTest, KilledInEachTableItGoesOnFromThePositionRecordAndCommitsEachRowOnce) {
  Sql("DROP TABLE IF EXISTS ksn_a, ksn_b; DROP PUBLICATION IF EXISTS ksn_pub");
  Sql("CREATE TABLE ksn_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("CREATE TABLE ksn_b (k text PRIMARY KEY, n numeric)");
  Sql("INSERT INTO ksn_a SELECT i, 'a' || i FROM generate_series(1, 3000) i");
  Sql("INSERT INTO ksn_b SELECT 'k' || i, i / 4.0 FROM generate_series(1, 3000) i");
  Sql("CREATE PUBLICATION ksn_pub FOR TABLE ksn_a, ksn_b");
  MockKafka kafka(dir_->path());
  MockKafka::Options mock;
  mock.topics = {{kTopic, 1}};
  kafka.Start(mock);
  const std::string sink = "{type: kafka, brokers: \"" + kafka.bootstrap() +
                           "\", topic: " + kTopic + ", position_topic: " + kTopic + "}";
  const std::string cfg = WriteConfig(FaultConfig(
      pg_->Conninfo(kDb), SlotYaml("ksnap", sink,
                                   "    create: true\n    format: json\n    snapshot: initial\n"
                                   "    snapshot_chunk_rows: 2\n    fsync_interval: 50ms\n"
                                   "    options: {publication_names: ksn_pub}\n",
                                   "pgoutput")));
  const std::string script = dir_->File("workload.sql");
  WriteFile(script,
            "\\set id random(1, 3000)\n"
            "UPDATE ksn_a SET v = v || '+' WHERE id = :id;\n"
            "\\set k random(1, 3000)\n"
            "UPDATE ksn_b SET n = n + 1 WHERE k = 'k' || :k;\n"
            "\\set gone random(1, 3000)\n"
            "DELETE FROM ksn_a WHERE id = :gone;\n"
            "\\set born random(3001, 6000)\n"
            "INSERT INTO ksn_a VALUES (:born, 'new') ON CONFLICT (id) DO NOTHING;\n"
            "\\set moved random(1, 3000)\n"
            "UPDATE ksn_a SET id = id + 1000000 WHERE id = :moved;\n");
  Subprocess workload;
  workload.Start({"/usr/lib/postgresql/15/bin/pgbench", "-n", "-c", "2", "-R", "10", "-T", "900",
                  "-f", script, pg_->Conninfo(kDb)});

  const std::string system_id = pg_->Scalar("SELECT system_identifier FROM pg_control_system()");
  const std::string position_key = PositionKey(system_id, "ksnap");
  // The progress the newest position record holds.
  auto recorded = [&] {
    SnapshotProgress progress;
    std::vector<KafkaRecord> records = kafka.ReadTopic(kTopic);
    for (auto r = records.rbegin(); r != records.rend(); ++r) {
      if (!r->key || *r->key != position_key) continue;
      std::string err;
      std::string text = ParsePosition(r->value.value_or("")).snapshot;
      EXPECT_TRUE(text.empty() || ParseSnapshotProgress(text, &progress, &err)) << err;
      break;
    }
    return progress;
  };
  auto mid_table = [&](const std::string& table) {
    SnapshotProgress now = recorded();
    return now.started && now.queue.front().second == table && now.rows >= 100;
  };
  std::string logs;
  ASSERT_NO_FATAL_FAILURE(KillInEachTable(cfg, {"ksn_a", "ksn_b"}, mid_table, milliseconds(100),
                                          seconds(120), &logs,
                                          [&] { kafka.Produce(kTopic, kMarker, "killed"); }));

  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor(
      [&] { return !p.Running() || p.Stderr().find("snapshot done: ") != std::string::npos; },
      seconds(120)))
      << p.Stderr();
  workload.Signal(SIGTERM);
  workload.Wait(seconds(60));
  Sql("UPDATE ksn_b SET n = -1 WHERE k = 'k1'");
  const std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(CatchUpAndStop(&p, "ksnap", end, seconds(180)));
  logs += p.Stderr();

  std::vector<KafkaRecord> records = kafka.ReadTopic(kTopic);
  ASSERT_FALSE(records.empty());
  ASSERT_EQ(records.front().offset, 0) << "the mock dropped the topic's oldest records";
  Committed got = ReadCommitted(records, position_key);
  Frames f = Examine(got.lines, {{"ksn_a", "id"}, {"ksn_b", "k"}});
  for (const char* t : {"ksn_a", "ksn_b"}) {
    EXPECT_EQ(f.starts[t], 1) << t;
    EXPECT_EQ(f.ends[t], 1) << t;
    EXPECT_EQ(f.end_rows[t], std::to_string(f.reads[t])) << t << ": the end line counts them all";
    EXPECT_EQ(f.keys_read_twice[t], 0) << t;
  }
  EXPECT_EQ(f.out_of_frame, 0);
  EXPECT_EQ(f.commits_back, 0) << "a transaction was committed twice";
  AppliedTables applied = ApplyLines(got.lines, {{"ksn_a", {"id", "v"}}, {"ksn_b", {"k", "n"}}});
  AppliedTables expected = Expected();
  EXPECT_EQ(applied["ksn_a"].size(), expected["ksn_a"].size());
  EXPECT_EQ(applied["ksn_b"].size(), expected["ksn_b"].size());
  EXPECT_TRUE(applied == expected) << "the committed lines applied in order differ from the tables";

  const std::string described = "kafka " + kafka.bootstrap() + " topic " + kTopic;
  for (const char* t : {"ksn_a", "ksn_b"}) {
    EXPECT_NE(logs.find("snapshot: going on from where " + described + " ends: table public." + t +
                        " after its first "),
              std::string::npos)
        << LinesWith(logs, {"snapshot"});
  }
  ASSERT_FALSE(got.positions.empty());
  EXPECT_EQ(got.positions.back().snapshot, "") << "done: the position holds no snapshot";
  EXPECT_EQ(FormatLsn(got.positions.back().lsn), pg_->ConfirmedFlushLsn("ksnap"));
  std::cout << "[ fault    ] " << f.reads["ksn_a"] << " + " << f.reads["ksn_b"]
            << " read lines committed, " << got.aborted << " records aborted, "
            << got.positions.size() << " Kafka transactions, 2 kills" << std::endl;
}

}  // namespace
}  // namespace pgslotd::test::fault
