// The connection to the server failing under a running stream: a TCP proxy
// (real socat) killed or frozen between pgslotd and the server, and pgslotd
// itself frozen until the server gives up on it. Each test ends by comparing
// the file sink with the server's own decoding of an identical reference
// slot, byte for byte.
#include <signal.h>

#include <cstring>

#include "fault_util.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// pgslotd reaches the shared cluster through a socat proxy; the workload
// writes directly (Unix socket), so it never notices the proxy's trouble.
class ProxyTest : public FaultTest {
 protected:
  explicit ProxyTest(Cluster cluster = Cluster::kShared) : FaultTest(cluster) {}
  // The proxy's conninfo for database `db`.
  std::string ProxyConninfo(const std::string& db) const {
    return "host=127.0.0.1 port=" + std::to_string(proxy_.port()) + " user=postgres dbname=" + db;
  }

  // Database, table, slots, proxy and a config for slot `slot` with
  // `extra` top-level keys; returns the config's path.
  std::string Prepare(const std::string& db, const std::string& slot, const std::string& log,
                      const std::string& extra = "") {
    pg_->CreateDatabase(db);
    Workload::CreateTable(pg_, db + "_t", db);
    const std::string ref = slot + "_ref";
    FreshSlotsIn(db, {slot.c_str(), ref.c_str()});
    proxy_.Start(PickFreeTcpPort(), pg_->port());
    return WriteConfig(FaultConfig(
        ProxyConninfo(db),
        SlotYaml(slot, FileSinkYaml(log), "    fsync_interval: 100ms\n" + XidOptionsYaml()),
        extra));
  }

  // Stops the workload, lets the daemon catch up by itself, stops it and
  // compares the file with the reference.
  void Finish(Workload* work, Subprocess* p, const std::string& db, const std::string& slot,
              const std::string& log, const std::string& what) {
    ASSERT_TRUE(work->WaitMore(20, seconds(30))) << work->first_error();
    work->Stop();
    EXPECT_EQ(work->failures(), 0u) << work->first_error();
    const std::string end = pg_->CurrentWalLsn();
    ASSERT_TRUE(CatchUpAndStop(p, slot, end));
    const std::string want = Reference(slot + "_ref", end, XidOptions(), db);
    const std::string got = ReadFile(log);
    ASSERT_GT(ParseTxns(want).txns.size(), 50u);
    EXPECT_TRUE(SameOutput(got, want)) << what;
    std::cout << "[ fault    ] " << what << ": " << got.size() << " bytes, "
              << ParseTxns(got).txns.size() << " transactions" << std::endl;
  }

  TcpProxy proxy_;
};

// The proxy is killed mid-stream (every connection through it cut at once)
// and a new one started on the same port a moment later, twice: pgslotd
// notices, retries until the new proxy is there, and loses or repeats
// nothing.
TEST_F(ProxyTest, KilledProxyMidStreamIsReconnectedThroughANewOne) {
  const std::string db = "fault_proxy_kill";
  const std::string log = dir_->File("proxy-kill.log");
  const std::string cfg = Prepare(db, "fa_proxy_kill", log);
  const uint64_t seed = FaultSeed();
  Workload work({pg_->Conninfo(db), db + "_t", 4, seed, milliseconds(10)});
  work.Start();
  Subprocess p;
  StartDaemon(cfg, &p);
  for (int round = 1; round <= 2; ++round) {
    const uint64_t before = FileSize(log);
    ASSERT_TRUE(
        WaitFor([&] { return FileSize(log) > before + 20000 || !p.Running(); }, seconds(30)))
        << p.Stderr();
    const size_t reconnects = CountOf(p.Stderr(), "reconnecting in");
    const int port = proxy_.port();
    proxy_.Kill();
    // With no proxy at all, pgslotd must be retrying (connection refused).
    ASSERT_TRUE(
        WaitFor([&] { return CountOf(p.Stderr(), "reconnecting in") > reconnects; }, seconds(30)))
        << "the cut connection went unnoticed:\n"
        << p.Stderr();
    proxy_.Start(port, pg_->port());
    ASSERT_TRUE(WaitFor(
        [&] { return CountOf(p.Stderr(), "streaming again from") >= size_t(round); }, seconds(60)))
        << p.Stderr();
  }
  Finish(&work, &p, db, "fa_proxy_kill", log, "proxy killed twice");
}

// The proxy is frozen (SIGSTOP): the TCP connection stays open, the kernel
// keeps acknowledging what pgslotd sends, but nothing comes from the server.
// Keepalives and tcp_user_timeout cannot see that; receive_timeout must:
// pgslotd logs the silence and reconnects within about receive_timeout.
// Then the frozen proxy is killed and a fresh one started on the same port,
// through which the reconnect succeeds.
// pgslotd never takes the server for dead sooner than the server's own
// wal_sender_timeout (a busy walsender may be silent for half of it), so
// this test runs on a private cluster with both at 3 s.
class FrozenProxyTest : public ProxyTest {
 protected:
  FrozenProxyTest() : ProxyTest(Cluster::kPrivate) {}
};

TEST_F(FrozenProxyTest, FrozenProxyIsDetectedByReceiveTimeout) {
  ASSERT_TRUE(SetWalSenderTimeout("3s"));
  const std::string db = "fault_proxy_freeze";
  const std::string log = dir_->File("proxy-freeze.log");
  const std::string cfg = Prepare(db, "fa_proxy_freeze", log, "receive_timeout: 3s\n");
  const uint64_t seed = FaultSeed();
  Workload work({pg_->Conninfo(db), db + "_t", 4, seed, milliseconds(10)});
  work.Start();
  Subprocess p;
  StartDaemon(cfg, &p);
  const uint64_t before = FileSize(log);
  ASSERT_TRUE(WaitFor([&] { return FileSize(log) > before + 20000 || !p.Running(); }, seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();
  const size_t reconnects = CountOf(p.Stderr(), "reconnecting in");
  const size_t logged_before = p.Stderr().size();
  proxy_.Freeze();
  // Noticed by receive_timeout, which says so and how long the connection
  // was silent; TCP would take a minute (tcp_user_timeout), and here not
  // even that: the frozen proxy's kernel still acknowledges every byte.
  // The limit only ends a failing run; what is asserted is who noticed.
  ASSERT_TRUE(
      WaitFor([&] { return CountOf(p.Stderr(), "reconnecting in") > reconnects; }, seconds(50)))
      << "a silent connection went unnoticed:\n"
      << p.Stderr();
  const std::string err = p.Stderr();
  const std::string said = "no message from the server for ";
  const size_t at = err.find(said, logged_before);
  ASSERT_NE(at, std::string::npos) << "not noticed by receive_timeout:\n" << err;
  const long silent_ms = std::stol(err.substr(at + said.size()));
  EXPECT_GE(silent_ms, 3000) << err;
  std::cout << "[ fault    ] frozen proxy noticed after " << silent_ms << " ms of silence"
            << std::endl;
  const int port = proxy_.port();
  proxy_.Kill();
  proxy_.Start(port, pg_->port());
  ASSERT_TRUE(
      WaitFor([&] { return CountOf(p.Stderr(), "streaming again from") >= 1; }, seconds(60)))
      << p.Stderr();
  Finish(&work, &p, db, "fa_proxy_freeze", log, "proxy frozen");
}

// A receive_timeout below the server's wal_sender_timeout is raised to it:
// a server busy decoding may be silent for up to half of its own timeout,
// and must not be taken for dead. With 2 s configured and the server at 6 s,
// a frozen connection is given up after 6 s, not 2.
TEST_F(FrozenProxyTest, ReceiveTimeoutBelowTheServersIsRaisedToIt) {
  ASSERT_TRUE(SetWalSenderTimeout("6s"));
  const std::string db = "fault_proxy_raise";
  const std::string log = dir_->File("proxy-raise.log");
  const std::string cfg = Prepare(db, "fa_proxy_raise", log, "receive_timeout: 2s\n");
  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor([&] { return CountOf(p.Stderr(), "streaming from") >= 1 || !p.Running(); },
                      seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find(
                   "receive_timeout 2000 ms is below the server's "
                   "wal_sender_timeout (6s): using 6000 ms") != std::string::npos;
      },
      seconds(10)))
      << p.Stderr();
  proxy_.Freeze();
  ASSERT_TRUE(
      WaitFor([&] { return CountOf(p.Stderr(), "no message from the server") >= 1; }, seconds(30)))
      << p.Stderr();
  // The error gives how long the connection was silent: at least the
  // server's 6 s, where the configured 2 s would have said about 2000 ms.
  std::string err = p.Stderr();
  size_t at = err.find("no message from the server for ");
  ASSERT_NE(at, std::string::npos);
  long silent_ms = std::stol(err.substr(at + strlen("no message from the server for ")));
  EXPECT_GE(silent_ms, 6000) << err;
  std::cout << "[ fault    ] silent for " << silent_ms << " ms before giving up" << std::endl;
  const int port = proxy_.port();
  proxy_.Kill();
  proxy_.Start(port, pg_->port());
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(30)), 0) << p.Stderr();
}

// A private cluster whose walsenders give up on a silent client after 2 s.
class FrozenDaemonTest : public FaultTest {
 protected:
  FrozenDaemonTest() : FaultTest(Cluster::kPrivate) {}
};

// pgslotd is frozen (SIGSTOP) until the server has dropped its walsender
// for replication timeout, then continued (SIGCONT): it must find its
// connection dead, reconnect by itself, and the file must end exactly equal
// to the reference.
TEST_F(FrozenDaemonTest, RecoversAfterTheServerDroppedItsWalsender) {
  ASSERT_TRUE(SetWalSenderTimeout("2s"));
  const std::string db = "fault_frozen";
  pg_->CreateDatabase(db);
  Workload::CreateTable(pg_, "frozen_t", db);
  FreshSlotsIn(db, {"fa_frozen", "fa_frozen_ref"});
  const std::string log = dir_->File("frozen.log");
  const std::string cfg = WriteConfig(FaultConfig(
      pg_->Conninfo(db),
      SlotYaml("fa_frozen", FileSinkYaml(log), "    fsync_interval: 100ms\n" + XidOptionsYaml())));
  const uint64_t seed = FaultSeed();
  Workload work({pg_->Conninfo(db), "frozen_t", 4, seed, milliseconds(10)});
  work.Start();
  Subprocess p;
  StartDaemon(cfg, &p);
  const uint64_t before = FileSize(log);
  ASSERT_TRUE(WaitFor([&] { return FileSize(log) > before + 20000 || !p.Running(); }, seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();

  const std::string active =
      "SELECT active FROM pg_replication_slots WHERE slot_name = 'fa_frozen'";
  ASSERT_EQ(pg_->Scalar(active), "t");
  ASSERT_TRUE(p.Signal(SIGSTOP));
  // The server gives up on the silent client: its walsender ends and the
  // slot is released, while pgslotd knows nothing of it.
  bool dropped = WaitFor([&] { return pg_->Scalar(active) == "f"; }, seconds(30));
  p.Signal(SIGCONT);
  ASSERT_TRUE(dropped) << "the server kept the walsender of a frozen client:\n"
                       << pg_->ServerLogTail();
  EXPECT_NE(pg_->ServerLogTail(20000).find("terminating walsender process due to replication "
                                           "timeout"),
            std::string::npos)
      << pg_->ServerLogTail();
  ASSERT_TRUE(
      WaitFor([&] { return CountOf(p.Stderr(), "streaming again from") >= 1; }, seconds(60)))
      << p.Stderr();
  ASSERT_TRUE(work.WaitMore(20, seconds(30))) << work.first_error();
  work.Stop();
  EXPECT_EQ(work.failures(), 0u) << work.first_error();
  const std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(CatchUpAndStop(&p, "fa_frozen", end));
  const std::string want = Reference("fa_frozen_ref", end, XidOptions(), db);
  const std::string got = ReadFile(log);
  ASSERT_GT(ParseTxns(want).txns.size(), 50u);
  EXPECT_TRUE(SameOutput(got, want));
  std::cout << "[ fault    ] frozen past wal_sender_timeout: " << got.size() << " bytes, "
            << ParseTxns(got).txns.size() << " transactions" << std::endl;
}

}  // namespace
}  // namespace pgslotd::test::fault
