// snapshot: initial in the real daemon: a slot pgslotd creates reads every
// table of its publications while a workload changes them, and a consumer
// that applies the lines in order ends up with exactly the tables' rows.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "json_parse.h"
#include "snapshot_apply.h"
#include "test_util.h"

namespace pgslotd::test {
namespace {

constexpr char kDb[] = "snapshot_daemon_it";

class SnapshotDaemonTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    pg_->CreateDatabase(kDb);
    pg_->DropSlotIfExists("snapd");
  }
  void TearDown() override { pg_->DropSlotIfExists("snapd"); }
  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }
  void RunUnderWorkload(bool lose_session);
};

// Runs the snapshot of two tables under a workload; `lose_session`: the
// slot's walsender is ended once, in the middle of the first table.
void SnapshotDaemonTest::RunUnderWorkload(bool lose_session) {
  Sql("DROP TABLE IF EXISTS snd_a, snd_b; DROP PUBLICATION IF EXISTS snd_pub");
  Sql("CREATE TABLE snd_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("CREATE TABLE snd_b (k text PRIMARY KEY, n numeric, flag bool)");
  Sql("INSERT INTO snd_a SELECT i, 'a' || i FROM generate_series(1, 20000) i");
  Sql("INSERT INTO snd_b SELECT 'k' || i, i / 4.0, i % 2 = 0 FROM generate_series(1, 2000) i");
  Sql("CREATE PUBLICATION snd_pub FOR TABLE snd_a, snd_b");

  std::string metrics = dir_->File("metrics.prom");
  std::string cfg =
      WriteConfig(Header(kDb, "monitor_interval: 100ms\nmetrics_file: " + metrics + "\n") +
                  SlotYaml("snapd", "{type: stdout}",
                           "    create: true\n    format: json\n    snapshot: initial\n"
                           "    snapshot_chunk_rows: 500\n"
                           "    options: {publication_names: snd_pub}\n",
                           "pgoutput"));
  // Two clients update rows at random all along, so that transactions
  // commit while chunks are read (pgbench, from the server's binaries).
  std::string script = dir_->File("workload.sql");
  WriteFile(script,
            "\\set id random(1, 20000)\n"
            "UPDATE snd_a SET v = v || '+' WHERE id = :id;\n"
            "\\set k random(1, 2000)\n"
            "UPDATE snd_b SET n = n + 1 WHERE k = 'k' || :k;\n");
  Subprocess workload;
  workload.Start({"/usr/lib/postgresql/15/bin/pgbench", "-n", "-c", "2", "-T", "600", "-f", script,
                  pg_->Conninfo(kDb)});
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  // The workload runs until both tables' end lines are out.
  auto both_ended = [&] {
    std::string out = p.Stdout();
    return out.find("\"event\":\"end\",\"schema\":\"public\",\"table\":\"snd_a\"") !=
               std::string::npos &&
           out.find("\"event\":\"end\",\"schema\":\"public\",\"table\":\"snd_b\"") !=
               std::string::npos;
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  // To lose the session in the middle of the snapshot, snd_b is locked
  // once the slot exists (not before: creating a slot waits for every
  // transaction that holds an xid, and a lock like this takes one) and
  // while snd_a, ten times its size, is still being read: snd_b's first
  // chunk then waits for the lock while the walsender is ended, and goes on
  // once the slot streams again.
  std::unique_ptr<PGconn, decltype(&PQfinish)> holder(nullptr, PQfinish);
  if (lose_session) {
    holder.reset(PQconnectdb(pg_->Conninfo(kDb).c_str()));
    ASSERT_EQ(PQstatus(holder.get()), CONNECTION_OK) << PQerrorMessage(holder.get());
    ASSERT_TRUE(WaitFor(
        [&] { return p.Stderr().find("created logical replication slot") != std::string::npos; },
        std::chrono::seconds(60), std::chrono::milliseconds(1)))
        << p.Stderr();
    PQclear(PQexec(holder.get(), "BEGIN"));
    PGresult* r = PQexec(holder.get(), "LOCK TABLE snd_b IN ACCESS EXCLUSIVE MODE");
    ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(holder.get());
    PQclear(r);
    ASSERT_EQ(p.Stdout().find("\"event\":\"start\",\"schema\":\"public\",\"table\":\"snd_b\""),
              std::string::npos)
        << "snd_b was read before it could be locked";
  }
  auto chunk_waits_for_lock = [&] {
    return pg_->Scalar(
               "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
               "'pgslotd_snapd_snapshot' AND wait_event_type = 'Lock'",
               kDb) == "1";
  };
  bool lost = false;
  for (int i = 0; !both_ended(); ++i) {
    ASSERT_TRUE(p.Running()) << p.Stderr();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << p.Stderr();
    if (holder && chunk_waits_for_lock()) {
      lost = pg_->Scalar(
                 "SELECT count(pg_terminate_backend(active_pid)) FROM "
                 "pg_replication_slots WHERE slot_name = 'snapd'",
                 kDb) == "1";
      ASSERT_TRUE(lost);
      ASSERT_TRUE(
          WaitFor([&] { return p.Stderr().find("streaming again from") != std::string::npos; },
                  std::chrono::seconds(60)))
          << p.Stderr();
      PQclear(PQexec(holder.get(), "COMMIT"));
      holder.reset();
    }
    int id = 1 + (i * 37) % 20000;
    Sql("UPDATE snd_a SET v = v || '+' WHERE id = " + std::to_string(id));
    if (!holder) {
      Sql("UPDATE snd_b SET n = n + 1 WHERE k = 'k" + std::to_string(1 + (i * 53) % 2000) + "'");
    }
    if (i % 4 == 0) Sql("DELETE FROM snd_a WHERE id = " + std::to_string(20000 - i));
    if (i % 3 == 0) Sql("INSERT INTO snd_a VALUES (" + std::to_string(100000 + i) + ", 'new')");
    if (i % 5 == 0) Sql("UPDATE snd_a SET id = id + 1000000 WHERE id = " + std::to_string(i + 1));
  }
  workload.Signal(SIGTERM);
  workload.Wait(std::chrono::seconds(60));
  // A last change: once it is out, everything before it is.
  Sql("INSERT INTO snd_a VALUES (-1, 'marker')");
  ASSERT_TRUE(WaitFor([&] { return p.Stdout().find("\"v\":\"marker\"") != std::string::npos; },
                      std::chrono::seconds(60)))
      << p.Stderr();
  // The metrics count every read line written.
  size_t reads = 0;
  for (const std::string& line : SplitLines(p.Stdout())) {
    reads += line.rfind("{\"op\":\"read\"", 0) == 0;
  }
  std::string wanted = "pgslotd_snapshot_rows_total{slot=\"snapd\"} " + std::to_string(reads);
  EXPECT_TRUE(WaitFor(
      [&] { return FileExists(metrics) && ReadFile(metrics).find(wanted) != std::string::npos; },
      std::chrono::seconds(30)))
      << wanted << "\n"
      << (FileExists(metrics) ? ReadFile(metrics) : "");
  p.Signal(SIGTERM);
  ASSERT_EQ(p.Wait(std::chrono::seconds(60)), 0) << p.Stderr();

  AppliedTables applied = ApplyLines(p.Stdout(), {{"snd_a", {"id", "v"}}, {"snd_b", {"k", "n"}}});
  AppliedTables expected;
  for (const auto& r : pg_->Rows("SELECT id::text, v FROM snd_a", kDb))
    expected["snd_a"][r[0]] = r[1];
  for (const auto& r : pg_->Rows("SELECT k, n::text FROM snd_b", kDb))
    expected["snd_b"][r[0]] = r[1];
  EXPECT_EQ(applied["snd_a"].size(), expected["snd_a"].size());
  EXPECT_TRUE(applied == expected) << "the lines applied in order differ from the tables";
  // pgslotd asked pgoutput for messages itself, and wrote none of its own.
  EXPECT_EQ(p.Stdout().find("pgslotd.snapshot"), std::string::npos);
  std::string log = p.Stderr();
  EXPECT_NE(log.find("snapshot of table public.snd_a starts"), std::string::npos) << log;
  EXPECT_NE(log.find("snapshot of table public.snd_b done: "), std::string::npos) << log;
  EXPECT_NE(log.find("snapshot done: "), std::string::npos) << log;
  if (lose_session) {
    EXPECT_TRUE(lost) << "the walsender was never ended";
    EXPECT_NE(log.find("streaming again from"), std::string::npos) << log;
  }
}

TEST_F(SnapshotDaemonTest, InitialSnapshotUnderAWorkloadGivesExactlyTheTablesRows) {
  RunUnderWorkload(false);
}

// The session ends in the middle of the snapshot (the walsender is
// terminated while a chunk waits for a lock); the slot streams again from
// its acknowledged position and the snapshot goes on.
TEST_F(SnapshotDaemonTest, ASessionLostMidSnapshotStillGivesExactlyTheTablesRows) {
  RunUnderWorkload(true);
}

}  // namespace
}  // namespace pgslotd::test
