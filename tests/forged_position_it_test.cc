// Positions a server has not proven are never acknowledged, recorded or
// trusted (slot/server_position.h). A small fake server
// (fake_pg_server.cc) sends what a real one cannot be made to: a keepalive
// of FFFFFFFF/0, changes far ahead of the real server's WAL. Then pgslotd
// is pointed back at the real server, which must have lost nothing.
#include <signal.h>

#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "pg/lsn.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

class ForgedPositionTest : public DaemonTest {
 protected:
  // Starts the fake server on dir_ with these --send messages, and `more`
  // of its flags, as `fake` (fake_ if none).
  void StartFake(const std::string& wal_lsn, const std::vector<std::string>& sends,
                 const std::vector<std::string>& more = {}, Subprocess* fake = nullptr) {
    if (fake == nullptr) fake = &fake_;
    std::vector<std::string> argv = {
        FAKE_PG_SERVER_BINARY, "--dir",    dir_->path(), "--port", "5999",
        "--system-id",         SystemId(), "--wal-lsn",  wal_lsn};
    for (const std::string& s : sends) {
      argv.push_back("--send");
      argv.push_back(s);
    }
    argv.insert(argv.end(), more.begin(), more.end());
    fake->Start(argv);
    ASSERT_TRUE(
        WaitFor([&] { return fake->Stdout().find("listening") != std::string::npos; }, seconds(10)))
        << fake->Stderr();
  }

  std::string SystemId() {
    return pg_->Scalar("SELECT system_identifier FROM pg_control_system()");
  }

  // A config for one slot with a file sink, on the fake server or the real.
  std::string Config(bool fake, const std::string& slot, const std::string& log,
                     const std::string& name) {
    return ConfigWithSink(fake, slot, "{type: file, path: " + log + "}", name);
  }
  std::string ConfigWithSink(bool fake, const std::string& slot, const std::string& sink,
                             const std::string& name) {
    std::string conn = fake ? "host=" + dir_->path() + " port=5999 user=postgres dbname=postgres"
                            : pg_->Conninfo();
    return WriteConfig("connection: \"" + conn + "\"\nstatus_interval: 1s\nmonitor_interval: 1s\n" +
                           Dirs() + "slots:\n" + SlotYaml(slot, sink),
                       name);
  }

  // Every flush position the fake server (fake_ if none) was told.
  std::vector<Lsn> Flushes(Subprocess* fake = nullptr) {
    std::vector<Lsn> out;
    for (const std::string& line : SplitLines((fake ? fake : &fake_)->Stdout())) {
      if (line.rfind("flush ", 0) == 0) out.push_back(*ParseLsn(line.substr(6)));
    }
    return out;
  }

  Subprocess fake_;
};

TEST_F(ForgedPositionTest, AForgedKeepaliveIsNeitherAcknowledgedNorRecorded) {
  pg_->Exec("DROP TABLE IF EXISTS forged; CREATE TABLE forged(id int)");
  FreshSlots({"it_forged"});
  std::string pos = pg_->CurrentWalLsn();
  // A keepalive a little ahead of the server's reading (as an honest one can
  // be) is acknowledged only up to the reading; one far beyond ends the
  // session.
  std::string ahead = FormatLsn(*ParseLsn(pos) + (256u << 20));
  StartFake(pos, {"keepalive:" + ahead, "sleep:3000", "keepalive:FFFFFFFF/0"});
  std::string log = dir_->File("forged.log");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", Config(true, "it_forged", log, "fake.yaml")});
  ASSERT_TRUE(WaitFor(
      [&] {
        return !LinesWithAll(p.Stderr(), {"slot it_forged: a keepalive from the server names "
                                          "position FFFFFFFF/0, more than 1 GiB beyond the "
                                          "server's WAL position as read on a plain connection "
                                          "(pg_current_wal_lsn() " +
                                              pos + ")",
                                          "reconnecting in"})
                    .empty() &&
               Flushes().size() >= 2;
      },
      seconds(30)))
      << p.Stderr() << fake_.Stdout();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  for (Lsn flush : Flushes()) EXPECT_LE(flush, *ParseLsn(pos)) << fake_.Stdout();
  EXPECT_EQ(ReadFile(dir_->File("it_forged.state")).find("FFFFFFFF"), std::string::npos);

  // Back at the real server, which nothing was taken from.
  pg_->Exec("INSERT INTO forged VALUES (1)");
  std::string end = pg_->CurrentWalLsn();
  Subprocess real;
  ASSERT_EQ(RunUntil(Config(false, "it_forged", log, "real.yaml"), end, &real), 0);
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_forged"), end);
  EXPECT_NE(ReadFile(log).find("table public.forged: INSERT: id[integer]:1"), std::string::npos)
      << ReadFile(log);
}

TEST_F(ForgedPositionTest, ARecordBeyondTheServersWalIsRefusedAtStart) {
  FreshSlots({"it_ahead"});
  std::string confirmed = pg_->ConfirmedFlushLsn("it_ahead");
  // The fake server's WAL is far ahead of the real one's, and its changes
  // go into the file and its state record as any server's would.
  StartFake("5/0",
            {"xlogdata:5/100:BEGIN 999", "xlogdata:5/100:table public.x: INSERT: id[integer]:1",
             "xlogdata:5/200:COMMIT 999", "keepalive:5/300"});
  std::string log = dir_->File("ahead.log");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", Config(true, "it_ahead", log, "fake.yaml")});
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<Lsn> f = Flushes();
        return !f.empty() && f.back() == *ParseLsn("5/200");
      },
      seconds(30)))
      << p.Stderr() << fake_.Stdout();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // The keepalive's 5/300 was not proven (the server read 5/0): the file
  // stands for its last commit, 5/200.
  for (Lsn flush : Flushes()) EXPECT_LE(flush, *ParseLsn("5/200")) << fake_.Stdout();
  std::string held = ReadFile(log);
  ASSERT_NE(held.find("COMMIT 999"), std::string::npos);

  // The real server's WAL ends long before 5/200: what the record says was
  // never this server's, and nothing is skipped on its strength.
  Subprocess real;
  real.Start({PgslotdBinary(), "--config", Config(false, "it_ahead", log, "real.yaml"), "--end-lsn",
              pg_->CurrentWalLsn()});
  EXPECT_EQ(real.Wait(seconds(30)), 1);
  EXPECT_EQ(LinesWithAll(real.Stderr(), {"slot it_ahead: the state record " +
                                             dir_->File("it_ahead.state") + " says file " + log +
                                             " holds changes up to 5/200, beyond the "
                                             "server's WAL end ",
                                         "nothing is skipped or acknowledged on its strength"})
                .size(),
            1u)
      << real.Stderr();
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_ahead"), confirmed);
  EXPECT_EQ(ReadFile(log), held);
}

// A walsender whose server shuts down asks, after every reply, for its last
// position to be acknowledged; when that position is beyond every reading
// and the plain connection that would read it fails with something other
// than 57P03 (here a proxy's 08P01), pgslotd still ends the session after a
// few seconds of asking rather than hold the server for ever, and
// acknowledges nothing the server has not proven.
TEST_F(ForgedPositionTest, AServerThatKeepsAskingForAnUnprovenPositionIsNotHeld) {
  FreshSlots({"it_asking"});
  std::string pos = pg_->CurrentWalLsn();
  std::string beyond = FormatLsn(*ParseLsn(pos) + 4096);
  StartFake(pos, {}, {"--ask-reply-at", beyond, "--plain-error", "08P01"});
  std::string log = dir_->File("asking.log");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", Config(true, "it_asking", log, "fake.yaml")});
  ASSERT_TRUE(WaitFor(
      [&] {
        return !LinesWithAll(p.Stderr(),
                             {"slot it_asking: the server waits for position " + beyond +
                                  " to be acknowledged, beyond the last reading of its WAL "
                                  "position (" +
                                  pos + "), and reading it again failed (",
                              "the fake server refuses plain connections",
                              "): the session ends so that the server can shut down; nothing "
                              "after the last acknowledged position is lost",
                              "reconnecting in"})
                    .empty() ||
               !p.Running();
      },
      seconds(30)))
      << p.Stderr() << fake_.Stdout();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  std::vector<Lsn> flushes = Flushes();
  ASSERT_FALSE(flushes.empty());
  for (Lsn flush : flushes) EXPECT_LE(flush, *ParseLsn(pos)) << fake_.Stdout();
}

// A reading proves a position of the server it was taken on only. One server
// (here a fake) is read at 1/100000, and the idle slot's acknowledgement
// follows that reading; then another server takes its place on the same
// address, behind it (as after a failover, or a restore), and names a
// position beyond its own WAL but short of the first server's reading.
// Nothing is acknowledged on the first server's strength.
TEST_F(ForgedPositionTest, AReadingOfAnEarlierServerProvesNothingOnTheNext) {
  StartFake("1/100000", {"keepalive:1/100000"}, {"--identify-lsn", "1/0"});
  Subprocess p;
  p.Start(
      {PgslotdBinary(), "--config", ConfigWithSink(true, "it_next", "{type: stdout}", "f.yaml")});
  // The session began at 1/0; only the monitor's reading proves 1/100000.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<Lsn> f = Flushes();
        return !p.Running() || (!f.empty() && f.back() == *ParseLsn("1/100000"));
      },
      seconds(30)))
      << p.Stderr() << fake_.Stdout();
  ASSERT_TRUE(fake_.Signal(SIGKILL));
  fake_.Wait(seconds(10));

  Subprocess next;
  StartFake("1/0", {"keepalive:1/80000"}, {}, &next);
  ASSERT_TRUE(WaitFor(
      [&] {
        return !p.Running() ||
               (next.Stdout().find("start ") != std::string::npos && Flushes(&next).size() >= 3);
      },
      seconds(30)))
      << p.Stderr() << next.Stdout();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // The acknowledgement of the session before is beyond this server's WAL:
  // the stream starts from the slot's own position, and nothing after it is
  // acknowledged on the earlier server's reading.
  EXPECT_NE(next.Stdout().find("start 1/0\n"), std::string::npos) << next.Stdout();
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot it_next: acknowledged up to 1/100000 in an earlier "
                                      "session, beyond this server's WAL end 1/0",
                                      "streaming from the slot's own position 1/0 instead; "
                                      "changes after it may come again, none is skipped"})
                .size(),
            1u)
      << p.Stderr();
  for (Lsn flush : Flushes(&next)) EXPECT_LE(flush, *ParseLsn("1/0")) << next.Stdout();
}

}  // namespace
}  // namespace pgslotd::test
