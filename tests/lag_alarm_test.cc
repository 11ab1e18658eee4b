#include "daemon/lag_alarm.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include "daemon/metrics.h"
#include "prom_parser.h"

namespace pgslotd {
namespace {

using std::chrono::seconds;
using Event = LagAlarm::Event;

class LagAlarmTest : public ::testing::Test {
 protected:
  LagAlarmTest() {
    cfg_.bytes = 1000;
    cfg_.seconds = seconds(10);
    cfg_.repeat = seconds(60);
    cfg_.safe_wal_size = 5000;
  }
  Event At(int second, LagSample s) {
    return alarm_.Update(t0_ + seconds(second), s, cfg_, &reason_);
  }
  LagAlarmConfig cfg_;
  LagAlarm alarm_;
  LagAlarm::Clock::time_point t0_ = LagAlarm::Clock::now();
  std::string reason_;
};

LagSample Bytes(uint64_t b) {
  LagSample s;
  s.lag_bytes = b;
  return s;
}

TEST_F(LagAlarmTest, ABurstThatDrainsInTimeNeverAlarms) {
  for (int t = 0; t <= 9; ++t) EXPECT_EQ(At(t, Bytes(50000)), Event::kNone) << t;
  EXPECT_EQ(At(10, Bytes(10)), Event::kNone);
  for (int t = 11; t < 100; ++t) EXPECT_EQ(At(t, Bytes(10)), Event::kNone);
  EXPECT_FALSE(alarm_.active());
}

TEST_F(LagAlarmTest, BytesAboveForLongerThanSecondsRaisesRepeatsAndClearsWithHysteresis) {
  for (int t = 0; t <= 10; ++t) EXPECT_EQ(At(t, Bytes(2000)), Event::kNone) << t;
  EXPECT_EQ(At(11, Bytes(2000)), Event::kRaised);
  EXPECT_NE(reason_.find("lag 2.0 KiB above 1000 B for 11 s"), std::string::npos) << reason_;
  EXPECT_EQ(At(30, Bytes(2000)), Event::kNone);
  EXPECT_EQ(At(71, Bytes(2000)), Event::kRepeated);
  // Under the threshold but above half of it: not cleared (hysteresis).
  for (int t = 72; t < 150; ++t) EXPECT_EQ(At(t, Bytes(700)), Event::kNone) << t;
  EXPECT_TRUE(alarm_.active());
  // Under half: cleared once that has lasted min(seconds, 30 s) = 10 s.
  for (int t = 150; t < 160; ++t) EXPECT_EQ(At(t, Bytes(100)), Event::kNone) << t;
  EXPECT_EQ(At(160, Bytes(100)), Event::kCleared);
  EXPECT_FALSE(alarm_.active());
}

TEST_F(LagAlarmTest, EachOtherCauseRaisesIt) {
  LagSample old;
  old.lag_seconds = 11;
  EXPECT_EQ(At(0, old), Event::kRaised);
  EXPECT_NE(reason_.find("oldest change not yet durable is 11 s old"), std::string::npos);

  LagAlarm a2;
  LagSample unreserved;
  unreserved.wal_status = "unreserved";
  EXPECT_EQ(a2.Update(t0_, unreserved, cfg_, &reason_), Event::kRaised);
  EXPECT_NE(reason_.find("wal_status unreserved"), std::string::npos);

  LagAlarm a3;
  LagSample low;
  low.safe_wal_size = 4000;
  EXPECT_EQ(a3.Update(t0_, low, cfg_, &reason_), Event::kRaised);
  EXPECT_NE(reason_.find("safe_wal_size"), std::string::npos);
  LagAlarm a6;  // the server's limit is small: the floor is a quarter of it
  low.max_slot_wal_keep_size = 8192;
  EXPECT_EQ(a6.Update(t0_, low, cfg_, &reason_), Event::kNone) << reason_;
  low.safe_wal_size = 2047;
  EXPECT_EQ(a6.Update(t0_, low, cfg_, &reason_), Event::kRaised);
  EXPECT_NE(reason_.find("below 2.0 KiB"), std::string::npos) << reason_;
  low.max_slot_wal_keep_size.reset();
  low.safe_wal_size = 4000;
  cfg_.safe_wal_size = 0;  // disabled
  LagAlarm a4;
  EXPECT_EQ(a4.Update(t0_, low, cfg_, &reason_), Event::kNone);

  LagAlarm a5;
  LagSample down;
  down.streaming = false;
  down.state = "reconnecting";
  EXPECT_EQ(a5.Update(t0_, down, cfg_, &reason_), Event::kNone);
  EXPECT_EQ(a5.Update(t0_ + seconds(11), down, cfg_, &reason_), Event::kRaised);
  EXPECT_NE(reason_.find("not streaming (reconnecting) for 11 s"), std::string::npos);
}

LagSample SafeWal(uint64_t mib, std::optional<uint64_t> limit_mib) {
  LagSample s;
  s.safe_wal_size = static_cast<int64_t>(mib << 20);
  if (limit_mib) s.max_slot_wal_keep_size = *limit_mib << 20;
  return s;
}

// As measured on a server with max_slot_wal_keep_size = 64MB and the
// default floor of 2 GiB: the floor in force is 16 MiB, and a drained slot
// has about the whole 64 MiB ahead of it again.
TEST_F(LagAlarmTest, SafeWalSizeUnderASmallServerLimitClearsOnceDrained) {
  cfg_.safe_wal_size = 2ull << 30;
  EXPECT_EQ(At(0, SafeWal(14, 64)), Event::kRaised);
  EXPECT_NE(reason_.find("safe_wal_size 14.0 MiB below 16.0 MiB"), std::string::npos) << reason_;
  // Above the floor but under 1.5 times it: not cleared (hysteresis).
  for (int t = 1; t < 60; ++t) EXPECT_EQ(At(t, SafeWal(20, 64)), Event::kNone) << t;
  EXPECT_TRUE(alarm_.active());
  // Drained: cleared once that has lasted min(seconds, 30 s) = 10 s.
  for (int t = 60; t < 70; ++t) EXPECT_EQ(At(t, SafeWal(64, 64)), Event::kNone) << t;
  EXPECT_EQ(At(70, SafeWal(64, 64)), Event::kCleared) << "the floor that raised it clears it";
  EXPECT_FALSE(alarm_.active());
}

TEST_F(LagAlarmTest, SafeWalSizeClearsAtOneAndAHalfTimesTheFloorInForce) {
  cfg_.safe_wal_size = 2ull << 30;
  // The server's limit is large: the configured floor applies both ways.
  EXPECT_EQ(At(0, SafeWal(1900, 100 << 10)), Event::kRaised);
  EXPECT_NE(reason_.find("below 2.0 GiB"), std::string::npos) << reason_;
  for (int t = 1; t < 40; ++t) EXPECT_EQ(At(t, SafeWal(3071, 100 << 10)), Event::kNone) << t;
  for (int t = 40; t < 50; ++t) EXPECT_EQ(At(t, SafeWal(3072, 100 << 10)), Event::kNone) << t;
  EXPECT_EQ(At(50, SafeWal(3072, 100 << 10)), Event::kCleared);

  // A small limit: 1.5 times a quarter of it, 24 MiB of 64, clears.
  LagAlarm small;
  EXPECT_EQ(small.Update(t0_, SafeWal(15, 64), cfg_, &reason_), Event::kRaised);
  for (int t = 1; t < 40; ++t) {
    EXPECT_EQ(small.Update(t0_ + seconds(t), SafeWal(23, 64), cfg_, &reason_), Event::kNone) << t;
  }
  EXPECT_EQ(small.Update(t0_ + seconds(40), SafeWal(24, 64), cfg_, &reason_), Event::kNone);
  EXPECT_EQ(small.Update(t0_ + seconds(50), SafeWal(24, 64), cfg_, &reason_), Event::kCleared);
}

TEST(MetricsTest, RendersStrictPrometheusText) {
  SlotMetrics a;
  a.slot = "orders";
  a.lag_bytes = 123;
  a.lag_seconds = 1.5;
  a.flushed_lsn = 0x16B3748;
  a.changes = 7;
  a.alarm = true;
  a.streaming = true;
  SlotMetrics b;
  b.slot = "items";
  b.responding = false;
  b.heartbeat_age_seconds = 12.5;
  std::string text = RenderMetrics(1764000000.25, {a, b});
  std::vector<test::PromSample> samples;
  std::map<std::string, std::string> types;
  std::string err;
  ASSERT_TRUE(test::ParsePrometheusText(text, &samples, &types, &err)) << err << "\n" << text;
  EXPECT_EQ(types["pgslotd_slot_changes_total"], "counter");
  EXPECT_EQ(types["pgslotd_slot_lag_bytes"], "gauge");
  std::map<std::string, double> orders;
  for (const auto& s : samples) {
    if (s.labels.count("slot") && s.labels.at("slot") == "orders") orders[s.name] = s.value;
  }
  EXPECT_EQ(orders["pgslotd_slot_lag_bytes"], 123);
  EXPECT_EQ(orders["pgslotd_slot_lag_seconds"], 1.5);
  EXPECT_EQ(orders["pgslotd_slot_flushed_lsn"], 0x16B3748);
  EXPECT_EQ(orders["pgslotd_slot_lag_alarm"], 1);
  EXPECT_EQ(orders["pgslotd_slot_responding"], 1);
  std::map<std::string, double> items;
  for (const auto& s : samples) {
    if (s.labels.count("slot") && s.labels.at("slot") == "items") items[s.name] = s.value;
  }
  EXPECT_EQ(items["pgslotd_slot_responding"], 0);
  EXPECT_EQ(items["pgslotd_slot_heartbeat_age_seconds"], 12.5);
  EXPECT_EQ(samples.size(), 1u + 11 * 2);
  EXPECT_NE(text.find("pgslotd_start_time_seconds 1764000000.250000\n"), std::string::npos);
}

// The kafka sink's figures are families of their own, listing only the
// slots whose sink has them (none at all without such a slot).
TEST(MetricsTest, SinkFiguresAreListedForTheSlotsThatHaveThem) {
  SlotMetrics file;
  file.slot = "orders";
  SlotMetrics kafka;
  kafka.slot = "events";
  kafka.has_sink_figures = true;
  kafka.sink_in_flight = 12;
  kafka.sink_delivery_errors = 3;
  kafka.sink_transactions_committed = 40;
  kafka.sink_transactions_aborted = 2;
  kafka.sink_brokers_down = true;
  std::string text = RenderMetrics(1764000000, {file, kafka});
  std::vector<test::PromSample> samples;
  std::map<std::string, std::string> types;
  std::string err;
  ASSERT_TRUE(test::ParsePrometheusText(text, &samples, &types, &err)) << err << "\n" << text;
  std::map<std::string, double> events;
  for (const auto& s : samples) {
    EXPECT_FALSE(s.name.rfind("pgslotd_sink_", 0) == 0 && s.labels.at("slot") == "orders")
        << s.name;
    if (s.labels.count("slot") && s.labels.at("slot") == "events") events[s.name] = s.value;
  }
  EXPECT_EQ(events["pgslotd_sink_in_flight_records"], 12);
  EXPECT_EQ(events["pgslotd_sink_delivery_errors_total"], 3);
  EXPECT_EQ(events["pgslotd_sink_transactions_committed_total"], 40);
  EXPECT_EQ(events["pgslotd_sink_transactions_aborted_total"], 2);
  EXPECT_EQ(events["pgslotd_sink_brokers_down"], 1);
  EXPECT_EQ(types["pgslotd_sink_transactions_committed_total"], "counter");
  EXPECT_EQ(RenderMetrics(1764000000, {file}).find("pgslotd_sink_"), std::string::npos);
}

// The spool of streamed transactions (json slots): memory and disk bytes,
// listed for the slots that have a spool.
TEST(MetricsTest, SpoolBytesAreListedForTheSlotsThatHaveASpool) {
  SlotMetrics raw;
  raw.slot = "raw";
  SlotMetrics json;
  json.slot = "json";
  json.has_spool = true;
  json.spool_memory_bytes = 4194304;
  json.spool_disk_bytes = 123456789;
  std::string text = RenderMetrics(1764000000, {raw, json});
  std::vector<test::PromSample> samples;
  std::map<std::string, std::string> types;
  std::string err;
  ASSERT_TRUE(test::ParsePrometheusText(text, &samples, &types, &err)) << err << "\n" << text;
  std::map<std::string, double> spool;
  for (const auto& s : samples) {
    if (s.name.rfind("pgslotd_spool_", 0) != 0) continue;
    EXPECT_EQ(s.labels.at("slot"), "json") << s.name;
    spool[s.name] = s.value;
  }
  EXPECT_EQ(spool["pgslotd_spool_memory_bytes"], 4194304);
  EXPECT_EQ(spool["pgslotd_spool_disk_bytes"], 123456789);
  EXPECT_EQ(types["pgslotd_spool_disk_bytes"], "gauge");
  EXPECT_EQ(RenderMetrics(1764000000, {raw}).find("pgslotd_spool_"), std::string::npos);
}

TEST(MetricsTest, TheStrictParserRefusesMalformedText) {
  std::vector<test::PromSample> s;
  std::map<std::string, std::string> t;
  std::string err;
  EXPECT_FALSE(test::ParsePrometheusText("x 1", &s, &t, &err));
  EXPECT_FALSE(test::ParsePrometheusText("x{a=b} 1\n", &s, &t, &err));
  EXPECT_FALSE(test::ParsePrometheusText("x one\n", &s, &t, &err));
  EXPECT_FALSE(test::ParsePrometheusText("x 1\n# TYPE x gauge\n", &s, &t, &err));
  EXPECT_FALSE(test::ParsePrometheusText("9x 1\n", &s, &t, &err));
  EXPECT_TRUE(test::ParsePrometheusText("# TYPE x gauge\nx{a=\"b\"} 1\n", &s, &t, &err)) << err;
}

TEST(MetricsTest, TheTemporaryFileIsNeverFollowed) {
  char tmpl[] = "/tmp/pgslotd-metrics-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string victim = dir + "/victim";
  std::string metrics = dir + "/metrics.prom";
  { std::ofstream(victim) << "someone else's\n"; }
  ASSERT_EQ(::symlink(victim.c_str(), (metrics + ".tmp").c_str()), 0);
  ASSERT_TRUE(WriteMetricsFile(metrics, 1764000000, {}).ok());
  std::ifstream v(victim), m(metrics);
  std::string victim_text((std::istreambuf_iterator<char>(v)), std::istreambuf_iterator<char>());
  std::string metrics_text((std::istreambuf_iterator<char>(m)), std::istreambuf_iterator<char>());
  EXPECT_EQ(victim_text, "someone else's\n");
  EXPECT_EQ(metrics_text, RenderMetrics(1764000000, {}));
  EXPECT_NE(::access((metrics + ".tmp").c_str(), F_OK), 0);
  int rc = std::system(("rm -rf " + dir).c_str());
  (void)rc;
}

TEST(MetricsTest, SnapshotFamiliesAreListedForTheSlotsThatTakeOne) {
  SlotMetrics plain;
  plain.slot = "plain";
  SlotMetrics snap;
  snap.slot = "snap";
  snap.has_snapshot = true;
  snap.snapshot_rows = 1000000;
  snap.snapshot_tables_left = 4;
  std::string text = RenderMetrics(1764000000, {plain, snap});
  std::vector<test::PromSample> samples;
  std::map<std::string, std::string> types;
  std::string err;
  ASSERT_TRUE(test::ParsePrometheusText(text, &samples, &types, &err)) << err << "\n" << text;
  std::map<std::string, double> values;
  for (const auto& s : samples) {
    if (s.name.rfind("pgslotd_snapshot_", 0) != 0) continue;
    EXPECT_EQ(s.labels.at("slot"), "snap") << s.name;
    values[s.name] = s.value;
  }
  EXPECT_EQ(values["pgslotd_snapshot_rows_total"], 1000000);
  EXPECT_EQ(values["pgslotd_snapshot_tables_left"], 4);
  EXPECT_EQ(types["pgslotd_snapshot_rows_total"], "counter");
  EXPECT_EQ(types["pgslotd_snapshot_tables_left"], "gauge");
  EXPECT_EQ(RenderMetrics(1764000000, {plain}).find("pgslotd_snapshot_"), std::string::npos);
}

}  // namespace
}  // namespace pgslotd
