// The kafka sink with exactly_once under crashes and broker faults:
// pgslotd killed with SIGKILL twelve times while four writers commit, a
// broker taken down and brought back, errors injected on Produce and on
// EndTxn. Checked against the server's own decoding of a reference slot.
//
// What the mock can show (tests/kafka_harness.h): it writes no transaction
// markers, so a reader sees the records of aborted and never-committed
// Kafka transactions too. The topic is therefore read as a whole, and what
// it holds is checked against pgslotd's committed-position records, which
// go to the same partition here (position_topic is the data topic), in
// order with the data:
//   - every transaction the server committed is there whole, and the first
//     whole copies are in commit order: nothing is lost;
//   - a transaction seen whole again later was not covered by a position
//     record between its copies: nothing a Kafka transaction committed
//     (with its position) is produced again;
//   - position records never go backwards, and the last is what the slot
//     confirmed: nothing is acknowledged that is not in Kafka.
// What a real broker adds (aborted transactions hidden from read_committed
// consumers, fencing) is not tested here; see docs/operations.md.
#include <signal.h>
#include <sys/stat.h>

#include <random>

#include "fault_util.h"
#include "kafka_harness.h"
#include "pg/lsn.h"
#include "sink/kafka_position.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string HeaderOf(const KafkaRecord& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "";
}

// What the topic holds, read in offset order.
struct TopicAccount {
  std::vector<Txn> first_copies;  // whole transactions, each the first time
  size_t repeats = 0;             // whole transactions seen again
  size_t partial = 0;             // cut before their COMMIT (a kill, an abort)
  size_t positions = 0;
  Lsn last_position = kInvalidLsn;
  std::vector<std::string> problems;
};

class TopicReader {
 public:
  void Add(const KafkaRecord& r) {
    if (r.key) return Position(r);
    const std::string line = r.value.value_or("");
    if (line.rfind("BEGIN ", 0) == 0) {
      if (open_) ++account_.partial;
      cur_ = Txn{line.substr(6), line + "\n", false};
      open_ = true;
    } else if (open_ && line.rfind("table ", 0) == 0) {
      cur_.text += line + "\n";
    } else if (open_ && line == "COMMIT " + cur_.xid) {
      cur_.text += line + "\n";
      cur_.complete = true;
      open_ = false;
      Whole(ParseLsn(HeaderOf(r, "lsn")).value_or(kInvalidLsn));
    } else {
      account_.problems.push_back("a stray record at offset " + std::to_string(r.offset) + ": " +
                                  line);
    }
  }
  TopicAccount Finish() {
    if (open_) ++account_.partial;
    return account_;
  }

 private:
  void Position(const KafkaRecord& r) {
    Lsn lsn = PositionOf(r.value.value_or(""));
    if (lsn < account_.last_position) {
      account_.problems.push_back("the position record at offset " + std::to_string(r.offset) +
                                  " goes back to " + FormatLsn(lsn));
    }
    account_.last_position = std::max(account_.last_position, lsn);
    positions_.push_back(lsn);
    ++account_.positions;
  }
  void Whole(Lsn commit) {
    auto seen = first_seen_.find(cur_.xid);
    if (seen == first_seen_.end()) {
      first_seen_[cur_.xid] = positions_.size();
      account_.first_copies.push_back(cur_);
      return;
    }
    ++account_.repeats;
    for (size_t i = seen->second; i < positions_.size(); ++i) {
      if (positions_[i] >= commit) {
        account_.problems.push_back("transaction " + cur_.xid + " (commit " + FormatLsn(commit) +
                                    ") produced again after position record " +
                                    FormatLsn(positions_[i]) + " covered it");
        break;
      }
    }
  }

  TopicAccount account_;
  std::vector<Lsn> positions_;
  std::map<std::string, size_t> first_seen_;  // xid -> positions_ seen before
  Txn cur_;
  bool open_ = false;
};

class KafkaCrashTest : public FaultTest {
 protected:
  // Whether `slot`'s confirmed position has moved past `lsn`.
  bool Moved(const std::string& slot, const std::string& lsn) {
    return pg_->Scalar("SELECT confirmed_flush_lsn > '" + lsn +
                       "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + slot + "'") ==
           "t";
  }
};

TEST_F(KafkaCrashTest, TwelveKillNinesABrokerDownAndInjectedErrorsRepeatNoCommittedTransaction) {
  const std::string db = "fault_kafka";
  const std::string topic = "fa_kafka";
  MockKafka kafka(dir_->path());
  MockKafka::Options mock;
  mock.topics = {{topic, 1}};  // led by broker 1
  kafka.Start(mock);
  pg_->CreateDatabase(db);
  Workload::CreateTable(pg_, "kafka_t", db);
  FreshSlotsIn(db, {"fa_kafka", "fa_kafka_ref"});
  const std::string sink = "{type: kafka, brokers: \"" + kafka.bootstrap() + "\", topic: " + topic +
                           ", position_topic: " + topic + ", transaction_records: 40}";
  const std::string cfg = WriteConfig(
      FaultConfig(pg_->Conninfo(db),
                  SlotYaml("fa_kafka", sink, "    fsync_interval: 100ms\n" + XidOptionsYaml())));

  const uint64_t seed = FaultSeed();
  std::mt19937_64 rng(seed);
  // Slower writers than the other crash tests: see the mock's limit below.
  Workload work({pg_->Conninfo(db), "kafka_t", 4, seed, milliseconds(40)});
  work.Start();
  ASSERT_TRUE(work.WaitMore(20, seconds(30))) << work.first_error();

  // Each kill hits a daemon that has committed a Kafka transaction in this
  // run (the slot's confirmed position moved), after a random delay.
  constexpr int kKills = 12;
  std::string delays;
  for (int k = 0; k < kKills; ++k) {
    const std::string before = pg_->ConfirmedFlushLsn("fa_kafka");
    if (k == 3) kafka.InjectErrors("Produce", 4, "NOT_LEADER_FOR_PARTITION");
    if (k == 5) kafka.InjectErrors("EndTxn", 2, "COORDINATOR_NOT_AVAILABLE");
    if (k == 9) kafka.InjectErrors("EndTxn", 1, "INVALID_TXN_STATE");
    Subprocess p;
    StartDaemon(cfg, &p);
    ASSERT_TRUE(WaitFor([&] { return Moved("fa_kafka", before) || !p.Running(); }, seconds(60)))
        << "run " << k + 1 << " committed nothing:\n"
        << p.Stderr();
    if (k == 7) {
      // The partition's leader goes away mid-stream and comes back: nothing
      // is acknowledged meanwhile, and the run goes on.
      kafka.Down(1);
      std::this_thread::sleep_for(milliseconds(1500));
      kafka.Up(1);
      const std::string held = pg_->ConfirmedFlushLsn("fa_kafka");
      ASSERT_TRUE(WaitFor([&] { return Moved("fa_kafka", held); }, seconds(60)))
          << "no progress after the broker came back:\n"
          << p.Stderr();
    }
    if (k == 10) kafka.Down(1);  // killed while its broker is down
    const int delay = static_cast<int>(rng() % 401);
    delays += (k ? "," : "") + std::to_string(delay);
    std::this_thread::sleep_for(milliseconds(delay));  // a random point of the stream
    ASSERT_TRUE(p.Running()) << "run " << k + 1 << " ended by itself:\n" << p.Stderr();
    ASSERT_TRUE(p.Signal(SIGKILL));
    ASSERT_EQ(p.Wait(seconds(10)), 128 + SIGKILL);
    if (k == 10) kafka.Up(1);
  }
  std::cout << "[ fault    ] kill delays after the first commit (ms): " << delays << std::endl;

  work.Stop();
  EXPECT_EQ(work.failures(), 0u) << work.first_error();
  const std::string end = pg_->CurrentWalLsn();
  Subprocess last;
  ASSERT_EQ(RunToEnd(cfg, end, &last), 0);

  TopicReader reader;
  std::vector<KafkaRecord> records = kafka.ReadTopic(topic);
  for (const KafkaRecord& r : records) reader.Add(r);
  // The mock keeps about 5 MB per partition and drops the oldest records
  // beyond that (librdkafka 2.0's rdkafka_mock): the workload stays below it.
  ASSERT_FALSE(records.empty());
  ASSERT_EQ(records.front().offset, 0) << "the mock dropped the topic's oldest records";
  TopicAccount got = reader.Finish();
  ParsedOutput want = ParseTxns(Reference("fa_kafka_ref", end, XidOptions(), db));
  ASSERT_GT(want.txns.size(), 100u) << "too little workload to prove anything";
  EXPECT_TRUE(got.problems.empty())
      << got.problems.size() << " problems, the first: " << got.problems.front();
  ASSERT_EQ(got.first_copies.size(), want.txns.size()) << "every committed transaction, once";
  for (size_t i = 0; i < want.txns.size(); ++i) {
    ASSERT_EQ(got.first_copies[i].text, want.txns[i].text)
        << "transaction " << i << " of " << want.txns.size();
  }
  EXPECT_TRUE(FlushAtLeast("fa_kafka", end));
  EXPECT_EQ(FormatLsn(got.last_position), pg_->ConfirmedFlushLsn("fa_kafka"))
      << "the last position record is what the slot confirmed";
  std::cout << "[ fault    ] " << kKills << " kills: " << want.txns.size() << " transactions, "
            << got.repeats << " repeated whole (from uncommitted Kafka transactions), "
            << got.partial << " cut, " << got.positions << " Kafka transactions committed"
            << std::endl;
}

// A standby on another host: a second pgslotd on the same slot (its own
// state and runtime directories) waits while the first one streams, and
// does not touch Kafka meanwhile (it would fence the first one's
// producer); once the first is killed it takes over from the committed
// position, and the topic still holds every transaction once.
TEST_F(KafkaCrashTest, AStandbyWaitsForTheSlotWithoutTouchingKafkaThenTakesOver) {
  const std::string db = "fault_kafka_standby";
  const std::string topic = "fa_standby";
  MockKafka kafka(dir_->path());
  MockKafka::Options mock;
  mock.topics = {{topic, 1}};
  kafka.Start(mock);
  pg_->CreateDatabase(db);
  Workload::CreateTable(pg_, "standby_t", db);
  FreshSlotsIn(db, {"fa_standby", "fa_standby_ref"});
  const std::string slot = SlotYaml("fa_standby",
                                    "{type: kafka, brokers: \"" + kafka.bootstrap() +
                                        "\", topic: " + topic + ", position_topic: " + topic + "}",
                                    "    fsync_interval: 100ms\n" + XidOptionsYaml());
  const std::string primary_cfg = WriteConfig(FaultConfig(pg_->Conninfo(db), slot), "a.yaml");
  const std::string standby_dir = dir_->File("standby");
  ASSERT_EQ(::mkdir(standby_dir.c_str(), 0700), 0);
  const std::string standby_cfg =
      WriteConfig("connection: \"" + pg_->Conninfo(db) +
                      "\"\nstatus_interval: 1s\nstate_directory: " + standby_dir +
                      "\nruntime_directory: " + standby_dir + "\nslots:\n" + slot,
                  "b.yaml");

  Workload work({pg_->Conninfo(db), "standby_t", 4, FaultSeed(), milliseconds(40)});
  work.Start();
  ASSERT_TRUE(work.WaitMore(20, seconds(30))) << work.first_error();
  const std::string start = pg_->ConfirmedFlushLsn("fa_standby");
  Subprocess primary;
  StartDaemon(primary_cfg, &primary);
  ASSERT_TRUE(
      WaitFor([&] { return Moved("fa_standby", start) || !primary.Running(); }, seconds(60)))
      << primary.Stderr();
  Subprocess standby;
  StartDaemon(standby_cfg, &standby);
  ASSERT_TRUE(WaitFor(
      [&] {
        return standby.Stderr().find("is in use by another process") != std::string::npos ||
               !standby.Running();
      },
      seconds(60)))
      << standby.Stderr();
  EXPECT_EQ(standby.Stderr().find("committed Kafka transactions hold"), std::string::npos)
      << "the standby read the position (and fenced the producer) while the slot was in use";

  ASSERT_TRUE(primary.Signal(SIGKILL));
  ASSERT_EQ(primary.Wait(seconds(10)), 128 + SIGKILL);
  const std::string held = pg_->ConfirmedFlushLsn("fa_standby");
  ASSERT_TRUE(WaitFor([&] { return Moved("fa_standby", held) || !standby.Running(); }, seconds(90)))
      << "the standby did not take over:\n"
      << standby.Stderr();
  work.Stop();
  EXPECT_EQ(work.failures(), 0u) << work.first_error();
  const std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(CatchUpAndStop(&standby, "fa_standby", end));
  EXPECT_NE(standby.Stderr().find("committed Kafka transactions hold"), std::string::npos)
      << standby.Stderr();

  TopicReader reader;
  for (const KafkaRecord& r : kafka.ReadTopic(topic)) reader.Add(r);
  TopicAccount got = reader.Finish();
  ParsedOutput want = ParseTxns(Reference("fa_standby_ref", end, XidOptions(), db));
  EXPECT_TRUE(got.problems.empty())
      << got.problems.size() << " problems, the first: " << got.problems.front();
  ASSERT_EQ(got.first_copies.size(), want.txns.size()) << "every committed transaction, once";
  for (size_t i = 0; i < want.txns.size(); ++i) {
    ASSERT_EQ(got.first_copies[i].text, want.txns[i].text) << "transaction " << i;
  }
}

}  // namespace
}  // namespace pgslotd::test::fault
