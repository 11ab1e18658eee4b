// The real daemon speaking the systemd service protocol to a datagram
// socket set as NOTIFY_SOCKET, and reloading its configuration on SIGHUP.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon_fixture.h"
#include "notify_socket.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

std::string ActivePid(PgCluster* pg, const std::string& slot) {
  return pg->Scalar(
      "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots "
      "WHERE slot_name = '" +
      slot + "'");
}

TEST_F(DaemonTest, SpeaksTheServiceProtocolAndReloadsWithoutTouchingUnchangedSlots) {
  pg_->Exec("DROP TABLE IF EXISTS svc; CREATE TABLE svc(id serial primary key, v text)");
  for (const char* s : {"sp_keep", "sp_new", "sp_change", "sp_drop"}) {
    pg_->DropSlotIfExists(s);
    pg_->CreateLogicalSlot(s);
  }
  auto file = [&](const std::string& n) { return "{type: file, path: " + dir_->File(n) + "}"; };
  std::string v1 = Header() + SlotYaml("sp_keep", file("keep.log")) +
                   SlotYaml("sp_change", file("change.log")) +
                   SlotYaml("sp_drop", file("drop.log"));
  std::string cfg = WriteConfig(v1);
  NotifySocket notify(dir_->File("notify.sock"));
  Subprocess::Options o;
  o.env = {{"NOTIFY_SOCKET", dir_->File("notify.sock")}, {"WATCHDOG_USEC", "1000000"}};
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg}, o);

  ASSERT_EQ(notify.WaitFor("READY=1", seconds(10)), "READY=1") << p.Stderr();
  ASSERT_NE(notify.WaitFor("WATCHDOG=1", seconds(5)), "") << "pings at half WATCHDOG_USEC";
  std::string status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = notify.WaitFor("STATUS=", seconds(3));
        return status.find("sp_keep: streaming") != std::string::npos &&
               status.find("sp_drop: streaming") != std::string::npos;
      },
      seconds(20)))
      << status;
  EXPECT_NE(status.find("flushed "), std::string::npos) << status;
  ASSERT_TRUE(WaitFor([&] { return !ActivePid(pg_, "sp_keep").empty(); }, seconds(10)));
  std::string keep_pid = ActivePid(pg_, "sp_keep");
  std::string change_pid = ActivePid(pg_, "sp_change");

  // A broken config is survived: nothing restarts, the old one stays.
  WriteFile(cfg, v1 + "  - name: [broken\n");
  ASSERT_TRUE(p.Signal(SIGHUP));
  std::string reloading = notify.WaitFor("RELOADING=1", seconds(10));
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  ASSERT_EQ(notify.WaitFor("READY=1", seconds(10)), "READY=1");
  EXPECT_NE(p.Stderr().find("reload of " + cfg + " failed"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("the running configuration stays in effect"), std::string::npos);
  EXPECT_TRUE(p.Running());
  EXPECT_EQ(ActivePid(pg_, "sp_keep"), keep_pid);

  // Add one slot, change one, drop one.
  WriteConfig(Header() + SlotYaml("sp_keep", file("keep.log")) +
                  SlotYaml("sp_change", file("change.log"), "    status_interval: 2s\n") +
                  SlotYaml("sp_new", file("new.log")),
              "pgslotd.yaml");
  ASSERT_TRUE(p.Signal(SIGHUP));
  ASSERT_NE(notify.WaitFor("RELOADING=1", seconds(10)), "");
  ASSERT_EQ(notify.WaitFor("READY=1", seconds(20)), "READY=1") << p.Stderr();
  EXPECT_NE(p.Stderr().find("reloaded " + cfg + ": 1 kept, 1 started, 1 restarted, 1 stopped"),
            std::string::npos)
      << p.Stderr();
  ASSERT_TRUE(WaitFor([&] { return !ActivePid(pg_, "sp_new").empty(); }, seconds(20)));
  ASSERT_TRUE(WaitFor([&] { return ActivePid(pg_, "sp_drop").empty(); }, seconds(20)));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string pid = ActivePid(pg_, "sp_change");
        return !pid.empty() && pid != change_pid;
      },
      seconds(20)));
  EXPECT_EQ(ActivePid(pg_, "sp_keep"), keep_pid) << "an unchanged slot keeps its walsender";

  pg_->Exec("INSERT INTO svc(v) VALUES ('after reload')");
  for (const char* f : {"keep.log", "new.log", "change.log"}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          return FileExists(dir_->File(f)) &&
                 ReadFile(dir_->File(f)).find("after reload") != std::string::npos;
        },
        seconds(20)))
        << f;
  }
  EXPECT_FALSE(FileExists(dir_->File("drop.log")) &&
               ReadFile(dir_->File("drop.log")).find("after reload") != std::string::npos);

  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_NE(notify.WaitFor("STOPPING=1", seconds(10)), "");
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
}

}  // namespace
}  // namespace pgslotd::test
