// A host name whose DNS server never answers must not stop the watchdog:
// that slot is only connecting, the others stream. pgslotd runs in a mount
// namespace of its own whose /etc/resolv.conf names a DNS server of the
// test's that reads queries and answers none.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "daemon_fixture.h"
#include "notify_socket.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

TEST_F(DaemonTest, ANameThatNeverResolvesNeverStopsTheWatchdog) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: a mount namespace with its own resolv.conf";
  int dns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(53);
  inet_pton(AF_INET, "127.0.0.83", &addr.sin_addr);
  ASSERT_EQ(bind(dns, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << "cannot listen on 127.0.0.83:53: " << std::strerror(errno);
  std::string resolv = dir_->File("resolv.conf");
  WriteFile(resolv, "nameserver 127.0.0.83\noptions timeout:30 attempts:5\n");

  pg_->Exec("DROP TABLE IF EXISTS dnsok; CREATE TABLE dnsok(id int)");
  FreshSlots({"it_dns_ok"});
  std::string log = dir_->File("ok.log");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_dns_ok", "{type: file, path: " + log + "}") +
                  SlotYaml("it_dns_never", "{type: file, path: " + dir_->File("never.log") + "}",
                           "    connection: \"host=db.never-answers.pgslotd.test port=5432\"\n"));
  NotifySocket notify(dir_->File("notify.sock"));
  Subprocess::Options o;
  // Not responding after 2 s; pings every 2 s.
  o.env = {{"NOTIFY_SOCKET", dir_->File("notify.sock")}, {"WATCHDOG_USEC", "4000000"}};
  Subprocess p;
  p.Start({"unshare", "--mount", "--", "/bin/sh", "-c",
           "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"", resolv, PgslotdBinary(),
           "--config", cfg},
          o);
  ASSERT_EQ(notify.WaitFor("READY=1", seconds(10)), "READY=1") << p.Stderr();
  pg_->Exec("INSERT INTO dnsok VALUES (1)");
  ASSERT_TRUE(
      WaitFor([&] { return FileExists(log) && ReadFile(log).find("dnsok") != std::string::npos; },
              seconds(20)))
      << p.Stderr();
  // Several watchdog periods while the name is being looked up: the pings
  // go on, and nothing is stuck.
  int pings = 0;
  for (int i = 0; i < 4; ++i) {
    if (notify.WaitFor("WATCHDOG=1", seconds(4)) == "WATCHDOG=1") ++pings;
  }
  EXPECT_EQ(pings, 4) << p.Stderr();
  EXPECT_EQ(p.Stderr().find("has not checked in"), std::string::npos) << p.Stderr();
  Subprocess s;
  s.Start({PgslotdBinary(), "--config", cfg, "--status"});
  ASSERT_EQ(s.Wait(seconds(10)), 0) << s.Stderr();
  EXPECT_NE(s.Stdout().find("it_dns_never: connecting;"), std::string::npos) << s.Stdout();
  // A stop does not wait for the resolver either.
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  close(dns);
}

}  // namespace
}  // namespace pgslotd::test
