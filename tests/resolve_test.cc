// Host names resolved off libpq (pg/resolve.h), against the machine's own
// resolver: localhost comes from /etc/hosts.
#include "pg/resolve.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace pgslotd {
namespace {

using Clock = std::chrono::steady_clock;

std::string Get(const ConnParams& p, const std::string& key) {
  for (const auto& [k, v] : p) {
    if (k == key) return v;
  }
  return "<none>";
}

Status Resolve(ConnParams* p) {
  return ResolveHosts(p, Clock::now() + std::chrono::seconds(10), [] { return true; });
}

TEST(ResolveTest, NamesGetTheirAddressesNextToThem) {
  ConnParams p = {{"host", "localhost"}, {"port", "5433"}, {"dbname", "x"}};
  ASSERT_TRUE(Resolve(&p).ok());
  std::string addrs = Get(p, "hostaddr");
  EXPECT_NE(addrs.find("127.0.0.1"), std::string::npos) << addrs;
  // One host entry, and one port, per address.
  auto entries = [](const std::string& list) {
    return 1 + std::count(list.begin(), list.end(), ',');
  };
  const std::string hosts = Get(p, "host"), ports = Get(p, "port");
  EXPECT_EQ(entries(hosts), entries(addrs)) << hosts << " / " << addrs;
  EXPECT_EQ(entries(ports), entries(addrs)) << ports << " / " << addrs;
  EXPECT_EQ(hosts.rfind("localhost", 0), 0u);
  EXPECT_EQ(Get(p, "dbname"), "x");
}

TEST(ResolveTest, SocketsAddressesAndGivenHostaddrsAreLeftAlone) {
  for (ConnParams p :
       {ConnParams{{"host", "/var/run/postgresql"}}, ConnParams{{"host", "10.1.2.3"}},
        ConnParams{{"host", "::1"}}, ConnParams{{"host", "db.example"}, {"hostaddr", "10.9.9.9"}},
        ConnParams{{"dbname", "x"}}}) {
    ConnParams before = p;
    ASSERT_TRUE(Resolve(&p).ok());
    if (getenv("PGHOST") == nullptr) {
      EXPECT_EQ(p, before);
    }
  }
  // In a list, only the names are looked up; the rest keep an empty entry.
  ConnParams mixed = {{"host", "/tmp,localhost"}, {"port", "5432,5433"}};
  ASSERT_TRUE(Resolve(&mixed).ok());
  EXPECT_EQ(Get(mixed, "hostaddr").rfind(",127.0.0.1", 0) == 0 ||
                Get(mixed, "hostaddr").rfind(",::1", 0) == 0,
            true)
      << Get(mixed, "hostaddr");
  EXPECT_EQ(Get(mixed, "port").rfind("5432,5433", 0), 0u);
}

TEST(ResolveTest, AnUnknownNameIsARetryableErrorNamingIt) {
  ConnParams p = {{"host", "no-such-host.invalid"}};
  Status s = Resolve(&p);
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_NE(s.message().find("no-such-host.invalid"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace pgslotd
