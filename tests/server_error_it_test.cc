// Server errors against a real server that speaks German (lc_messages =
// de_DE.UTF-8): what stops a slot and what is retried follows from SQLSTATEs
// and the step that failed, never from the words (pg/server_error.h). The
// daemon itself runs with LANG=de_DE.UTF-8 too, so that libpq's own texts are
// German as well.
//
// Needs the de_DE.UTF-8 locale on the machine (scripts/test.sh generates it).
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "pg/conninfo.h"
#include "pg/replication_conn.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

class GermanServerTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    german_ = PgCluster::StartNew().release();
    german_->Exec("ALTER SYSTEM SET lc_messages = 'de_DE.UTF-8'");
    // Passwords for one role; trust for everyone else, as the harness has it.
    std::string hba = german_->data_dir() + "/pg_hba.conf";
    WriteFile(hba,
              "local all it_pw scram-sha-256\n"
              "host all it_pw 127.0.0.1/32 scram-sha-256\n" +
                  ReadFile(hba));
    german_->Restart("fast");
  }
  static void TearDownTestSuite() {
    delete german_;
    german_ = nullptr;
  }

  void SetUp() override {
    DaemonTest::SetUp();
    pg_ = german_;
    // The server must really answer in German, or these tests prove nothing.
    std::string error;
    try {
      pg_->Exec("SELECT 1/0");
    } catch (const std::exception& e) {
      error = e.what();
    }
    ASSERT_NE(error.find("Division durch Null"), std::string::npos)
        << "the server does not speak German (is the de_DE.UTF-8 locale installed? "
           "scripts/test.sh generates it): "
        << error;
  }

  // Runs pgslotd (in German) on `cfg` until it exits; returns the exit code.
  int RunGerman(const std::string& cfg, Subprocess* p) {
    Subprocess::Options opts;
    opts.env = {{"LANG", "de_DE.UTF-8"}, {"LC_ALL", "de_DE.UTF-8"}};
    p->Start({PgslotdBinary(), "--config", cfg}, opts);
    return p->Wait(seconds(30));
  }

  std::string Config(const std::string& conninfo, const std::string& slots) {
    return WriteConfig("connection: \"" + conninfo + "\"\n" + Dirs() + "slots:\n" + slots);
  }

  static PgCluster* german_;
};

PgCluster* GermanServerTest::german_ = nullptr;

TEST_F(GermanServerTest, ARoleWithoutReplicationRightsStops) {
  pg_->Exec("CREATE ROLE it_norepl LOGIN");
  pg_->CreateLogicalSlot("de_norepl");
  Subprocess p;
  EXPECT_EQ(RunGerman(Config(pg_->Conninfo() + " user=it_norepl",
                             SlotYaml("de_norepl", "{type: file, path: " + dir_->File("a") + "}")),
                      &p),
            1);
  EXPECT_NE(p.Stderr().find("slot de_norepl: cannot connect"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("(SQLSTATE 42501): role it_norepl may not stream changes: give it the "
                            "REPLICATION attribute (ALTER ROLE it_norepl REPLICATION)"),
            std::string::npos)
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("Replikation"), std::string::npos) << "the server's own words";
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
}

TEST_F(GermanServerTest, AWrongOrMissingPasswordStops) {
  pg_->Exec("CREATE ROLE it_pw LOGIN REPLICATION PASSWORD 'richtig'");
  pg_->CreateLogicalSlot("de_pw");
  std::string none = dir_->File("no-passfile");
  for (const std::string& conn :
       {pg_->Conninfo() + " user=it_pw password=falsch", pg_->TcpConninfo() + " user=it_pw"}) {
    Subprocess p;
    EXPECT_EQ(RunGerman(Config(conn + " passfile=" + none,
                               SlotYaml("de_pw", "{type: file, path: " + dir_->File("p") + "}")),
                        &p),
              1)
        << conn;
    bool missing = conn.find("password=") == std::string::npos;
    EXPECT_NE(p.Stderr().find(missing ? "the server asks for a password and none is given: put it "
                                        "in a passfile"
                                      : "(SQLSTATE 28P01): the server refused the password of "
                                        "role it_pw"),
              std::string::npos)
        << p.Stderr();
    EXPECT_EQ(p.Stderr().find("falsch"), std::string::npos) << "never the password itself";
    EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
  }
}

TEST_F(GermanServerTest, AMissingPluginIsSaidToBeNotInstalled) {
  pg_->DropSlotIfExists("de_noplugin");
  // A server with an allowlist of plugins checks it before it looks for the
  // library; this session (a superuser's) lists the missing one.
  std::string conninfo = pg_->Conninfo();
  if (pg_->HasOutputPluginAllowlist()) conninfo += " options=-coutput_plugin_libraries=wal2jsn";
  Subprocess p;
  EXPECT_EQ(RunGerman(Config(conninfo,
                             SlotYaml("de_noplugin", "{type: file, path: " + dir_->File("n") + "}",
                                      "    create: true\n", "wal2jsn")),
                      &p),
            1);
  EXPECT_NE(p.Stderr().find("slot de_noplugin: creating the slot: "), std::string::npos)
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("(SQLSTATE 58P01): the output plugin \"wal2jsn\" is not installed on "
                            "the server"),
            std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
  EXPECT_EQ(pg_->Scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                        "'de_noplugin'"),
            "0");
}

TEST_F(GermanServerTest, APluginTheServerDoesNotAllowIsNamedWithTheSettingToChange) {
  if (!pg_->HasOutputPluginAllowlist()) {
    GTEST_SKIP() << "this PostgreSQL build has no output_plugin_libraries";
  }
  pg_->DropSlotIfExists("de_notallowed");
  Subprocess p;
  EXPECT_EQ(
      RunGerman(Config(pg_->Conninfo(),
                       SlotYaml("de_notallowed", "{type: file, path: " + dir_->File("n") + "}",
                                "    create: true\n", "test_decodin")),
                &p),
      1);
  EXPECT_NE(p.Stderr().find("slot de_notallowed: creating the slot: "), std::string::npos)
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("(SQLSTATE 42501): the server does not let replication roles use the "
                            "output plugin \"test_decodin\" (it is not in the server setting "
                            "output_plugin_libraries)"),
            std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("lacks a privilege"), std::string::npos) << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
  EXPECT_EQ(pg_->Scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                        "'de_notallowed'"),
            "0");
}

TEST_F(GermanServerTest, OptionsAPluginRefusesStopTheSlotAndNameTheDropStatement) {
  // test_decoding refuses with 22023, pgoutput with XX000; pgslotd creates
  // both slots, so it says how to drop them.
  pg_->Exec("CREATE PUBLICATION de_pub FOR ALL TABLES");
  for (const char* slot : {"de_td_opts", "de_po_opts"}) pg_->DropSlotIfExists(slot);
  std::string cfg = Config(
      pg_->Conninfo(),
      SlotYaml("de_td_opts", "{type: file, path: " + dir_->File("t") + "}",
               "    create: true\n    options: {include-xid: \"1\"}\n") +
          SlotYaml("de_po_opts", "{type: file, path: " + dir_->File("o") + "}",
                   "    create: true\n    options: {proto_version: \"1\", publication_names: "
                   "de_pub, bogus: \"1\"}\n",
                   "pgoutput"));
  Subprocess p;
  EXPECT_EQ(RunGerman(cfg, &p), 1) << "every slot stopped";
  for (const char* slot : {"de_td_opts", "de_po_opts"}) {
    std::vector<std::string> lines = LinesWithAll(
        p.Stderr(), {std::string("slot ") + slot + ": START_REPLICATION: ", "refused its options",
                     std::string("SELECT pg_drop_replication_slot('") + slot + "')"});
    EXPECT_EQ(lines.size(), 1u) << p.Stderr();
  }
  EXPECT_NE(p.Stderr().find("(SQLSTATE 22023)"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("(SQLSTATE XX000)"), std::string::npos) << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
}

TEST_F(GermanServerTest, ASlotInUseIsRetriedUntilFree) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS de_held(id int)");
  pg_->DropSlotIfExists("de_held");
  pg_->CreateLogicalSlot("de_held");
  Subprocess other;
  other.Start({"/usr/lib/postgresql/15/bin/pg_recvlogical", "-d", pg_->Conninfo(), "-S", "de_held",
               "--start", "--no-loop", "-f", "/dev/null"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar(
                   "SELECT active FROM pg_replication_slots WHERE slot_name = "
                   "'de_held'") == "t";
      },
      seconds(20)));
  std::string log = dir_->File("held.log");
  Subprocess p;
  Subprocess::Options opts;
  opts.env = {{"LANG", "de_DE.UTF-8"}, {"LC_ALL", "de_DE.UTF-8"}};
  p.Start({PgslotdBinary(), "--config",
           Config(pg_->Conninfo(), SlotYaml("de_held", "{type: file, path: " + log + "}"))},
          opts);
  ASSERT_TRUE(WaitFor(
      [&] {
        return !LinesWithAll(p.Stderr(), {"slot de_held: START_REPLICATION: ", "(SQLSTATE 55006)",
                                          "retrying until it is free", "reconnecting in"})
                    .empty();
      },
      seconds(20)))
      << p.Stderr();
  other.Signal(SIGKILL);
  ASSERT_EQ(other.Wait(seconds(10)), 128 + SIGKILL);
  pg_->Exec("INSERT INTO de_held VALUES (42)");
  EXPECT_TRUE(
      WaitFor([&] { return FileExists(log) && ReadFile(log).find("de_held") != std::string::npos; },
              seconds(60)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
}

// The replication connection itself, for the errors a configuration cannot
// provoke: a syntax error, a slot invalidated or dropped between the
// lookup and START_REPLICATION.
class GermanConnTest : public GermanServerTest {
 protected:
  void SetUp() override {
    GermanServerTest::SetUp();
    wakeup_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    conn_ = std::make_unique<ReplicationConn>(wakeup_, &stop_);
    std::vector<std::pair<std::string, std::string>> params;
    std::string err;
    ASSERT_TRUE(BuildReplicationParams(pg_->Conninfo(), "probe", &params, &err)) << err;
    Status s = conn_->Connect(params, ReplicationConn::Clock::now() + seconds(20));
    ASSERT_TRUE(s.ok()) << s.message();
  }
  void TearDown() override {
    conn_.reset();
    close(wakeup_);
  }

  Status Start(const std::string& command) {
    return conn_->StartCopy(command, ReplicationConn::Clock::now() + seconds(20));
  }

  int wakeup_ = -1;
  std::atomic<bool> stop_{false};
  std::unique_ptr<ReplicationConn> conn_;
};

TEST_F(GermanConnTest, ASyntaxErrorStopsTheSlot) {
  Status s = Start("START_REPLICATION SLOT \"x\" LOGICAL 0/0 (\"a\" 'b' 'c')");
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal) << s.message();
  EXPECT_EQ(conn_->last_error().sqlstate, "42601");
}

TEST_F(GermanConnTest, AMissingSlotStopsIt) {
  Status s = Start("START_REPLICATION SLOT \"de_nowhere\" LOGICAL 0/0");
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal) << s.message();
  EXPECT_EQ(conn_->last_error().sqlstate, "42704");
}

TEST_F(GermanConnTest, AnInvalidatedSlotIsToldApartBypgReplicationSlots) {
  pg_->CreateLogicalSlot("de_lost");
  pg_->Exec("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  pg_->Exec("SELECT pg_reload_conf()");
  pg_->Exec("CREATE TABLE IF NOT EXISTS de_fill(v text)");
  // Nobody consumes the slot: push WAL past its limit and checkpoint until
  // the server invalidates it (a checkpoint does; the reload may be late).
  ASSERT_TRUE(WaitFor(
      [&] {
        pg_->Exec("INSERT INTO de_fill SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
        pg_->Exec("SELECT pg_switch_wal()");
        pg_->Exec("CHECKPOINT");
        return pg_->Scalar(
                   "SELECT wal_status FROM pg_replication_slots WHERE slot_name = "
                   "'de_lost'") == "lost";
      },
      seconds(60)));
  Status s = Start("START_REPLICATION SLOT \"de_lost\" LOGICAL 0/0");
  // 55000 alone does not say invalidated: it is retried until the slot's
  // row says so.
  EXPECT_EQ(s.code(), Status::Code::kRetryable) << s.message();
  EXPECT_EQ(conn_->last_error().sqlstate, "55000");
  Status classified = conn_->WithSlotCondition(s, "de_lost");
  EXPECT_EQ(classified.code(), Status::Code::kSlotInvalidated) << classified.message();
  EXPECT_NE(classified.message().find("the server has invalidated slot \"de_lost\" (wal_status "
                                      "lost)"),
            std::string::npos)
      << classified.message();
  // The same SQLSTATE for a slot that is fine (a physical one used for
  // logical decoding) is another mistake, which stops the slot too.
  pg_->Exec("SELECT pg_create_physical_replication_slot('de_physical')");
  s = Start("START_REPLICATION SLOT \"de_physical\" LOGICAL 0/0");
  EXPECT_EQ(conn_->last_error().sqlstate, "55000") << s.message();
  classified = conn_->WithSlotCondition(s, "de_physical");
  EXPECT_EQ(classified.code(), Status::Code::kSlotFatal) << classified.message();
  pg_->Exec("ALTER SYSTEM RESET max_slot_wal_keep_size");
  pg_->Exec("SELECT pg_reload_conf()");
}

}  // namespace
}  // namespace pgslotd::test
