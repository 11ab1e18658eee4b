// The command line, exit codes and error messages of the real binary.
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_fixture.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

int RunCli(const std::vector<std::string>& args, Subprocess* p) {
  std::vector<std::string> argv = {PgslotdBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  p->Start(argv);
  return p->Wait(seconds(30));
}

TEST_F(DaemonTest, VersionHelpAndUsageErrors) {
  Subprocess v, h, none, bad_lsn, extra;
  EXPECT_EQ(RunCli({"--version"}, &v), 0);
  EXPECT_EQ(v.Stdout(), "pgslotd 0.1.0\n");
  EXPECT_EQ(RunCli({"--help"}, &h), 0);
  EXPECT_NE(h.Stdout().find("--end-lsn LSN"), std::string::npos);
  EXPECT_EQ(RunCli({}, &none), 64);
  EXPECT_NE(none.Stderr().find("--config PATH is required"), std::string::npos);
  EXPECT_EQ(RunCli({"--config", "/x.yaml", "--end-lsn", "12345"}, &bad_lsn), 64);
  EXPECT_NE(bad_lsn.Stderr().find("--end-lsn: \"12345\" is not an LSN"), std::string::npos);
  EXPECT_EQ(RunCli({"--config", "/x.yaml", "stray"}, &extra), 64);
}

TEST_F(DaemonTest, CheckAcceptsAGoodConfigAndRefusesABadOneWith78) {
  std::string good = WriteConfig(Header() + SlotYaml("ok_slot", "{type: stdout}"), "good.yaml");
  Subprocess g;
  EXPECT_EQ(RunCli({"--config", good, "--check"}, &g), 0);
  EXPECT_NE(g.Stderr().find("config OK: 1 slot"), std::string::npos);
  EXPECT_EQ(g.Stdout(), "");

  std::string bad = WriteConfig(Header() +
                                    "  - name: Bad-Name\n"
                                    "    plugin: test_decoding\n"
                                    "    sink: {type: file, path: relative.log}\n",
                                "bad.yaml");
  for (bool check : {true, false}) {
    Subprocess b;
    std::vector<std::string> args = {"--config", bad};
    if (check) args.push_back("--check");
    EXPECT_EQ(RunCli(args, &b), 78);
    EXPECT_NE(b.Stderr().find(bad + ":6: slots[0].name:"), std::string::npos) << b.Stderr();
    EXPECT_NE(b.Stderr().find(bad + ":8: slots[0].sink.path:"), std::string::npos) << b.Stderr();
  }
  Subprocess missing;
  EXPECT_EQ(RunCli({"--config", dir_->File("nope.yaml"), "--check"}, &missing), 78);
  EXPECT_NE(missing.Stderr().find("nope.yaml"), std::string::npos);
}

TEST_F(DaemonTest, MissingSlotIsAClearErrorNamingIt) {
  pg_->DropSlotIfExists("it_missing");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_missing", "{type: stdout}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", pg_->CurrentWalLsn()});
  EXPECT_EQ(p.Wait(seconds(30)), 1);
  EXPECT_NE(p.Stderr().find("slot it_missing: replication slot \"it_missing\" does not exist"),
            std::string::npos)
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("create: true"), std::string::npos);
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << "no retry loop";
}

TEST_F(DaemonTest, AFailingSlotNeverStopsTheOthers) {
  pg_->Exec("DROP TABLE IF EXISTS others; CREATE TABLE others(id serial primary key, v text)");
  pg_->DropSlotIfExists("it_absent");
  pg_->DropSlotIfExists("it_wrongplugin");
  pg_->DropSlotIfExists("it_healthy");
  pg_->CreateLogicalSlot("it_wrongplugin", "test_decoding");
  pg_->CreateLogicalSlot("it_healthy");
  std::string log = dir_->File("healthy.log");
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_absent", "{type: file, path: " + dir_->File("a.log") + "}") +
      SlotYaml("it_wrongplugin", "{type: file, path: " + dir_->File("w.log") + "}",
               "    options: {proto_version: 1, publication_names: others_pub}\n", "pgoutput") +
      SlotYaml("it_healthy", "{type: file, path: " + log + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("slot it_absent: replication slot \"it_absent\" does not exist") !=
                   std::string::npos &&
               p.Stderr().find(
                   "slot it_wrongplugin: replication slot \"it_wrongplugin\" uses "
                   "plugin test_decoding but the config says pgoutput") != std::string::npos;
      },
      seconds(20)))
      << p.Stderr();
  pg_->Exec("INSERT INTO others(v) VALUES ('still flowing')");
  ASSERT_TRUE(WaitFor(
      [&] { return FileExists(log) && ReadFile(log).find("still flowing") != std::string::npos; },
      seconds(20)))
      << p.Stderr();
  EXPECT_TRUE(p.Running());
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0);
}

TEST_F(DaemonTest, PasswordsNeverReachTheLog) {
  pg_->DropSlotIfExists("it_secret");
  pg_->CreateLogicalSlot("it_secret");
  // trust authentication ignores the password; the daemon must still hide it.
  std::string cfg =
      WriteConfig(HeaderWith(pg_->Conninfo() + " password=hunter2-secret") +
                  SlotYaml("it_secret", "{type: file, path: " + dir_->File("s.log") + "}"));
  pg_->Exec("SELECT pg_switch_wal()");  // something to stream past
  Subprocess p;
  ASSERT_EQ(RunUntil(cfg, pg_->CurrentWalLsn(), &p), 0);
  EXPECT_EQ(p.Stderr().find("hunter2"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("password=********"), std::string::npos) << p.Stderr();
}

TEST_F(DaemonTest, HostileOptionValuesReachThePluginIntact) {
  pg_->Exec("DROP TABLE IF EXISTS victim; CREATE TABLE victim(id int)");
  pg_->DropSlotIfExists("it_hostile");
  pg_->CreateLogicalSlot("it_hostile");
  pg_->Exec("INSERT INTO victim VALUES (1)");  // something to stream
  const std::string value = "1'); DROP TABLE victim; --";
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_hostile", "{type: stdout}",
                          "    options: {include-xids: \"1'); DROP TABLE victim; --\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", pg_->CurrentWalLsn()});
  EXPECT_EQ(p.Wait(seconds(30)), 1);
  // test_decoding received the whole value as one option and refused it.
  EXPECT_NE(
      p.Stderr().find("could not parse value \"" + value + "\" for parameter \"include-xids\""),
      std::string::npos)
      << p.Stderr();
  EXPECT_EQ(pg_->Scalar("SELECT count(*) FROM pg_class WHERE relname = 'victim'"), "1");

  // A hostile option *name* is one identifier too, with a single quote in it.
  std::string cfg2 = WriteConfig(
      Header() + SlotYaml("it_hostile", "{type: stdout}", "    options: {'a ''b': \"1\"}\n"),
      "name.yaml");
  Subprocess p2;
  p2.Start({PgslotdBinary(), "--config", cfg2, "--end-lsn", pg_->CurrentWalLsn()});
  EXPECT_EQ(p2.Wait(seconds(30)), 1);
  EXPECT_NE(p2.Stderr().find("option \"a 'b\" = \"1\" is unknown"), std::string::npos)
      << p2.Stderr();
  EXPECT_EQ(p2.Stderr().find("reconnecting"), std::string::npos) << p2.Stderr();
}

TEST_F(DaemonTest, OptionNamesTheServerCannotParseAreRefusedByCheck) {
  // PostgreSQL 15.18's replication grammar answers "syntax error" to a
  // double quote in a quoted name, and pgslotd retried that for ever: the
  // loader refuses such a name (and one the server would cut at 63 bytes).
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_hostile", "{type: stdout}", "    options: {'a\" b': \"1\"}\n"));
  for (bool check : {true, false}) {
    Subprocess p;
    std::vector<std::string> args = {PgslotdBinary(), "--config", cfg};
    if (check) args.push_back("--check");
    p.Start(args);
    EXPECT_EQ(p.Wait(seconds(30)), 78);
    EXPECT_NE(p.Stderr().find(cfg + ":9: slots[0].options.a\" b: option name \"a\\\" b\" contains "
                                    "a double quote"),
              std::string::npos)
        << p.Stderr();
  }
}

TEST_F(DaemonTest, AServersMessageCannotForgeALogLine) {
  // test_decoding quotes a bad option value back, newlines and all.
  pg_->DropSlotIfExists("it_forge");
  pg_->CreateLogicalSlot("it_forge");
  pg_->Exec("CREATE TABLE IF NOT EXISTS forge(id int); INSERT INTO forge VALUES (1)");
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_forge", "{type: stdout}",
                          "    options: {include-xids: \"1\\n2026-01-01 00:00:00.000 critical "
                          "slot other: forged\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", pg_->CurrentWalLsn()});
  EXPECT_EQ(p.Wait(seconds(30)), 1);
  std::vector<std::string> lines = SplitLines(p.Stderr());
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    // Every line is one of pgslotd's own: "YYYY-MM-DD HH:MM:SS.mmm level ...".
    EXPECT_TRUE(line.size() > 24 && line[4] == '-' && line[10] == ' ' && line[19] == '.')
        << "not an entry of its own: " << line;
    EXPECT_NE(line.rfind("2026-01-01", 0), 0u) << "forged: " << line;
  }
  // The server's lines are joined into pgslotd's one.
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot it_forge: START_REPLICATION: could not parse value "
                                      "\"1; 2026-01-01 00:00:00.000 critical slot other: forged\""})
                .size(),
            1u)
      << p.Stderr();
}

TEST_F(DaemonTest, ASinkDirectoryThatDoesNotExistStopsTheSlotAndCheckSaysSo) {
  pg_->DropSlotIfExists("it_nodir");
  pg_->CreateLogicalSlot("it_nodir");
  std::string missing = dir_->File("no/such/dir");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_nodir", "{type: file, path: " + missing + "/out.log}"));
  Subprocess check;
  check.Start({PgslotdBinary(), "--config", cfg, "--check"});
  EXPECT_EQ(check.Wait(seconds(30)), 78);
  EXPECT_NE(check.Stderr().find(cfg + ":8: slots[0].sink.path: the sink's directory " + missing +
                                " does not exist"),
            std::string::npos)
      << check.Stderr();
  // Without --check the daemon starts, and that slot stops with the reason
  // instead of retrying for ever (it was the only one: exit 1).
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  EXPECT_EQ(p.Wait(seconds(30)), 1);
  EXPECT_NE(p.Stderr().find("slot it_nodir: file " + missing + "/out.log: cannot open " + missing +
                            "/out.log: the directory " + missing + " does not exist"),
            std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
}

// Another user plants a link at a sink's path in a directory everyone may
// write to: pgslotd appended the slot's rows to the link's target.
TEST_F(DaemonTest, ALinkPlantedInAWorldWritableSinkDirectoryIsNotFollowed) {
  pg_->Exec("DROP TABLE IF EXISTS planted; CREATE TABLE planted(v text)");
  pg_->DropSlotIfExists("it_planted");
  pg_->CreateLogicalSlot("it_planted");
  pg_->Exec("INSERT INTO planted VALUES ('secret')");
  std::string end = pg_->CurrentWalLsn();
  std::string shared = dir_->File("shared");
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  std::string victim = dir_->File("victim");
  WriteFile(victim, "precious\n");
  ASSERT_EQ(symlink(victim.c_str(), (shared + "/out.log").c_str()), 0);
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_planted", "{type: file, path: " + shared + "/out.log}"));
  Subprocess check;
  check.Start({PgslotdBinary(), "--config", cfg, "--check"});
  EXPECT_EQ(check.Wait(seconds(30)), 0) << check.Stderr();
  EXPECT_NE(check.Stderr().find(cfg +
                                ":8: slots[0].sink.path: warning: every user may write to "
                                "the sink's directory " +
                                shared + " (mode 1777)"),
            std::string::npos)
      << check.Stderr();
  std::string confirmed = pg_->ConfirmedFlushLsn("it_planted");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", end, "--log-target", "stderr"});
  EXPECT_EQ(p.Wait(seconds(30)), 1) << p.Stderr();
  EXPECT_NE(p.Stderr().find("warning: every user may write to the sink's directory " + shared),
            std::string::npos)
      << p.Stderr();
  EXPECT_NE(
      p.Stderr().find(shared + "/out.log is a symbolic link (to " + victim + ") in " + shared +
                      ", a directory every user may write to (mode 1777): anyone "
                      "could have put it there; pgslotd does not follow it"),
      std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
  EXPECT_EQ(ReadFile(victim), "precious\n");
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_planted"), confirmed);
}

TEST_F(DaemonTest, SighupReopensTheFileForLogrotate) {
  pg_->Exec("DROP TABLE IF EXISTS rot; CREATE TABLE rot(id serial primary key, v text)");
  pg_->DropSlotIfExists("it_rotate");
  pg_->CreateLogicalSlot("it_rotate");
  std::string log = dir_->File("rot.log");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_rotate", "{type: file, path: " + log + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  pg_->Exec("INSERT INTO rot(v) VALUES ('before rotation')");
  ASSERT_TRUE(WaitFor(
      [&] { return FileExists(log) && ReadFile(log).find("before rotation") != std::string::npos; },
      seconds(20)));
  ASSERT_EQ(rename(log.c_str(), (log + ".1").c_str()), 0);
  ASSERT_TRUE(p.Signal(SIGHUP));
  ASSERT_TRUE(WaitFor([&] { return p.Stderr().find("reopened file " + log) != std::string::npos; },
                      seconds(20)))
      << p.Stderr();
  pg_->Exec("INSERT INTO rot(v) VALUES ('after rotation')");
  ASSERT_TRUE(WaitFor(
      [&] { return FileExists(log) && ReadFile(log).find("after rotation") != std::string::npos; },
      seconds(20)));
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0);
  EXPECT_EQ(ReadFile(log + ".1").find("after rotation"), std::string::npos);
  EXPECT_NE(ReadFile(log + ".1").find("before rotation"), std::string::npos);
  EXPECT_EQ(ReadFile(log).find("before rotation"), std::string::npos);
}

}  // namespace
}  // namespace pgslotd::test

namespace pgslotd::test {
namespace {

TEST_F(DaemonTest, SlotHeldByAnotherConsumerIsRetriedUntilFree) {
  pg_->Exec("DROP TABLE IF EXISTS held; CREATE TABLE held(id serial primary key, v text)");
  FreshSlots({"it_held", "it_held_ref"});
  Subprocess other;  // pg_recvlogical holds the slot, as a crashed run's walsender would
  other.Start({"/usr/lib/postgresql/15/bin/pg_recvlogical", "-d", pg_->Conninfo(), "-S", "it_held",
               "--start", "--no-loop", "-f", "/dev/null"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar("SELECT active FROM pg_replication_slots WHERE slot_name = 'it_held'") ==
               "t";
      },
      std::chrono::seconds(20)));
  // pg_recvlogical may consume (and confirm) the empty transactions of
  // background work before it is killed; the reference still holds them.
  // Without empty transactions both hold exactly the test's own.
  std::string log = dir_->File("held.log");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_held", "{type: file, path: " + log + "}",
                                                    "    options: {skip-empty-xacts: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find(
                   "slot it_held: START_REPLICATION: replication slot \"it_held\" is "
                   "active for PID") != std::string::npos &&
               p.Stderr().find("reconnecting in") != std::string::npos;
      },
      std::chrono::seconds(20)))
      << p.Stderr();
  EXPECT_TRUE(p.Running());
  other.Signal(SIGKILL);
  ASSERT_EQ(other.Wait(std::chrono::seconds(10)), 128 + SIGKILL);
  // Once the slot is free the daemon takes it over and streams.
  pg_->Exec("INSERT INTO held(v) VALUES ('taken over')");
  std::string end = pg_->CurrentWalLsn();
  std::string expected;
  for (auto& l : pg_->PeekChanges("it_held_ref", end, {{"skip-empty-xacts", "1"}})) {
    expected += l + "\n";
  }
  ASSERT_NE(expected.find("taken over"), std::string::npos);
  EXPECT_TRUE(WaitFor([&] { return FileExists(log) && ReadFile(log) == expected; },
                      std::chrono::seconds(60)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(std::chrono::seconds(20)), 0);
  EXPECT_TRUE(SameBytes(ReadFile(log), expected));
  EXPECT_TRUE(FlushAtLeast("it_held", end));
}

TEST_F(DaemonTest, ARoleWithoutReplicationRightsStopsTheSlotWithoutRetrying) {
  pg_->Exec(
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'it_noperm') THEN "
      "CREATE ROLE it_noperm LOGIN; END IF; END $$");
  pg_->DropSlotIfExists("it_perm");
  pg_->CreateLogicalSlot("it_perm");
  std::string cfg =
      WriteConfig(HeaderWith(pg_->Conninfo() + " user=it_noperm") +
                  SlotYaml("it_perm", "{type: file, path: " + dir_->File("p.log") + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  EXPECT_EQ(p.Wait(std::chrono::seconds(30)), 1) << "every slot failed: exit 1";
  EXPECT_NE(p.Stderr().find("slot it_perm: cannot connect"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("must be superuser or replication role"), std::string::npos)
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("reconnecting"), std::string::npos) << p.Stderr();
}

}  // namespace
}  // namespace pgslotd::test
