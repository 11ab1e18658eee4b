// A slot whose thread stops checking in is named: in the log (once, and
// once more when it recovers), in STATUS=, in --status and in the metrics;
// only it holds back the watchdog, and the other slots go on.
//
// The thread is stopped the way gdb's non-stop mode does it: ptrace stops
// one thread of the daemon (found by its name, which is its slot's) while
// the others run.
#include <dirent.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "notify_socket.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

// The thread of process `pid` named `name`, or 0.
pid_t ThreadNamed(pid_t pid, const std::string& name) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  pid_t found = 0;
  for (struct dirent* e; (e = readdir(d)) != nullptr;) {
    std::string comm = dir + "/" + e->d_name + "/comm";
    if (e->d_name[0] != '.' && FileExists(comm) && ReadFile(comm) == name + "\n") {
      found = static_cast<pid_t>(std::stol(e->d_name));
    }
  }
  closedir(d);
  return found;
}

TEST_F(DaemonTest, AStuckSlotThreadIsNamedAndOnlyItHoldsBackTheWatchdog) {
  pg_->Exec("DROP TABLE IF EXISTS wedge; CREATE TABLE wedge(id int)");
  FreshSlots({"it_wedge_a", "it_wedge_b"});
  std::string metrics = dir_->File("metrics.prom");
  std::string log_b = dir_->File("b.log");
  std::string cfg =
      WriteConfig(Header("postgres", "metrics_file: " + metrics + "\n") +
                  SlotYaml("it_wedge_a", "{type: file, path: " + dir_->File("a.log") + "}") +
                  SlotYaml("it_wedge_b", "{type: file, path: " + log_b + "}"));
  NotifySocket notify(dir_->File("notify.sock"));
  Subprocess::Options o;
  // Not responding after half of it: 2 s.
  o.env = {{"NOTIFY_SOCKET", dir_->File("notify.sock")}, {"WATCHDOG_USEC", "4000000"}};
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg}, o);
  ASSERT_EQ(notify.WaitFor("READY=1", seconds(10)), "READY=1") << p.Stderr();
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar(
                   "SELECT count(*) FROM pg_replication_slots WHERE active AND "
                   "slot_name LIKE 'it_wedge_%'") == "2";
      },
      seconds(20)))
      << p.Stderr();
  // And both workers say so themselves (the server marks a slot active a
  // moment before its worker records that it streams: a thread stopped in
  // between would be stuck "connecting").
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string text = FileExists(metrics) ? ReadFile(metrics) : "";
        return text.find("pgslotd_slot_streaming{slot=\"it_wedge_a\"} 1\n") != std::string::npos &&
               text.find("pgslotd_slot_streaming{slot=\"it_wedge_b\"} 1\n") != std::string::npos;
      },
      seconds(20)))
      << p.Stderr();

  // Each slot's thread carries its slot's name.
  pid_t tid = ThreadNamed(p.pid(), "it_wedge_a");
  ASSERT_NE(tid, 0) << "no thread named it_wedge_a";
  ASSERT_NE(ThreadNamed(p.pid(), "it_wedge_b"), 0);
  ASSERT_EQ(ptrace(PTRACE_SEIZE, tid, nullptr, nullptr), 0) << std::strerror(errno);
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr), 0) << std::strerror(errno);
  int st = 0;
  ASSERT_EQ(waitpid(tid, &st, __WALL), tid);

  ASSERT_TRUE(WaitFor(
      [&] {
        return !LinesWithAll(p.Stderr(), {"slot it_wedge_a: has not checked in for ",
                                          "its thread is stuck (last state: streaming",
                                          "the watchdog pings are withheld"})
                    .empty();
      },
      seconds(20)))
      << p.Stderr();
  // Named in STATUS= ...
  std::string status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = notify.WaitFor("STATUS=", std::chrono::milliseconds(500));
        return status.find("it_wedge_a: streaming") != std::string::npos &&
               status.find("NOT RESPONDING") != std::string::npos;
      },
      seconds(10)))
      << status;
  // ... and no pings while it lasts (those sent before the report are
  // already queued: read them first).
  notify.Drain();
  size_t before = notify.all().size();
  notify.WaitFor("WATCHDOG=1", seconds(3));
  for (size_t i = before; i < notify.all().size(); ++i) {
    EXPECT_NE(notify.all()[i], "WATCHDOG=1") << "a ping while a slot is stuck";
  }
  // In --status and the metrics.
  Subprocess s;
  s.Start({PgslotdBinary(), "--config", cfg, "--status"});
  ASSERT_EQ(s.Wait(seconds(10)), 0) << s.Stderr();
  EXPECT_NE(s.Stdout().find("it_wedge_a: streaming, NOT RESPONDING for "), std::string::npos)
      << s.Stdout();
  EXPECT_EQ(s.Stdout().find("it_wedge_b: streaming, NOT"), std::string::npos) << s.Stdout();
  ASSERT_TRUE(WaitFor(
      [&] {
        return FileExists(metrics) &&
               ReadFile(metrics).find("pgslotd_slot_responding{slot=\"it_wedge_a\"} 0\n") !=
                   std::string::npos;
      },
      seconds(15)));
  EXPECT_NE(ReadFile(metrics).find("pgslotd_slot_responding{slot=\"it_wedge_b\"} 1\n"),
            std::string::npos);
  // The other slot goes on.
  pg_->Exec("INSERT INTO wedge VALUES (7)");
  EXPECT_TRUE(WaitFor(
      [&] { return FileExists(log_b) && ReadFile(log_b).find("wedge") != std::string::npos; },
      seconds(20)));

  ASSERT_EQ(ptrace(PTRACE_DETACH, tid, nullptr, nullptr), 0) << std::strerror(errno);
  ASSERT_TRUE(WaitFor(
      [&] { return p.Stderr().find("slot it_wedge_a: checks in again") != std::string::npos; },
      seconds(20)))
      << p.Stderr();
  EXPECT_NE(notify.WaitFor("WATCHDOG=1", seconds(10)), "") << "pings again";
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot it_wedge_a: has not checked in"}).size(), 1u)
      << "reported once";
}

// Stops one thread of `pid` (found by name) the way gdb's non-stop mode does;
// the destructor lets it go on.
class StoppedThread {
 public:
  StoppedThread(pid_t pid, const std::string& name) : tid_(ThreadNamed(pid, name)) {
    if (tid_ == 0) throw std::runtime_error("no thread named " + name);
    if (ptrace(PTRACE_SEIZE, tid_, nullptr, nullptr) != 0 ||
        ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) != 0) {
      throw std::runtime_error(std::string("ptrace: ") + std::strerror(errno));
    }
    int st = 0;
    if (waitpid(tid_, &st, __WALL) != tid_) throw std::runtime_error("waitpid on the thread");
  }
  ~StoppedThread() { Resume(); }
  void Resume() {
    if (tid_ != 0) ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
    tid_ = 0;
  }

 private:
  pid_t tid_;
};

TEST_F(DaemonTest, AReloadThatChangesAStuckSlotNeverSilencesTheLoop) {
  pg_->Exec("DROP TABLE IF EXISTS wedge2; CREATE TABLE wedge2(id int)");
  FreshSlots({"it_rewedge_a", "it_rewedge_b"});
  std::string log_a = dir_->File("a.log"), log_b = dir_->File("b.log");
  auto config = [&](const std::string& a_extra) {
    return WriteConfig(Header() +
                       SlotYaml("it_rewedge_a", "{type: file, path: " + log_a + "}", a_extra) +
                       SlotYaml("it_rewedge_b", "{type: file, path: " + log_b + "}"));
  };
  std::string cfg = config("");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar(
                   "SELECT count(*) FROM pg_replication_slots WHERE active AND "
                   "slot_name LIKE 'it_rewedge_%'") == "2";
      },
      seconds(20)))
      << p.Stderr();
  StoppedThread stuck(p.pid(), "it_rewedge_a");
  config("    fsync_interval: 200ms\n");  // a's settings change
  ASSERT_TRUE(p.Signal(SIGHUP));
  // The reload is done at once: a's new thread waits for the old one.
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("reloaded " + cfg + ": 1 kept, 0 started, 1 restarted") !=
               std::string::npos;
      },
      seconds(10)))
      << p.Stderr();
  Subprocess s;
  s.Start({PgslotdBinary(), "--config", cfg, "--status"});
  ASSERT_EQ(s.Wait(seconds(5)), 0) << s.Stderr();
  EXPECT_NE(s.Stdout().find("it_rewedge_a: starting;"), std::string::npos) << s.Stdout();
  EXPECT_NE(s.Stdout().find("it_rewedge_b: streaming;"), std::string::npos) << s.Stdout();
  // Signals are still taken, and the other slot streams.
  ASSERT_TRUE(p.Signal(SIGHUP));
  ASSERT_TRUE(WaitFor([&] { return LinesWithAll(p.Stderr(), {"reloaded " + cfg}).size() == 2; },
                      seconds(10)))
      << p.Stderr();
  pg_->Exec("INSERT INTO wedge2 VALUES (1)");
  ASSERT_TRUE(WaitFor(
      [&] { return FileExists(log_b) && ReadFile(log_b).find("wedge2") != std::string::npos; },
      seconds(20)));
  // Once the old thread ends, the new one takes the slot over.
  stuck.Resume();
  ASSERT_TRUE(WaitFor(
      [&] { return FileExists(log_a) && ReadFile(log_a).find("wedge2") != std::string::npos; },
      seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
}

TEST_F(DaemonTest, AStopWithAReaderThatHoldsThePipeWithoutReadingDoesNotWait) {
  pg_->Exec("DROP TABLE IF EXISTS holder; CREATE TABLE holder(id int, v text)");
  FreshSlots({"it_holder"});
  std::string before = pg_->CurrentWalLsn();
  std::string fifo = dir_->File("held.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A reader that opens the pipe and never reads from it.
  Subprocess reader;
  reader.Start({"/bin/sh", "-c", "exec sleep 600 < '" + fifo + "'"});
  std::string cfg = WriteConfig(Header() + SlotYaml("it_holder", "{type: pipe, path: " + fifo + "}",
                                                    "    options: {skip-empty-xacts: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  // More than the pipe holds: pgslotd is left with bytes it cannot write.
  pg_->Exec("INSERT INTO holder SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g");
  ASSERT_TRUE(WaitFor(
      [&] {
        Subprocess s;
        s.Start({PgslotdBinary(), "--config", cfg, "--status"});
        return s.Wait(seconds(5)) == 0 &&
               s.Stdout().find("it_holder: waiting for sink;") != std::string::npos;
      },
      seconds(20)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // The stream ended without running into the final timeout, and nothing
  // the reader did not take was acknowledged.
  EXPECT_EQ(p.Stderr().find("timed out waiting for the server"), std::string::npos) << p.Stderr();
  EXPECT_NE(p.Stderr().find("slot it_holder: stopped cleanly"), std::string::npos) << p.Stderr();
  EXPECT_EQ(pg_->Scalar("SELECT confirmed_flush_lsn <= '" + before +
                        "' FROM pg_replication_slots WHERE slot_name = 'it_holder'"),
            "t");
  reader.Signal(SIGKILL);
}

}  // namespace
}  // namespace pgslotd::test
