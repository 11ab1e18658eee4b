// The service protocol messages, read back from a real datagram socket set
// as NOTIFY_SOCKET, and the watchdog's gate.
#include "daemon/notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "daemon/status_line.h"

namespace pgslotd {
namespace {

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/pgslotd-notify-" + std::to_string(getpid());
    unlink(path_.c_str());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  }
  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(fd_);
    unlink(path_.c_str());
  }
  std::string Next() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, n) : std::string("(nothing)");
  }
  std::string path_;
  int fd_ = -1;
};

TEST_F(NotifyTest, SendsEachServiceMessage) {
  Notifier n;
  ASSERT_TRUE(n.enabled());
  EXPECT_EQ(n.watchdog_interval(), std::chrono::seconds(3));
  n.Ready();
  EXPECT_EQ(Next(), "READY=1");
  n.Status("orders: streaming");
  EXPECT_EQ(Next(), "STATUS=orders: streaming");
  n.Reloading();
  std::string reload = Next();
  ASSERT_EQ(reload.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << reload;
  uint64_t usec = std::stoull(reload.substr(reload.find('=', 12) + 1));
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000u + ts.tv_nsec / 1000;
  EXPECT_LE(usec, now);
  EXPECT_GT(usec, now - 5000000);
  n.WatchdogPing();
  EXPECT_EQ(Next(), "WATCHDOG=1");
  n.Stopping();
  EXPECT_EQ(Next(), "STOPPING=1");
}

TEST_F(NotifyTest, WatchdogOfAnotherProcessIsNotOurs) {
  setenv("WATCHDOG_PID", "1", 1);
  Notifier n;
  EXPECT_EQ(n.watchdog_interval().count(), 0);
  n.WatchdogPing();
  n.Ready();
  EXPECT_EQ(Next(), "READY=1") << "no WATCHDOG=1 before it";
}

TEST(NotifyOffTest, WithoutNotifySocketNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  Notifier n;
  EXPECT_FALSE(n.enabled());
  n.Ready();  // must not crash or block
  n.Status("x");
}

TEST(WatchdogGateTest, SilentWhenOneRunningThreadStopsCheckingIn) {
  const int64_t s = 1000000000;
  std::vector<SlotView> views(3);
  views[0].heartbeat_ns = 100 * s;
  views[1].heartbeat_ns = 99 * s;
  views[2].heartbeat_ns = 71 * s;  // stuck for 30 s
  EXPECT_FALSE(AllCheckedIn(views, 101 * s, std::chrono::seconds(20)));
  views[2].finished = true;  // a slot that stopped (failed) no longer counts
  EXPECT_TRUE(AllCheckedIn(views, 101 * s, std::chrono::seconds(20)));
  views[2].finished = false;
  views[2].heartbeat_ns = 95 * s;
  EXPECT_TRUE(AllCheckedIn(views, 101 * s, std::chrono::seconds(20)));
}

TEST(StatusLineTest, SummarisesEverySlot) {
  SlotView a;
  a.name = "orders";
  a.state = SlotState::kStreaming;
  a.flushed = 0x16B3748;
  a.server_wal_end = 0x16B3748 + 3 * 1024 * 1024 / 2;
  SlotView b;
  b.name = "items";
  b.state = SlotState::kWaitingForSink;
  SlotView c;
  c.name = "gone";
  c.state = SlotState::kFailed;
  c.flushed = 0x100;
  EXPECT_EQ(StatusLine({a, b, c}),
            "orders: streaming, flushed 0/16B3748, lag 1.5 MiB; items: waiting for sink; "
            "gone: failed, flushed 0/100");
  EXPECT_EQ(FormatBytes(12), "12 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(StatusLine({}), "no slots");
}

// A json slot's spool: in --status only while it holds an open streamed
// transaction, always in --status json.
TEST(StatusLineTest, TheSpoolOfOpenStreamedTransactionsIsShownWhileItHoldsSome) {
  SlotView v;
  v.name = "orders";
  v.state = SlotState::kStreaming;
  v.sink = "file /x";
  v.sink_state = "idle";
  v.finished = true;
  v.has_spool = true;
  std::string quiet = StatusReport({v}, 0, false);
  EXPECT_EQ(quiet.find("spool"), std::string::npos) << quiet;
  std::string json = StatusReport({v}, 0, true);
  EXPECT_NE(json.find("\"spool_memory_bytes\":0,\"spool_disk_bytes\":0}"), std::string::npos)
      << json;

  v.spool_memory = 4 << 20;
  v.spool_disk = 3u << 29;
  std::string busy = StatusReport({v}, 0, false);
  EXPECT_NE(busy.find("(idle); spool of open streamed transactions 4.0 MiB in memory, 1.5 GiB "
                      "on disk\n"),
            std::string::npos)
      << busy;
  json = StatusReport({v}, 0, true);
  EXPECT_NE(json.find("\"spool_memory_bytes\":4194304,\"spool_disk_bytes\":1610612736}"),
            std::string::npos)
      << json;
}

TEST(StatusLineTest, ASnapshotShowsTheTableItReadsAndItsProgress) {
  SlotView v;
  v.name = "orders";
  v.state = SlotState::kStreaming;
  v.sink = "stdout";
  v.sink_state = "idle";
  v.finished = true;
  std::string none = StatusReport({v}, 0, true);
  EXPECT_EQ(none.find("snapshot"), std::string::npos) << none;

  v.has_snapshot = true;
  v.snapshot_table = "public.items";
  v.snapshot_rows = 25000;
  v.snapshot_tables_done = 2;
  v.snapshot_tables_left = 3;
  std::string line = StatusReport({v}, 0, false);
  EXPECT_NE(line.find("(idle); snapshot reading public.items, 25000 rows written, 2 tables done, "
                      "3 to go\n"),
            std::string::npos)
      << line;
  std::string json = StatusReport({v}, 0, true);
  EXPECT_NE(json.find("\"snapshot_table\":\"public.items\",\"snapshot_rows\":25000,"
                      "\"snapshot_tables_done\":2,\"snapshot_tables_left\":3,"
                      "\"snapshot_table_rows_estimate\":null}"),
            std::string::npos)
      << json;
  v.snapshot_table_estimate = 1000000;  // the planner's count of the table
  line = StatusReport({v}, 0, false);
  EXPECT_NE(line.find("snapshot reading public.items (about 1000000 rows), 25000 rows written"),
            std::string::npos)
      << line;
  json = StatusReport({v}, 0, true);
  EXPECT_NE(json.find("\"snapshot_table_rows_estimate\":1000000}"), std::string::npos) << json;

  v.snapshot_table.clear();  // done
  v.snapshot_tables_left = 0;
  line = StatusReport({v}, 0, false);
  EXPECT_EQ(line.find("snapshot"), std::string::npos) << line;
  json = StatusReport({v}, 0, true);
  EXPECT_NE(json.find("\"snapshot_table\":\"\",\"snapshot_rows\":25000,"), std::string::npos)
      << json;
}

}  // namespace
}  // namespace pgslotd
