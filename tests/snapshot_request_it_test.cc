// pgslotd --snapshot against the real daemon binary: what the command
// says when it cannot ask, a request made while the daemon is down carried
// out when it starts (a stdout sink: the file is deleted once the snapshot
// is finished, and not carried out again), and a slot with snapshot: never
// that leaves a waiting request alone, saying so.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "json_parse.h"
#include "snapshot_apply.h"
#include "test_util.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

constexpr char kDb[] = "snapshot_request_it";

class SnapshotRequestTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    pg_->CreateDatabase(kDb);
    pg_->DropSlotIfExists("srq");
  }
  void TearDown() override { pg_->DropSlotIfExists("srq"); }
  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }

  // A config of slot srq (stdout, snapshot `mode`) under `header`
  // (default: the test's directories); `plain`: and slot plain (a file,
  // snapshot: never).
  std::string Config(const std::string& mode, const std::string& header = "", bool plain = false,
                     const std::string& more = "") {
    return WriteConfig(
        (header.empty() ? Header(kDb) : header) +
        SlotYaml("srq", "{type: stdout}",
                 "    create: true\n    format: json\n    snapshot: " + mode +
                     "\n    snapshot_chunk_rows: 700\n"
                     "    options: {publication_names: srq_pub}\n" +
                     more,
                 "pgoutput") +
        (plain
             ? SlotYaml("plain", "{type: file, path: " + dir_->File("plain.jsonl") + "}",
                        "    format: json\n    options: {publication_names: srq_pub}\n", "pgoutput")
             : std::string()));
  }
  // Runs pgslotd with `args` after --config `cfg`; returns its exit code.
  int Ask(const std::string& cfg, const std::vector<std::string>& args, Subprocess* p) {
    std::vector<std::string> argv = {PgslotdBinary(), "--config", cfg};
    argv.insert(argv.end(), args.begin(), args.end());
    p->Start(argv);
    return p->Wait(seconds(30));
  }
  // Changes row 1 of srq_a to "after", runs pgslotd up to that change
  // and checks that it took no request.
  void RunToAChangeTakingNoRequest(const std::string& cfg, Subprocess* p) {
    Sql("UPDATE srq_a SET v = 'after' WHERE id = 1");
    const std::string end = pg_->CurrentWalLsn();
    p->Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr", "--end-lsn", end});
    ASSERT_EQ(p->Wait(seconds(60)), 0) << p->Stderr();
    EXPECT_EQ(p->Stderr().find("snapshot requested"), std::string::npos) << p->Stderr();
  }
  // The request files waiting in the state directory.
  std::vector<std::string> Requests() const {
    std::vector<std::string> found;
    DIR* d = ::opendir(dir_->path().c_str());
    while (struct dirent* e = d ? ::readdir(d) : nullptr) {
      std::string name = e->d_name;
      if (name.rfind("srq.snapshot-request.", 0) == 0) found.push_back(name);
    }
    if (d) ::closedir(d);
    return found;
  }
};

TEST_F(SnapshotRequestTest, TheCommandSaysWhatIsWrongWithEachRequest) {
  const std::string cfg = Config("on_request", "", true);
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string error;
  } cases[] = {
      {{"--snapshot", "nope"}, 64, "pgslotd: --snapshot: " + cfg + " has no slot named \"nope\"\n"},
      {{"--snapshot", "plain"},
       78,
       "pgslotd: --snapshot: slot plain has snapshot: never in " + cfg +
           "; set snapshot: on_request (format json) and reload pgslotd, then ask again\n"},
      {{"--snapshot", "srq", "--table", "orders"},
       64,
       "pgslotd: --table \"orders\": no schema: give the table as SCHEMA.TABLE (public.orders)\n"},
      {{"--table", "public.t"}, 64, "pgslotd: --table goes with --snapshot SLOT\n"},
      {{"--snapshot", "srq", "--status"},
       64,
       "pgslotd: --snapshot goes with neither --check, --status nor --end-lsn\n"},
  };
  for (const Case& c : cases) {
    Subprocess p;
    EXPECT_EQ(Ask(cfg, c.args, &p), c.code) << c.args[0] << " " << c.args[1];
    EXPECT_EQ(p.Stderr(), c.error);
  }
  EXPECT_TRUE(Requests().empty()) << "a refused request writes nothing";

  // A state directory that does not exist: exit 73, and what to do.
  const std::string missing = dir_->File("gone");
  const std::string elsewhere = Config(
      "on_request", "connection: \"" + pg_->Conninfo(kDb) + "\"\nstate_directory: " + missing +
                        "\nruntime_directory: " + dir_->path() + "\nslots:\n");
  Subprocess p;
  EXPECT_EQ(Ask(elsewhere, {"--snapshot", "srq"}, &p), 73);
  EXPECT_EQ(p.Stderr(), "pgslotd: --snapshot: the state directory " + missing +
                            " does not exist (pgslotd creates it when it first starts; start it "
                            "once, or create it for the user it runs as)\n");
}

// Asked while the daemon is down; carried out when it starts, into stdout;
// the request file goes once the snapshot is finished, and the next start
// reads nothing again.
TEST_F(SnapshotRequestTest, ARequestMadeWhileTheDaemonIsDownIsCarriedOutWhenItStarts) {
  Sql("DROP TABLE IF EXISTS srq_a, srq_b; DROP PUBLICATION IF EXISTS srq_pub");
  Sql("CREATE TABLE srq_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("CREATE TABLE srq_b (k text PRIMARY KEY, n int)");
  Sql("INSERT INTO srq_a SELECT i, 'a' || i FROM generate_series(1, 5000) i");
  Sql("INSERT INTO srq_b SELECT 'k' || i, i FROM generate_series(1, 1200) i");
  Sql("CREATE PUBLICATION srq_pub FOR TABLE srq_a, srq_b");
  const std::string cfg = Config("on_request");

  Subprocess ask;
  ASSERT_EQ(Ask(cfg, {"--snapshot", "srq"}, &ask), 0) << ask.Stderr();
  std::vector<std::string> waiting = Requests();
  ASSERT_EQ(waiting.size(), 1u);
  const std::string request = dir_->File(waiting[0]);
  const std::string said = ask.Stdout();
  EXPECT_EQ(said.rfind("pgslotd: snapshot of slot srq requested (" + request + ")\n", 0), 0u)
      << said;
  EXPECT_NE(
      said.find("cannot reach a running pgslotd (cannot connect to " + dir_->File("pgslotd.sock")),
      std::string::npos)
      << said;
  EXPECT_NE(said.find("): one that runs takes the request within 10 seconds, one that is down "
                      "when it starts\n"),
            std::string::npos)
      << said;
  EXPECT_EQ(ReadFile(request), "pgslotd-snapshot-request 1\nall\n");
  struct stat st;
  ASSERT_EQ(::stat(request.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // A second request, carried out after the first: a table that is in
  // none of the publications fails, and nothing else.
  Subprocess ask_more;
  ASSERT_EQ(Ask(cfg, {"--snapshot", "srq", "--table", "public.srq_elsewhere"}, &ask_more), 0)
      << ask_more.Stderr();
  ASSERT_EQ(Requests().size(), 2u);

  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  ASSERT_TRUE(WaitFor([&] { return !p.Running() || Requests().empty(); }, seconds(120)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(60)), 0) << p.Stderr();
  const std::string log = p.Stderr();
  EXPECT_NE(log.find("snapshot requested (" + request +
                     "): reading every table of the slot's publications"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("snapshot done: 6200 rows of 3 tables"), std::string::npos) << log;
  const std::string failed =
      "{\"op\":\"snapshot\",\"event\":\"failed\",\"schema\":\"public\",\"table\":"
      "\"srq_elsewhere\",\"rows\":0,\"error\":\"table public.srq_elsewhere is in none of the "
      "slot's publications\"}\n";
  const std::string out = p.Stdout();
  EXPECT_NE(out.find(failed), std::string::npos) << out.substr(out.size() - 1000);
  EXPECT_LT(out.find("\"event\":\"end\",\"schema\":\"public\",\"table\":\"srq_b\""),
            out.find(failed))
      << "requests are carried out in the order they were made";
  AppliedTables applied = ApplyLines(p.Stdout(), {{"srq_a", {"id", "v"}}, {"srq_b", {"k", "n"}}});
  EXPECT_EQ(applied["srq_a"].size(), 5000u);
  EXPECT_EQ(applied["srq_b"].size(), 1200u);
  EXPECT_EQ(applied["srq_a"]["4321"], "a4321");
  EXPECT_EQ(applied["srq_b"]["k77"], "77");

  // Nothing is waiting: the next start reads nothing.
  Subprocess again;
  ASSERT_NO_FATAL_FAILURE(RunToAChangeTakingNoRequest(cfg, &again));
  EXPECT_EQ(again.Stderr().find("snapshot done"), std::string::npos) << again.Stderr();
  EXPECT_EQ(again.Stdout().find("\"op\":\"read\""), std::string::npos);
  EXPECT_NE(again.Stdout().find("\"v\":\"after\""), std::string::npos) << again.Stdout();
}

// A slot with snapshot: never does not ask pgoutput for the messages a
// snapshot's watermarks need: a request file left for it (the config was
// changed after the request) waits, and the log says what to do.
TEST_F(SnapshotRequestTest, ASlotWithSnapshotNeverLeavesAWaitingRequestAndSaysWhatToSet) {
  Sql("DROP TABLE IF EXISTS srq_a, srq_b; DROP PUBLICATION IF EXISTS srq_pub");
  Sql("CREATE TABLE srq_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("CREATE PUBLICATION srq_pub FOR TABLE srq_a");
  Subprocess ask;
  ASSERT_EQ(Ask(Config("on_request"), {"--snapshot", "srq"}, &ask), 0) << ask.Stderr();
  ASSERT_EQ(Requests().size(), 1u);

  const std::string cfg = Config("never");
  Sql("INSERT INTO srq_a VALUES (1, 'one')");
  const std::string end = pg_->CurrentWalLsn();
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr", "--end-lsn", end});
  ASSERT_EQ(p.Wait(seconds(60)), 0) << p.Stderr();
  EXPECT_NE(p.Stderr().find("snapshot requests wait in " + dir_->path() +
                            " (pgslotd --snapshot), but the slot has snapshot: never; set "
                            "snapshot: on_request to carry them out, or delete the files"),
            std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stdout().find("\"op\":\"read\""), std::string::npos);
  EXPECT_EQ(Requests().size(), 1u) << "it waits for a slot that can carry it out";
}

// A request whose table is read before the file's next record (one chunk;
// fsync_interval 10 s), and a stop right after its end line: the stop's
// record holds the request's lines, and the request file is deleted as the
// slot stops, so the next start does not read the table again.
TEST_F(SnapshotRequestTest, ARequestDoneJustBeforeAStopIsNotCarriedOutAgain) {
  Sql("DROP TABLE IF EXISTS srq_a, srq_b; DROP PUBLICATION IF EXISTS srq_pub");
  Sql("CREATE TABLE srq_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("INSERT INTO srq_a SELECT i, 'a' || i FROM generate_series(1, 300) i");
  Sql("CREATE PUBLICATION srq_pub FOR TABLE srq_a");
  const std::string file = dir_->File("srq.jsonl");
  const std::string cfg = WriteConfig(
      Header(kDb) + SlotYaml("srq", "{type: file, path: " + file + "}",
                             "    create: true\n    format: json\n    snapshot: on_request\n"
                             "    fsync_interval: 10s\n"
                             "    options: {publication_names: srq_pub}\n",
                             "pgoutput"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  ASSERT_TRUE(WaitFor(
      [&] { return !p.Running() || p.Stderr().find("streaming from") != std::string::npos; },
      seconds(60)))
      << p.Stderr();
  Subprocess ask;
  ASSERT_EQ(Ask(cfg, {"--snapshot", "srq"}, &ask), 0) << ask.Stderr();
  EXPECT_NE(ask.Stdout().find("\nok: slot srq takes the request\n"), std::string::npos)
      << ask.Stdout();
  const std::string end_line =
      "{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\",\"table\":\"srq_a\","
      "\"rows\":300}\n";
  ASSERT_TRUE(WaitFor(
      [&] {
        return !p.Running() ||
               (FileExists(file) && ReadFile(file).find(end_line) != std::string::npos);
      },
      seconds(60)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(60)), 0) << p.Stderr();
  EXPECT_TRUE(Requests().empty()) << "deleted as the slot stopped\n" << p.Stderr();

  Subprocess again;
  ASSERT_NO_FATAL_FAILURE(RunToAChangeTakingNoRequest(cfg, &again));
  const std::string out = ReadFile(file);
  size_t ends = 0;
  for (size_t at = out.find(end_line); at != std::string::npos; at = out.find(end_line, at + 1)) {
    ++ends;
  }
  EXPECT_EQ(ends, 1u) << "the table is read once";
  EXPECT_NE(out.find("\"v\":\"after\""), std::string::npos);
}

// A table without a key: refused (a failed line saying what to do), or,
// with snapshot_keyless: read_whole, read whole in one chunk.
TEST_F(SnapshotRequestTest, ATableWithoutAKeyIsRefusedUnlessTheSlotReadsItWhole) {
  Sql("DROP TABLE IF EXISTS srq_a, srq_b, srq_log; DROP PUBLICATION IF EXISTS srq_pub");
  Sql("CREATE TABLE srq_a (id int PRIMARY KEY, v text NOT NULL)");
  Sql("CREATE TABLE srq_log (at int, msg text)");
  Sql("INSERT INTO srq_a SELECT i, 'a' || i FROM generate_series(1, 100) i");
  Sql("INSERT INTO srq_log SELECT i % 7, 'm' || i FROM generate_series(1, 1500) i");
  Sql("CREATE PUBLICATION srq_pub FOR TABLE srq_a, srq_log WITH (publish = 'insert')");
  for (const char* keyless : {"refuse", "read_whole"}) {
    SCOPED_TRACE(keyless);
    pg_->DropSlotIfExists("srq");
    const std::string cfg =
        Config("initial", "", false, std::string("    snapshot_keyless: ") + keyless + "\n");
    Subprocess p;
    p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
    ASSERT_TRUE(WaitFor(
        [&] { return !p.Running() || p.Stderr().find("snapshot done: ") != std::string::npos; },
        seconds(120)))
        << p.Stderr();
    ASSERT_TRUE(p.Signal(SIGTERM));
    ASSERT_EQ(p.Wait(seconds(60)), 0) << p.Stderr();
    const std::string out = p.Stdout();
    size_t log_reads = 0;
    for (const std::string& line : SplitLines(out)) {
      if (line.find("\"op\":\"read\"") != std::string::npos &&
          line.find("\"table\":\"srq_log\"") != std::string::npos) {
        ++log_reads;
      }
    }
    EXPECT_NE(out.find("{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\","
                       "\"table\":\"srq_a\",\"rows\":100}\n"),
              std::string::npos);
    if (std::string(keyless) == "refuse") {
      EXPECT_EQ(log_reads, 0u);
      EXPECT_NE(out.find("{\"op\":\"snapshot\",\"event\":\"failed\",\"schema\":\"public\","
                         "\"table\":\"srq_log\",\"rows\":0,\"error\":\"table public.srq_log has "
                         "no primary key and no unique index over NOT NULL columns: its rows "
                         "cannot be read in chunks; give it a primary key, or set "
                         "snapshot_keyless: read_whole to read it whole\"}\n"),
                std::string::npos)
          << out.substr(0, 2000);
    } else {
      EXPECT_EQ(log_reads, 1500u);
      EXPECT_NE(out.find("{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\","
                         "\"table\":\"srq_log\",\"rows\":1500}\n"),
                std::string::npos);
      EXPECT_NE(p.Stderr().find("snapshot: table public.srq_log has no key: it is read whole, in "
                                "one chunk (snapshot_keyless: read_whole)"),
                std::string::npos)
          << p.Stderr();
    }
  }
}

}  // namespace
}  // namespace pgslotd::test
