// Processes dying under a running stream: pgslotd killed with SIGKILL over
// and over, the server restarted and crashed, a pipe's reader killed. Each
// test runs a continuous multi-writer workload and ends by comparing the
// sink with the server's own decoding of an identical reference slot.
#include <signal.h>

#include <random>

#include "fault_util.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Shared cluster: only pgslotd dies.
class CrashTest : public FaultTest {};

// pgslotd is killed with SIGKILL 12 times at random moments while four
// writers keep committing, and restarted each time; a last run with
// --end-lsn drains the slot. The file must hold every committed transaction
// exactly once, whole and in commit order: byte for byte the reference.
TEST_F(CrashTest, TwelveKillNinesLoseAndRepeatNothing) {
  const std::string db = "fault_crash";
  pg_->CreateDatabase(db);
  Workload::CreateTable(pg_, "crash_t", db);
  FreshSlotsIn(db, {"fa_crash", "fa_crash_ref"});
  const std::string log = dir_->File("crash.log");
  const std::string cfg = WriteConfig(FaultConfig(
      pg_->Conninfo(db),
      SlotYaml("fa_crash", FileSinkYaml(log), "    fsync_interval: 100ms\n" + XidOptionsYaml())));

  const uint64_t seed = FaultSeed();
  std::mt19937_64 rng(seed);
  Workload work({pg_->Conninfo(db), "crash_t", 4, seed, milliseconds(10)});
  work.Start();
  ASSERT_TRUE(work.WaitMore(20, seconds(30))) << work.first_error();

  // Each kill hits a daemon that is streaming, not one still connecting:
  // it comes once this run has made the file grow past what the last one
  // left (the writers never pause, so it always does), after a random
  // further delay.
  constexpr int kKills = 12;
  std::string delays;
  for (int k = 0; k < kKills; ++k) {
    const uint64_t before = FileSize(log);
    const int delay = static_cast<int>(rng() % 401);
    delays += (k ? "," : "") + std::to_string(delay);
    Subprocess p;
    StartDaemon(cfg, &p);
    ASSERT_TRUE(WaitFor([&] { return FileSize(log) > before || !p.Running(); }, seconds(60)))
        << "run " << k + 1 << " wrote nothing:\n"
        << p.Stderr();
    std::this_thread::sleep_for(milliseconds(delay));  // a random point of the stream
    ASSERT_TRUE(p.Running()) << "run " << k + 1 << " ended by itself:\n" << p.Stderr();
    ASSERT_TRUE(p.Signal(SIGKILL));
    ASSERT_EQ(p.Wait(seconds(10)), 128 + SIGKILL);
  }
  std::cout << "[ fault    ] kill delays after the first write (ms): " << delays << std::endl;

  work.Stop();
  EXPECT_EQ(work.failures(), 0u) << work.first_error();
  const std::string end = pg_->CurrentWalLsn();
  Subprocess last;
  ASSERT_EQ(RunToEnd(cfg, end, &last), 0);

  const std::string want = Reference("fa_crash_ref", end, XidOptions(), db);
  const std::string got = ReadFile(log);
  ASSERT_GT(ParseTxns(want).txns.size(), 100u) << "too little workload to prove anything";
  EXPECT_TRUE(SameOutput(got, want)) << "after " << kKills << " kills (delays " << delays << ")";
  EXPECT_TRUE(FlushAtLeast("fa_crash", end));
  std::cout << "[ fault    ] " << kKills << " kills mid-stream, " << got.size() << " bytes, "
            << ParseTxns(got).txns.size() << " transactions" << std::endl;
}

// A private cluster: these tests stop and crash their server.
class ServerRestartTest : public FaultTest {
 protected:
  ServerRestartTest() : FaultTest(Cluster::kPrivate) {}

  void NeverHoldsUpAShutdown(const std::string& mode);

  // One long pgslotd run into a file while four writers commit; `fault` is
  // done to the server twice mid-stream. pgslotd must come back by itself
  // each time, catch up on its own, and the file must then be exactly the
  // reference.
  void SurvivesTwice(const std::string& what, const std::function<void()>& fault) {
    const std::string db = "fault_restart";
    pg_->CreateDatabase(db);
    Workload::CreateTable(pg_, "restart_t", db);
    FreshSlotsIn(db, {"fa_restart", "fa_restart_ref"});
    const std::string log = dir_->File("restart.log");
    const std::string cfg = WriteConfig(
        FaultConfig(pg_->Conninfo(db), SlotYaml("fa_restart", FileSinkYaml(log),
                                                "    fsync_interval: 100ms\n" + XidOptionsYaml())));
    const uint64_t seed = FaultSeed();
    Workload work({pg_->Conninfo(db), "restart_t", 4, seed, milliseconds(10)});
    work.Start();
    Subprocess p;
    StartDaemon(cfg, &p);
    for (int round = 1; round <= 2; ++round) {
      const uint64_t before = FileSize(log);
      ASSERT_TRUE(
          WaitFor([&] { return FileSize(log) > before + 20000 || !p.Running(); }, seconds(30)))
          << p.Stderr();
      ASSERT_TRUE(p.Running()) << p.Stderr();
      fault();
      // Back by itself: streaming again, and new data arriving.
      ASSERT_TRUE(
          WaitFor([&] { return CountOf(p.Stderr(), "streaming again from") >= size_t(round); },
                  seconds(60)))
          << what << " #" << round << ": no reconnect\n"
          << p.Stderr();
      ASSERT_TRUE(work.WaitMore(50, seconds(30))) << work.first_error();
    }
    work.Stop();
    const std::string end = pg_->CurrentWalLsn();
    ASSERT_TRUE(CatchUpAndStop(&p, "fa_restart", end));
    EXPECT_NE(p.Stderr().find("reconnecting in"), std::string::npos) << p.Stderr();
    const std::string want = Reference("fa_restart_ref", end, XidOptions(), db);
    const std::string got = ReadFile(log);
    ASSERT_GT(ParseTxns(want).txns.size(), 50u);
    EXPECT_TRUE(SameOutput(got, want)) << what;
    std::cout << "[ fault    ] " << what << " twice: " << got.size() << " bytes, "
              << ParseTxns(got).txns.size() << " transactions, " << work.failures()
              << " writer errors" << std::endl;
  }
};

TEST_F(ServerRestartTest, FastRestartMidStreamIsSurvivedExactly) {
  SurvivesTwice("pg_ctl restart -m fast", [&] { pg_->Restart("fast"); });
}

// An immediate stop is a crash: no shutdown checkpoint, so the server may
// come back with the slot's confirmed_flush_lsn older than what pgslotd had
// acknowledged, and re-send transactions the file already holds.
TEST_F(ServerRestartTest, ServerCrashMidStreamIsSurvivedExactly) {
  SurvivesTwice("pg_ctl stop -m immediate + start", [&] {
    pg_->Stop("immediate");
    pg_->Start();
  });
}

// A fast or smart shutdown waits for each logical walsender until the end
// of the WAL it has read is acknowledged. pgslotd cannot prove that position
// when WAL was written since its last reading, and a server shutting down
// takes no new connection to read one on; so it ends the session rather
// than hold the server. A smart shutdown also waits for every ordinary
// session to end: the monitor holds none between its polls. The server
// stops in its usual time (pg_ctl gives up after 60 s), and pgslotd streams
// again once it is back, having lost and repeated nothing.
void ServerRestartTest::NeverHoldsUpAShutdown(const std::string& mode) {
  const std::string db = "fault_shutdown";
  pg_->CreateDatabase(db);
  pg_->Exec("CREATE TABLE shut_t(id int)", db);
  FreshSlotsIn(db, {"fa_shut", "fa_shut_ref"});
  const std::string log = dir_->File("shut.log");
  auto config = [&](const std::string& interval) {
    return FaultConfig(pg_->Conninfo(db), SlotYaml("fa_shut", FileSinkYaml(log), XidOptionsYaml()),
                       "monitor_interval: " + interval + "\n");
  };
  const std::string cfg = WriteConfig(config("1h"));
  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor([&] { return CountOf(p.Stderr(), "streaming from") >= 1; }, seconds(30)))
      << p.Stderr();
  pg_->Exec("INSERT INTO shut_t VALUES (1)", db);
  pg_->Exec("CREATE TABLE shut_other AS SELECT generate_series(1, 1000) AS id");
  const std::string first = pg_->CurrentWalLsn();
  // A shorter interval makes the monitor poll at once: that reading lets
  // the acknowledgement pass the WAL the slot does not decode (another
  // database's), so the monitor has polled (and, when it kept its
  // connection between polls, holds an idle session).
  ASSERT_EQ(WriteConfig(config("59m")), cfg);
  ASSERT_TRUE(p.Signal(SIGHUP));
  ASSERT_TRUE(WaitFor([&] { return !p.Running() || FlushAtLeast("fa_shut", first); }, seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();
  // More WAL the slot does not decode: the walsender's last position is now
  // beyond every reading pgslotd took.
  pg_->Exec("CREATE TABLE shut_later AS SELECT generate_series(1, 1000) AS id");

  pg_->Stop(mode);  // throws if the server has not stopped within 60 s
  EXPECT_NE(p.Stderr().find("the session ends so that the server can shut down"), std::string::npos)
      << p.Stderr();
  pg_->Start();
  ASSERT_TRUE(
      WaitFor([&] { return CountOf(p.Stderr(), "streaming again from") >= 1; }, seconds(60)))
      << p.Stderr();
  pg_->Exec("INSERT INTO shut_t VALUES (2)", db);
  const std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(CatchUpAndStop(&p, "fa_shut", end));
  EXPECT_EQ(ReadFile(log), Reference("fa_shut_ref", end, XidOptions(), db));
}

TEST_F(ServerRestartTest, AnIdleSlotNeverHoldsUpAFastShutdown) { NeverHoldsUpAShutdown("fast"); }

TEST_F(ServerRestartTest, AnIdleSlotNeverHoldsUpASmartShutdown) { NeverHoldsUpAShutdown("smart"); }

// Shared cluster: only the reader dies.
class PipeReaderTest : public FaultTest {};

// A FIFO whose reader is killed (SIGKILL) 8 times while data flows, and
// started again each time. A pipe is at-least-once by design: what a reader
// took is gone from pgslotd, and the server re-sends from the last position
// acknowledged. So the output may hold a transaction's beginning (the reader
// died in it) and transactions again, but only as the rule of AtLeastOnce
// (fault_util.h) says: every session starts on a BEGIN, every complete
// transaction is the reference's, an incomplete one is a prefix of the
// reference's that comes whole later, and the complete ones with repeats
// removed are exactly the reference's, in order.
//
// The killed readers are slower than the stream's bursts (256 KiB/s), so
// that the pipe usually holds unread bytes when one dies: those bytes are
// gone with the pipe and must not count as delivered.
TEST_F(PipeReaderTest, ReaderKilledEightTimesLosesNothing) {
  const std::string db = "fault_pipe";
  pg_->CreateDatabase(db);
  Workload::CreateTable(pg_, "pipe_t", db);
  FreshSlotsIn(db, {"fa_pipe", "fa_pipe_ref"});
  const std::string fifo = dir_->File("out.fifo");
  const std::string cfg = WriteConfig(
      FaultConfig(pg_->Conninfo(db),
                  SlotYaml("fa_pipe", "{type: pipe, path: " + fifo + "}", XidOptionsYaml())));
  const uint64_t seed = FaultSeed();
  std::mt19937_64 rng(seed);
  Workload work({pg_->Conninfo(db), "pipe_t", 4, seed, milliseconds(40)});
  work.Start();
  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor([&] { return FileExists(fifo); }, seconds(20))) << p.Stderr();

  constexpr int kKills = 8;
  std::vector<std::string> outputs;
  std::string delays;
  size_t sessions_before = 0;  // "streaming again" lines before this reader
  for (int k = 0; k < kKills; ++k) {
    outputs.push_back(dir_->File("reader-" + std::to_string(k + 1) + ".out"));
    FifoReader reader(fifo, outputs.back(), 256 * 1024);
    // pgslotd is streaming into this reader's pipe: it has started a new
    // session since the last reader died (the first: since it started),
    // and the reader has taken something.
    ASSERT_TRUE(WaitFor(
        [&] {
          return (k == 0 || CountOf(p.Stderr(), "streaming again from") > sessions_before) &&
                 reader.bytes() > 0;
        },
        seconds(60)))
        << p.Stderr();
    const int delay = 100 + static_cast<int>(rng() % 601);
    delays += (k ? "," : "") + std::to_string(delay);
    std::this_thread::sleep_for(milliseconds(delay));  // let the kill land mid-stream
    const size_t went_away = CountOf(p.Stderr(), "went away");
    reader.Kill();
    // Start the next reader once pgslotd has noticed, so that it reads a
    // new pipe, not the rest of the old one (which would hide a loss).
    ASSERT_TRUE(WaitFor([&] { return CountOf(p.Stderr(), "went away") > went_away; }, seconds(30)))
        << "pgslotd did not notice reader " << k + 1 << " going away:\n"
        << p.Stderr();
    sessions_before = CountOf(p.Stderr(), "streaming again from");
    ASSERT_TRUE(p.Running()) << p.Stderr();
  }
  std::cout << "[ fault    ] reader kill delays (ms): " << delays << std::endl;

  // The last reader takes everything up to the end.
  outputs.push_back(dir_->File("reader-last.out"));
  FifoReader last(fifo, outputs.back());
  ASSERT_TRUE(work.WaitMore(20, seconds(30))) << work.first_error();
  work.Stop();
  EXPECT_EQ(work.failures(), 0u) << work.first_error();
  const std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(CatchUpAndStop(&p, "fa_pipe", end));
  EXPECT_EQ(last.Wait(seconds(10)), 0) << "the last reader did not see the end of the pipe";

  std::vector<std::string> sessions;
  uint64_t total = 0;
  for (const std::string& o : outputs) {
    sessions.push_back(FileExists(o) ? ReadFile(o) : "");
    total += sessions.back().size();
  }
  const std::string want = Reference("fa_pipe_ref", end, XidOptions(), db);
  ASSERT_GT(ParseTxns(want).txns.size(), 100u);
  ::testing::AssertionResult ok = AtLeastOnce(sessions, want);
  // On failure, pgslotd's own account of each reader's end: the position
  // it announced when the reader went away and the one it resumed from.
  EXPECT_TRUE(ok) << "reader kill delays " << delays << "; pgslotd's reconnects:\n"
                  << LinesWith(p.Stderr(), {"reconnecting in", "streaming again"});
  std::cout << "[ fault    ] " << kKills << " reader kills, " << total << " bytes read, "
            << want.size() << " in the reference: " << ok.message() << std::endl;
}

}  // namespace
}  // namespace pgslotd::test::fault
