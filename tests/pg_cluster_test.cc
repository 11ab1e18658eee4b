// Proves the integration-test harness itself: the throwaway PostgreSQL
// cluster and the child-process helpers.

#include "pg_cluster.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.h"

namespace pgslotd::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A database per test file keeps tables from colliding with other tests.
constexpr char kDb[] = "harness_test";

class PgClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    pg_->CreateDatabase(kDb);
  }
  PgCluster* pg_ = nullptr;
};

TEST_F(PgClusterTest, ServerAnswers) {
  EXPECT_EQ(pg_->Scalar("SELECT 1"), "1");
  EXPECT_EQ(pg_->Scalar("SELECT NULL"), "");
  EXPECT_EQ(pg_->Scalar("SHOW port"), std::to_string(pg_->port()));
  EXPECT_EQ(pg_->Scalar("SHOW wal_level"), "logical");
  EXPECT_EQ(pg_->Scalar("SHOW fsync"), "on");
  EXPECT_EQ(pg_->Scalar("SHOW max_replication_slots"), "100");
  EXPECT_EQ(pg_->Scalar("SELECT inet_server_addr() IS NULL"), "t");  // the Unix socket
}

TEST_F(PgClusterTest, ConninfoShapes) {
  EXPECT_EQ(pg_->Conninfo("x"), "host=" + pg_->socket_dir() + " port=" +
                                    std::to_string(pg_->port()) + " user=postgres dbname=x");
  EXPECT_EQ(pg_->TcpConninfo(), "host=127.0.0.1 port=" + std::to_string(pg_->port()) +
                                    " user=postgres dbname=postgres");
  EXPECT_TRUE(FileExists(pg_->socket_dir() + "/.s.PGSQL." + std::to_string(pg_->port())));
  struct stat st;
  ASSERT_EQ(stat(pg_->dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(PgClusterTest, TcpConnectionWorks) {
  Subprocess psql;
  psql.Start({"/usr/lib/postgresql/15/bin/psql", "-XAtq", "-d", pg_->TcpConninfo(kDb), "-c",
              "SELECT inet_server_addr(), current_database()"});
  ASSERT_EQ(psql.Wait(seconds(30)), 0) << psql.Stderr();
  EXPECT_EQ(psql.Stdout(), std::string("127.0.0.1|") + kDb + "\n");
}

TEST_F(PgClusterTest, SqlErrorsThrowWithServerMessage) {
  try {
    pg_->Exec("SELECT * FROM no_such_table");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_table"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pg_->Scalar("SELECT 1 WHERE false"), std::runtime_error);
  EXPECT_THROW(pg_->Scalar("SELECT 1", "no_such_database"), std::runtime_error);
}

TEST_F(PgClusterTest, ExecAndRows) {
  pg_->Exec(
      "DROP TABLE IF EXISTS rows_t; CREATE TABLE rows_t (id int, v text);"
      "INSERT INTO rows_t VALUES (1, 'a'), (2, NULL)",
      kDb);
  std::vector<std::vector<std::string>> expected = {{"1", "a"}, {"2", ""}};
  EXPECT_EQ(pg_->Rows("SELECT id, v FROM rows_t ORDER BY id", kDb), expected);
  EXPECT_TRUE(pg_->Rows("UPDATE rows_t SET v = 'b'", kDb).empty());
}

TEST_F(PgClusterTest, CreateDatabaseIsIdempotentAndQuotes) {
  const std::string name = "Odd Name-'db";
  pg_->CreateDatabase(name);
  pg_->CreateDatabase(name);
  EXPECT_EQ(pg_->Scalar("SELECT count(*) FROM pg_database WHERE datname = 'Odd Name-''db'"), "1");
  EXPECT_EQ(pg_->Scalar("SELECT current_database()", name), name);
}

TEST_F(PgClusterTest, TestDecodingSlotAndPeek) {
  const std::string slot = "harness_td";
  pg_->DropSlotIfExists(slot);
  pg_->Exec("DROP TABLE IF EXISTS td_t; CREATE TABLE td_t (id int primary key, v text)", kDb);
  pg_->CreateLogicalSlot(slot, "test_decoding", kDb);
  EXPECT_FALSE(pg_->ConfirmedFlushLsn(slot).empty());

  pg_->Exec("INSERT INTO td_t VALUES (1, 'it''s')", kDb);
  const std::string after_insert = pg_->CurrentWalLsn();
  pg_->Exec("INSERT INTO td_t VALUES (2, 'later')", kDb);

  const std::vector<std::pair<std::string, std::string>> options = {{"include-xids", "0"},
                                                                    {"skip-empty-xacts", "1"}};
  std::vector<std::string> expected = {
      "BEGIN",
      "table public.td_t: INSERT: id[integer]:1 v[text]:'it''s'",
      "COMMIT",
  };
  EXPECT_EQ(pg_->PeekChanges(slot, after_insert, options, kDb), expected);

  // Peeking consumes nothing: without a limit both transactions come back.
  std::vector<std::string> all = pg_->PeekChanges(slot, "", options, kDb);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[4], "table public.td_t: INSERT: id[integer]:2 v[text]:'later'");

  // With the default options, transaction ids are included.
  std::vector<std::string> with_xids = pg_->PeekChanges(slot, "", {}, kDb);
  ASSERT_FALSE(with_xids.empty());
  EXPECT_EQ(with_xids[0].rfind("BEGIN ", 0), 0u) << with_xids[0];

  pg_->DropSlotIfExists(slot);
  EXPECT_THROW(pg_->ConfirmedFlushLsn(slot), std::runtime_error);
  pg_->DropSlotIfExists(slot);  // a missing slot is fine
}

TEST_F(PgClusterTest, Wal2jsonSlot) {
  const std::string slot = "harness_w2j";
  pg_->DropSlotIfExists(slot);
  pg_->Exec("DROP TABLE IF EXISTS w2j_t; CREATE TABLE w2j_t (id int primary key, v text)", kDb);
  pg_->CreateLogicalSlot(slot, "wal2json", kDb);
  pg_->Exec("INSERT INTO w2j_t VALUES (7, 'x')", kDb);

  std::vector<std::string> changes =
      pg_->PeekChanges(slot, "", {{"format-version", "2"}, {"include-lsn", "false"}}, kDb);
  // wal2json writes every transaction, so background work (autovacuum)
  // may add empty ones ({"action":"B"} then {"action":"C"}) around ours.
  std::vector<std::string> ours;
  for (size_t i = 0; i < changes.size(); ++i) {
    if (i + 1 < changes.size() && changes[i] == R"({"action":"B"})" &&
        changes[i + 1] == R"({"action":"C"})") {
      ++i;  // an empty transaction
      continue;
    }
    ours.push_back(changes[i]);
  }
  ASSERT_EQ(ours.size(), 3u) << ::testing::PrintToString(changes);
  EXPECT_EQ(ours[0], R"({"action":"B"})");
  EXPECT_NE(ours[1].find(R"("action":"I")"), std::string::npos) << ours[1];
  EXPECT_NE(ours[1].find(R"("table":"w2j_t")"), std::string::npos) << ours[1];
  EXPECT_NE(ours[1].find(R"("value":7)"), std::string::npos) << ours[1];
  EXPECT_EQ(ours[2], R"({"action":"C"})");
  pg_->DropSlotIfExists(slot);
}

TEST_F(PgClusterTest, LsnHelpersAgree) {
  const std::string slot = "harness_lsn";
  pg_->DropSlotIfExists(slot);
  pg_->CreateLogicalSlot(slot, "test_decoding", kDb);
  pg_->Exec("CREATE TABLE IF NOT EXISTS lsn_t (id int); INSERT INTO lsn_t VALUES (1)", kDb);
  const std::string confirmed = pg_->ConfirmedFlushLsn(slot);
  const std::string current = pg_->CurrentWalLsn();
  EXPECT_EQ(pg_->Scalar("SELECT '" + confirmed + "'::pg_lsn < '" + current + "'::pg_lsn"), "t")
      << confirmed << " vs " << current;
  // Consuming the changes moves confirmed_flush_lsn.
  pg_->Exec("SELECT count(*) FROM pg_logical_slot_get_changes('" + slot + "', NULL, NULL)", kDb);
  EXPECT_EQ(pg_->Scalar("SELECT '" + pg_->ConfirmedFlushLsn(slot) + "'::pg_lsn > '" + confirmed +
                        "'::pg_lsn"),
            "t");
  pg_->DropSlotIfExists(slot);
}

TEST_F(PgClusterTest, DropSlotTerminatesActiveWalsender) {
  const std::string slot = "harness_active";
  pg_->DropSlotIfExists(slot);
  pg_->CreateLogicalSlot(slot, "test_decoding", kDb);
  Subprocess recv;
  recv.Start({"/usr/lib/postgresql/15/bin/pg_recvlogical", "-d", pg_->Conninfo(kDb), "--slot", slot,
              "--start", "--no-loop", "-f", "-"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar("SELECT active FROM pg_replication_slots WHERE slot_name = '" + slot +
                           "'") == "t";
      },
      seconds(20)))
      << recv.Stderr();
  pg_->DropSlotIfExists(slot);
  EXPECT_EQ(
      pg_->Scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot + "'"),
      "0");
  EXPECT_EQ(recv.Wait(seconds(20)), 1) << recv.Stderr();
}

TEST_F(PgClusterTest, StopStartRestartKeepData) {
  const int port = pg_->port();
  pg_->Exec(
      "DROP TABLE IF EXISTS keep_t; CREATE TABLE keep_t (v text); INSERT INTO keep_t "
      "VALUES ('kept')",
      kDb);
  pg_->Restart("fast");
  EXPECT_TRUE(pg_->running());
  EXPECT_EQ(pg_->port(), port);
  EXPECT_EQ(pg_->Scalar("SELECT v FROM keep_t", kDb), "kept");

  pg_->Stop("immediate");
  EXPECT_FALSE(pg_->running());
  EXPECT_THROW(pg_->Scalar("SELECT 1"), std::runtime_error);
  pg_->Start();  // crash recovery
  EXPECT_EQ(pg_->Scalar("SELECT v FROM keep_t", kDb), "kept");
  EXPECT_EQ(pg_->Scalar("SHOW port"), std::to_string(port));
}

TEST(PrivateClusterTest, StartNewIsIndependentAndCleansUp) {
  std::string dir;
  {
    std::unique_ptr<PgCluster> own = PgCluster::StartNew();
    dir = own->dir();
    EXPECT_NE(own->port(), PgCluster::Shared()->port());
    EXPECT_EQ(own->Scalar("SHOW wal_level"), "logical");
    EXPECT_TRUE(FileExists(own->log_path()));
  }
  EXPECT_FALSE(FileExists(dir));
  EXPECT_EQ(PgCluster::Shared()->Scalar("SELECT 1"), "1");
}

// Whether `pid` exists and is not a zombie.
bool ProcessAlive(pid_t pid) {
  std::string stat;
  try {
    stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  } catch (const std::runtime_error&) {
    return false;  // gone
  }
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

TEST(PrivateClusterTest, WatchdogCleansUpAfterTestProcessIsKilled) {
  // The child is a fork of this process that starts its own cluster and
  // dies by SIGKILL: no destructor, no atexit handler runs.
  GTEST_FLAG_SET(death_test_style, "fast");
  TempDir tmp;
  const std::string report = tmp.File("cluster");
  EXPECT_EXIT(
      {
        std::unique_ptr<PgCluster> pg = PgCluster::StartNew();
        WriteFile(report,
                  pg->dir() + "\n" + SplitLines(ReadFile(pg->data_dir() + "/postmaster.pid"))[0]);
        raise(SIGKILL);
      },
      ::testing::KilledBySignal(SIGKILL), "");
  std::vector<std::string> lines = SplitLines(ReadFile(report));
  ASSERT_EQ(lines.size(), 2u);
  const std::string dir = lines[0];
  const pid_t postmaster = std::stoi(lines[1]);
  EXPECT_TRUE(WaitFor([&] { return !FileExists(dir); }, seconds(30))) << dir;
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(postmaster); }, seconds(30))) << postmaster;
}

// --- test_util ---

TEST(SubprocessTest, CapturesStdoutAndExitCode) {
  Subprocess p;
  p.Start({"/bin/sh", "-c", "echo hi; exit 3"});
  EXPECT_GT(p.pid(), 0);
  EXPECT_EQ(p.Wait(seconds(10)), 3);
  EXPECT_FALSE(p.Running());
  EXPECT_EQ(p.Stdout(), "hi\n");
  EXPECT_EQ(p.Stderr(), "");
  EXPECT_EQ(p.Wait(milliseconds(0)), 3);  // stays the same
}

TEST(SubprocessTest, KilledBySignal) {
  Subprocess p;
  p.Start({"sleep", "30"});  // found in PATH
  EXPECT_TRUE(p.Running());
  EXPECT_TRUE(p.Signal(SIGKILL));
  EXPECT_EQ(p.Wait(seconds(10)), 128 + 9);
  EXPECT_FALSE(p.Signal(SIGTERM));  // already reaped
}

TEST(SubprocessTest, WaitTimeoutLeavesChildRunning) {
  Subprocess p;
  p.Start({"/bin/sleep", "30"});
  EXPECT_EQ(p.Wait(milliseconds(50)), -1);
  EXPECT_TRUE(p.Running());
  EXPECT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(10)), 128 + SIGTERM);
}

TEST(SubprocessTest, StderrEnvStdinAndPaths) {
  TempDir dir;
  Subprocess::Options options;
  options.stdout_path = dir.File("out.txt");
  options.env = {{"PGSLOTD_TEST_VAR", "value 1"}};
  options.cwd = dir.path();
  Subprocess p;
  p.Start({"/bin/sh", "-c",
           "echo \"$PGSLOTD_TEST_VAR\" >&2; pwd; cat; echo \"stdin done\"; test -n \"$PATH\""},
          options);
  EXPECT_EQ(p.Wait(seconds(10)), 0) << p.Stderr();
  EXPECT_EQ(p.Stderr(), "value 1\n");
  EXPECT_EQ(ReadFile(dir.File("out.txt")), dir.path() + "\nstdin done\n");
  EXPECT_EQ(p.Stdout(), ReadFile(dir.File("out.txt")));
}

TEST(SubprocessTest, EmptyEnvironment) {
  Subprocess::Options options;
  options.inherit_env = false;
  options.env = {{"ONLY", "1"}};
  Subprocess p;
  p.Start({"/usr/bin/env"}, options);
  EXPECT_EQ(p.Wait(seconds(10)), 0);
  EXPECT_EQ(p.Stdout(), "ONLY=1\n");
}

TEST(SubprocessTest, StartFailureThrows) {
  Subprocess missing;
  EXPECT_THROW(missing.Start({"/nonexistent/program"}), std::runtime_error);
  Subprocess not_in_path;
  EXPECT_THROW(not_in_path.Start({"no-such-program-pgslotd"}), std::runtime_error);
}

TEST(SubprocessTest, DestructorKillsRunningChild) {
  pid_t pid;
  {
    Subprocess p;
    p.Start({"/bin/sleep", "30"});
    pid = p.pid();
    ASSERT_EQ(kill(pid, 0), 0);
  }
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

// pgslotd is only started on a config that keeps its state in a temporary
// directory of the test: without that, a test leaves *.state files in
// /var/lib/pgslotd. A config pgslotd refuses anyway is let through.
TEST(SubprocessTest, RefusesToStartPgslotdWithItsStateOutsideTheTest) {
  TempDir dir;
  const std::string slots = "slots:\n  - {name: guard_slot, plugin: test_decoding}\n";
  const std::string head = "connection: \"host=/nowhere dbname=postgres\"\n";
  auto start = [&](const std::string& yaml, const std::vector<std::string>& how) {
    const std::string cfg = dir.File("guard.yaml");
    WriteFile(cfg, yaml);
    std::vector<std::string> argv = {PgslotdBinary()};
    for (std::string a : how) {
      if (size_t at = a.find("CFG"); at != std::string::npos) a.replace(at, 3, cfg);
      argv.push_back(a);
    }
    argv.push_back("--check");
    auto p = std::make_unique<Subprocess>();
    p->Start(argv);
    return p;
  };
  const std::string sink = "    sink: {type: stdout}\n";
  const std::string good_slots = "slots:\n  - name: guard_slot\n    plugin: test_decoding\n" + sink;
  for (const std::vector<std::string>& how :
       std::vector<std::vector<std::string>>{{"--config", "CFG"}, {"-c", "CFG"}}) {
    // No state_directory: the default, /var/lib/pgslotd.
    EXPECT_THROW(start(head + good_slots, how), std::runtime_error);
    // One outside every temporary directory of the test.
    EXPECT_THROW(start(head + "state_directory: /var/lib/pgslotd\n" + good_slots, how),
                 std::runtime_error);
    // One of a temporary directory that is gone.
    auto gone = std::make_unique<TempDir>();
    const std::string gone_path = gone->path();
    gone.reset();
    EXPECT_THROW(start(head + "state_directory: " + gone_path + "\n" + good_slots, how),
                 std::runtime_error);
    // Its runtime directory (the control socket) must be the test's too.
    EXPECT_THROW(start(head + "state_directory: " + dir.File("state") + "\n" + good_slots, how),
                 std::runtime_error);
    // Both inside one: started.
    auto ok = start(head + "state_directory: " + dir.File("state") + "\nruntime_directory: " +
                        dir.path() + "\n" + good_slots,
                    how);
    EXPECT_EQ(ok->Wait(seconds(30)), 0) << ok->Stderr();
    // Refused by pgslotd itself (exit 78): nothing to leak, so started.
    auto bad = start(head + slots, how);
    EXPECT_EQ(bad->Wait(seconds(30)), 78) << bad->Stderr();
  }
  try {
    start(head + good_slots, {"--config=CFG"});
    ADD_FAILURE() << "started without a state_directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("names no state_directory"), std::string::npos)
        << e.what();
  }
}

TEST(TestUtilTest, TempDirFilesAndLines) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
    WriteFile(dir.File("a.txt"), "one\ntwo\n");
    EXPECT_EQ(ReadFile(dir.File("a.txt")), "one\ntwo\n");
    WriteFile(dir.File("a.txt"), "x");
    EXPECT_EQ(ReadFile(dir.File("a.txt")), "x");
    ASSERT_EQ(mkdir(dir.File("sub").c_str(), 0700), 0);
    WriteFile(dir.File("sub/b.txt"), "nested");
  }
  EXPECT_FALSE(FileExists(path));
  EXPECT_THROW(ReadFile(path + "/a.txt"), std::runtime_error);

  EXPECT_EQ(SplitLines(""), std::vector<std::string>{});
  EXPECT_EQ(SplitLines("a\nb\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(SplitLines("a\n\nb"), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(SplitLines("\n"), std::vector<std::string>{""});
}

TEST(TestUtilTest, WaitForPolls) {
  int calls = 0;
  EXPECT_TRUE(WaitFor([&] { return ++calls == 3; }, seconds(5), milliseconds(1)));
  EXPECT_EQ(calls, 3);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(WaitFor([] { return false; }, milliseconds(100), milliseconds(10)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
  EXPECT_FALSE(PgslotdBinary().empty());
}

}  // namespace
}  // namespace pgslotd::test
