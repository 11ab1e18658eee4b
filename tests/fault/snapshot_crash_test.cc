// snapshot: initial into a file, with pgslotd killed with SIGKILL in the
// middle of each table while a workload changes them: the snapshot goes on
// where the file's state record says, and the file holds one start and one
// end line per table, no key read twice within a table, every transaction
// once, and, applied in order, exactly the tables' rows. The same for a
// snapshot of one table asked for with pgslotd --snapshot while the daemon
// streams, killed once, with its request file left as a crash between the
// record and the file's deletion leaves it.
#include <signal.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "fault_util.h"
#include "json_parse.h"
#include "sink/state_record.h"
#include "snapshot/snapshot_progress.h"
#include "snapshot_apply.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kDb[] = "fault_snapshot";

// The snapshot progress the slot's state record holds (empty: none, or no
// record).
SnapshotProgress Recorded(const std::string& record_file) {
  SinkStateRecord record;
  bool found = false;
  SnapshotProgress progress;
  std::string err;
  if (ReadStateRecord(record_file, &record, &found).ok() && found && !record.snapshot.empty()) {
    EXPECT_TRUE(ParseSnapshotProgress(record.snapshot, &progress, &err)) << err;
  }
  return progress;
}

class SnapshotCrashTest : public FaultTest {
 protected:
  void SetUp() override {
    FaultTest::SetUp();
    pg_->CreateDatabase(kDb);
    pg_->DropSlotIfExists("snapcrash");
  }
  void TearDown() override { pg_->DropSlotIfExists("snapcrash"); }
  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }

  // Two tables in a publication: `a_rows` rows keyed by int, `b_rows` by
  // text.
  void MakeTables(int a_rows, int b_rows) {
    Sql("DROP TABLE IF EXISTS snc_a, snc_b; DROP PUBLICATION IF EXISTS snc_pub");
    Sql("CREATE TABLE snc_a (id int PRIMARY KEY, v text NOT NULL)");
    Sql("CREATE TABLE snc_b (k text PRIMARY KEY, n numeric)");
    Sql("INSERT INTO snc_a SELECT i, 'a' || i FROM generate_series(1, " + std::to_string(a_rows) +
        ") i");
    Sql("INSERT INTO snc_b SELECT 'k' || i, i / 4.0 FROM generate_series(1, " +
        std::to_string(b_rows) + ") i");
    Sql("CREATE PUBLICATION snc_pub FOR TABLE snc_a, snc_b");
  }
  std::string Config(const std::string& file, const std::string& snapshot = "initial") {
    return WriteConfig(
        FaultConfig(pg_->Conninfo(kDb),
                    SlotYaml("snapcrash", FileSinkYaml(file),
                             "    create: true\n    format: json\n    snapshot: " + snapshot +
                                 "\n    snapshot_chunk_rows: 1000\n    fsync_interval: 50ms\n"
                                 "    options: {publication_names: snc_pub}\n",
                             "pgoutput")));
  }
  // Starts pgbench changing both tables: updates, deletes, inserts and
  // primary-key moves.
  void StartWorkload(Subprocess* workload) {
    const std::string script = dir_->File("workload.sql");
    WriteFile(script,
              "\\set id random(1, 200000)\n"
              "UPDATE snc_a SET v = v || '+' WHERE id = :id;\n"
              "\\set k random(1, 300000)\n"
              "UPDATE snc_b SET n = n + 1 WHERE k = 'k' || :k;\n"
              "\\set gone random(1, 200000)\n"
              "DELETE FROM snc_a WHERE id = :gone;\n"
              "\\set born random(200001, 400000)\n"
              "INSERT INTO snc_a VALUES (:born, 'new') ON CONFLICT (id) DO NOTHING;\n"
              "\\set moved random(1, 200000)\n"
              "UPDATE snc_a SET id = id + 1000000 WHERE id = :moved;\n");
    workload->Start({"/usr/lib/postgresql/15/bin/pgbench", "-n", "-c", "2", "-T", "900", "-f",
                     script, pg_->Conninfo(kDb)});
  }
  // The tables as the server has them.
  AppliedTables Expected() {
    AppliedTables expected;
    for (const auto& r : pg_->Rows("SELECT id::text, v FROM snc_a", kDb))
      expected["snc_a"][r[0]] = r[1];
    for (const auto& r : pg_->Rows("SELECT k, n::text FROM snc_b", kDb))
      expected["snc_b"][r[0]] = r[1];
    return expected;
  }
  // Makes a last change and waits until the slot is acknowledged past it
  // (so the file holds everything before it); then stops `p`.
  void DrainAndStop(Subprocess* p) {
    Sql("UPDATE snc_b SET n = -1 WHERE k = 'k1'");
    const std::string end = pg_->CurrentWalLsn();
    ASSERT_TRUE(CatchUpAndStop(p, "snapcrash", end, seconds(180)));
  }
};

// Tables of 200000 and 300000 rows, read 1000 rows a chunk while pgbench
// updates, deletes and inserts rows of both; pgslotd is killed once while
// it reads each table, and started again each time.
TEST_F(SnapshotCrashTest, KilledInEachTableItGoesOnWhereTheFileEndsAndHoldsEachRowOnce) {
  MakeTables(200000, 300000);
  const std::string file = dir_->File("snap.jsonl");
  const std::string cfg = Config(file);
  Subprocess workload;
  StartWorkload(&workload);

  // Each kill comes once the record says the file holds part of the table:
  // pgslotd is frozen when the record says so, and killed if it still does
  // (a record is replaced every fsync_interval; the tables take seconds).
  const std::string record_file = dir_->File("snapcrash.state");
  auto mid_table = [&](const std::string& table) {
    SnapshotProgress now = Recorded(record_file);
    return now.started && now.queue.front().second == table && now.rows >= 20000;
  };
  std::string logs;
  ASSERT_NO_FATAL_FAILURE(
      KillInEachTable(cfg, {"snc_a", "snc_b"}, mid_table, milliseconds(1), seconds(300), &logs));

  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor(
      [&] { return !p.Running() || p.Stderr().find("snapshot done: ") != std::string::npos; },
      seconds(300)))
      << p.Stderr();
  workload.Signal(SIGTERM);
  workload.Wait(seconds(60));
  DrainAndStop(&p);
  logs += p.Stderr();

  const std::string out = ReadFile(file);
  Frames f = Examine(out, {{"snc_a", "id"}, {"snc_b", "k"}});
  for (const char* t : {"snc_a", "snc_b"}) {
    EXPECT_EQ(f.starts[t], 1) << t;
    EXPECT_EQ(f.ends[t], 1) << t;
    EXPECT_EQ(f.end_rows[t], std::to_string(f.reads[t])) << t << ": the end line counts them all";
    EXPECT_EQ(f.keys_read_twice[t], 0) << t;
  }
  EXPECT_EQ(f.out_of_frame, 0);
  EXPECT_EQ(f.commits_back, 0) << "a transaction was written twice";
  AppliedTables applied = ApplyLines(out, {{"snc_a", {"id", "v"}}, {"snc_b", {"k", "n"}}});
  AppliedTables expected = Expected();
  EXPECT_EQ(applied["snc_a"].size(), expected["snc_a"].size());
  EXPECT_EQ(applied["snc_b"].size(), expected["snc_b"].size());
  EXPECT_TRUE(applied == expected) << "the lines applied in order differ from the tables";

  // Each restart went on from the record, in the table it was killed in.
  EXPECT_NE(logs.find("snapshot: going on from where file " + file +
                      " ends: table public.snc_a after its first "),
            std::string::npos)
      << LinesWith(logs, {"snapshot"});
  EXPECT_NE(logs.find("snapshot: going on from where file " + file +
                      " ends: table public.snc_b after its first "),
            std::string::npos)
      << LinesWith(logs, {"snapshot"});
  // Done: the record holds no snapshot any more.
  const std::string record = ReadFile(dir_->File("snapcrash.state"));
  EXPECT_NE(record.find("\nversion 2\n"), std::string::npos) << record;
  std::cout << "[ fault    ] " << f.reads["snc_a"] << " + " << f.reads["snc_b"] << " read lines, "
            << out.size() << " bytes, 2 kills" << std::endl;
}

// A file whose record is moved aside (with the file) is a new output: the
// next run takes a new snapshot of every table, on the slot that exists.
TEST_F(SnapshotCrashTest, AFileWithoutARecordTakesANewSnapshot) {
  MakeTables(3000, 500);
  const std::string file = dir_->File("snap.jsonl");
  const std::string cfg = Config(file);
  for (int run = 1; run <= 2; ++run) {
    Subprocess p;
    StartDaemon(cfg, &p);
    ASSERT_TRUE(WaitFor(
        [&] { return !p.Running() || p.Stderr().find("snapshot done: ") != std::string::npos; },
        seconds(120)))
        << p.Stderr();
    Sql("UPDATE snc_a SET v = 'run " + std::to_string(run) + "' WHERE id = 7");
    DrainAndStop(&p);
    const std::string out = ReadFile(file);
    Frames f = Examine(out, {{"snc_a", "id"}, {"snc_b", "k"}});
    EXPECT_EQ(f.starts["snc_a"], 1) << "run " << run;
    EXPECT_EQ(f.reads["snc_b"], 500u) << "run " << run;
    EXPECT_TRUE(ApplyLines(out, {{"snc_a", {"id", "v"}}, {"snc_b", {"k", "n"}}}) == Expected())
        << "run " << run;
    if (run == 2) {
      EXPECT_NE(p.Stderr().find("snapshot: reading every table of the slot's publications (no "
                                "position is recorded for file " +
                                file + ")"),
                std::string::npos)
          << p.Stderr();
    }
    ASSERT_EQ(::rename(file.c_str(), (file + ".old").c_str()), 0);
    ASSERT_EQ(
        ::rename(dir_->File("snapcrash.state").c_str(), dir_->File("snapcrash.state.old").c_str()),
        0);
  }
}

// pgslotd --snapshot of one table while the daemon streams into a file
// under the workload; pgslotd is killed once in the table, and its request
// file is put back as a crash between the record that holds the request
// and the file's deletion would leave it: the record's progress names it,
// so it is deleted, not carried out twice.
TEST_F(SnapshotCrashTest, OnDemandOneTableKilledOnceIsReadOnceAndReplaysToTheTable) {
  MakeTables(100000, 3000);
  const std::string file = dir_->File("snap.jsonl");
  const std::string cfg = Config(file, "on_request");
  Subprocess first;
  StartDaemon(cfg, &first);
  ASSERT_TRUE(WaitFor(
      [&] {
        return !first.Running() || first.Stderr().find("streaming from") != std::string::npos;
      },
      seconds(60)))
      << first.Stderr();
  Subprocess workload;
  StartWorkload(&workload);

  Subprocess ask;
  ask.Start(
      {PgslotdBinary(), "--config", cfg, "--snapshot", "snapcrash", "--table", "Public.SNC_A"});
  ASSERT_EQ(ask.Wait(seconds(30)), 0) << ask.Stderr();
  const std::string said = ask.Stdout();
  const std::string prefix = "pgslotd: snapshot of slot snapcrash requested (";
  ASSERT_EQ(said.rfind(prefix, 0), 0u) << said;
  const std::string request = said.substr(prefix.size(), said.find(')') - prefix.size());
  EXPECT_EQ(request.rfind(dir_->File("snapcrash.snapshot-request."), 0), 0u) << request;
  EXPECT_NE(said.find("\nok: slot snapcrash takes the request\n"), std::string::npos) << said;
  // What the command wrote (the daemon may have taken and deleted it by
  // now; tests/snapshot_request_test.cc checks the text).
  const std::string request_text = "pgslotd-snapshot-request 1\ntable public snc_a\n";

  const std::string record_file = dir_->File("snapcrash.state");
  auto mid_table = [&] {
    SnapshotProgress now = Recorded(record_file);
    return now.started && now.queue.front().second == "snc_a" && now.rows >= 20000;
  };
  ASSERT_TRUE(
      WaitFor([&] { return mid_table() || !first.Running(); }, seconds(300), milliseconds(5)))
      << first.Stderr();
  ASSERT_TRUE(first.Signal(SIGSTOP)) << first.Stderr();
  SnapshotProgress at_kill = Recorded(record_file);
  ASSERT_TRUE(mid_table()) << "the record moved past snc_a before pgslotd was frozen";
  ASSERT_TRUE(first.Signal(SIGKILL));
  ASSERT_EQ(first.Wait(seconds(10)), 128 + SIGKILL);
  std::string logs = first.Stderr();
  EXPECT_EQ(at_kill.requests, std::vector<std::string>{request.substr(request.rfind('.') + 1)});
  if (!FileExists(request)) WriteFile(request, request_text);

  Subprocess second;
  StartDaemon(cfg, &second);
  ASSERT_TRUE(WaitFor(
      [&] {
        return !second.Running() || second.Stderr().find("snapshot done: ") != std::string::npos;
      },
      seconds(300)))
      << second.Stderr();
  workload.Signal(SIGTERM);
  workload.Wait(seconds(60));
  DrainAndStop(&second);
  logs += second.Stderr();

  const std::string out = ReadFile(file);
  Frames f = Examine(out, {{"snc_a", "id"}, {"snc_b", "k"}});
  EXPECT_EQ(f.starts["snc_a"], 1);
  EXPECT_EQ(f.ends["snc_a"], 1);
  EXPECT_EQ(f.end_rows["snc_a"], std::to_string(f.reads["snc_a"]));
  EXPECT_EQ(f.keys_read_twice["snc_a"], 0);
  EXPECT_EQ(f.starts["snc_b"], 0) << "only the table asked for is read";
  EXPECT_EQ(f.reads["snc_b"], 0u);
  EXPECT_EQ(f.out_of_frame, 0);
  EXPECT_EQ(f.commits_back, 0) << "a transaction was written twice";
  AppliedTables applied = ApplyLines(out, {{"snc_a", {"id", "v"}}, {"snc_b", {"k", "n"}}});
  AppliedTables expected = Expected();
  EXPECT_EQ(applied["snc_a"].size(), expected["snc_a"].size());
  EXPECT_TRUE(applied["snc_a"] == expected["snc_a"])
      << "the lines applied in order differ from the table";

  EXPECT_NE(logs.find("snapshot requested (" + request + "): reading table public.snc_a"),
            std::string::npos)
      << LinesWith(logs, {"snapshot"});
  EXPECT_NE(logs.find("snapshot: going on from where file " + file +
                      " ends: table public.snc_a after its first "),
            std::string::npos)
      << LinesWith(logs, {"snapshot"});
  EXPECT_EQ(CountOf(logs, "snapshot requested ("), 1u) << LinesWith(logs, {"snapshot"});
  EXPECT_FALSE(FileExists(request)) << "the request is deleted once a record holds it";
  const std::string record = ReadFile(record_file);
  EXPECT_NE(record.find("\nversion 2\n"), std::string::npos) << record;
  std::cout << "[ fault    ] " << f.reads["snc_a"] << " read lines on request, 1 kill" << std::endl;
}

}  // namespace
}  // namespace pgslotd::test::fault
