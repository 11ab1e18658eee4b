// One very large message costs about twice its size while it passes (libpq
// holds it in its input buffer and hands out one copy; pgslotd writes raw
// output from that copy and keeps none of its own), and the memory is given
// back once it has passed (libpq's buffer never shrinks: the session is
// started again).
#include <signal.h>

#include <string>

#include "daemon_fixture.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

// A field of /proc/<pid>/status in KiB ("VmRSS", "VmHWM"), or -1.
long StatusKiB(pid_t pid, const std::string& field) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  if (!FileExists(path)) return -1;
  for (const std::string& line : SplitLines(ReadFile(path))) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

TEST_F(DaemonTest, ALargeMessageCostsTwiceItsSizeAndIsGivenBack) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "memory figures mean nothing under a sanitizer";
#endif
  pg_->Exec("DROP TABLE IF EXISTS bigone; CREATE TABLE bigone(id int, v text)");
  FreshSlots({"it_big"});
  std::string log = dir_->File("big.log");
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_big", "{type: file, path: " + log + "}", "    fsync_interval: 0\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("streaming from") != std::string::npos; }, seconds(20)));
  long before = StatusKiB(p.pid(), "VmRSS");
  ASSERT_GT(before, 0);
  const long kMessageMiB = 64;
  pg_->Exec("INSERT INTO bigone SELECT 1, repeat('x', " + std::to_string(kMessageMiB) +
            " * 1024 * 1024)");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("slot it_big: a message of 64 MiB has passed") != std::string::npos;
      },
      seconds(60)))
      << p.Stderr();
  ASSERT_TRUE(WaitFor([&] { return p.Stderr().find("streaming again from") != std::string::npos; },
                      seconds(20)))
      << p.Stderr();
  long peak = StatusKiB(p.pid(), "VmHWM");
  long after = StatusKiB(p.pid(), "VmRSS");
  // libpq's buffer and its copy: twice the message, and what the daemon
  // needs anyway; a third copy would be 64 MiB more.
  EXPECT_LT(peak, before + 2 * kMessageMiB * 1024 + 32 * 1024) << "peak " << peak << " KiB";
  EXPECT_LT(after, before + 16 * 1024) << "after " << after << " KiB, before " << before;
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("it_big", end); }, seconds(30)));
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // Written whole, once.
  std::string out = ReadFile(log);
  size_t value = out.find("table public.bigone: INSERT: id[integer]:1 v[text]:'");
  ASSERT_NE(value, std::string::npos);
  value = out.find('\'', value) + 1;
  EXPECT_EQ(out.find("'\n", value) - value, static_cast<size_t>(kMessageMiB) * 1024 * 1024);
  EXPECT_EQ(out.find("table public.bigone", value), std::string::npos) << "once";
}

}  // namespace
}  // namespace pgslotd::test
