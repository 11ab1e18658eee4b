#include "pg/conninfo.h"

#include <gtest/gtest.h>

#include <map>

namespace pgslotd {
namespace {

std::map<std::string, std::string> AsMap(
    const std::vector<std::pair<std::string, std::string>>& p) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : p) {
    EXPECT_EQ(m.count(k), 0u) << "key given twice: " << k;
    m[k] = v;
  }
  return m;
}

TEST(ConninfoTest, ReplicationParamsAddDefaultsTheUserDidNotSet) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  ASSERT_TRUE(
      BuildReplicationParams("host=/run/pg dbname=app replication=true", "orders", &params, &err))
      << err;
  auto m = AsMap(params);
  EXPECT_EQ(m["replication"], "database") << "the user's replication key is replaced";
  EXPECT_EQ(m["host"], "/run/pg");
  EXPECT_EQ(m["dbname"], "app");
  EXPECT_EQ(m["application_name"], "pgslotd_orders");
  EXPECT_EQ(m["client_encoding"], "UTF8");
  EXPECT_EQ(m["keepalives"], "1");
  EXPECT_EQ(m["keepalives_idle"], "10");
  EXPECT_EQ(m["tcp_user_timeout"], "60000");
  EXPECT_EQ(params.back().first, "replication");
}

TEST(ConninfoTest, TheUsersOwnSettingsWin) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  ASSERT_TRUE(BuildReplicationParams(
      "dbname=app application_name=mine keepalives_idle=30 tcp_user_timeout=0 "
      "client_encoding=LATIN1",
      "orders", &params, &err));
  auto m = AsMap(params);
  EXPECT_EQ(m["application_name"], "mine");
  EXPECT_EQ(m["keepalives_idle"], "30");
  EXPECT_EQ(m["tcp_user_timeout"], "0");
  EXPECT_EQ(m["client_encoding"], "LATIN1");
}

TEST(ConninfoTest, MonitorParamsAreAPlainConnection) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  ASSERT_TRUE(BuildMonitorParams("dbname=app replication=database", &params, &err));
  auto m = AsMap(params);
  EXPECT_EQ(m.count("replication"), 0u);
  EXPECT_EQ(m["application_name"], "pgslotd_monitor");
  EXPECT_EQ(m["connect_timeout"], "10");
}

TEST(ConninfoTest, RedactionHidesPasswordsInEveryForm) {
  EXPECT_EQ(RedactConninfo("dbname=app password=s3cret").find("s3cret"), std::string::npos);
  EXPECT_NE(RedactConninfo("dbname=app password=s3cret").find("password=********"),
            std::string::npos);
  EXPECT_EQ(RedactConninfo("postgresql://cdc:s3cret@db.example/app").find("s3cret"),
            std::string::npos);
  EXPECT_EQ(RedactConninfo("dbname='unterminated"), "(unparseable connection string)");
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  EXPECT_FALSE(BuildReplicationParams("dbname='unterminated", "s", &params, &err));
  EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace pgslotd
