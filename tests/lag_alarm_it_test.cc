// The lag alarm, the server-side health watch and the metrics file, against
// a real server.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "daemon_fixture.h"
#include "prom_parser.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

std::map<std::string, double> MetricsOf(const std::string& text, const std::string& slot,
                                        std::string* err) {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;
  std::map<std::string, double> out;
  if (!ParsePrometheusText(text, &samples, &types, err)) return out;
  for (const auto& s : samples) {
    auto it = s.labels.find("slot");
    if (it != s.labels.end() && it->second == slot) out[s.name] = s.value;
    if (s.labels.empty()) out[s.name] = s.value;
  }
  return out;
}

TEST_F(DaemonTest, PipeWithoutReaderRaisesTheLagAlarmAndADrainClearsIt) {
  pg_->Exec("DROP TABLE IF EXISTS lagged; CREATE TABLE lagged(id serial primary key, v text)");
  for (const char* s : {"al_pipe", "al_file"}) {
    pg_->DropSlotIfExists(s);
    pg_->CreateLogicalSlot(s);
  }
  std::string fifo = dir_->File("al.fifo");
  std::string metrics = dir_->File("metrics.prom");
  std::string cfg =
      WriteConfig(Header("postgres", "monitor_interval: 1s\nmetrics_file: " + metrics +
                                         "\nlag_alarm: {bytes: 64MiB, seconds: 2s, repeat: 1m}\n") +
                  // The reader counts the test's transactions only.
                  SlotYaml("al_pipe", "{type: pipe, path: " + fifo + "}",
                           "    options: {skip-empty-xacts: \"1\"}\n") +
                  SlotYaml("al_file", "{type: file, path: " + dir_->File("al.log") + "}",
                           "    fsync_interval: 100ms\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor([&] { return FileExists(fifo) && FileExists(metrics); }, seconds(20)));
  for (int i = 0; i < 20; ++i) {
    pg_->Exec("INSERT INTO lagged(v) SELECT 'w' || g FROM generate_series(1, 100) g");
  }
  // After seconds (2 s), one check (1 s) and one poll (1 s); the limit is
  // only there to end a failing run.
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("slot al_pipe: lag alarm: ") != std::string::npos; },
              seconds(60)))
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("oldest change not yet durable is"), std::string::npos) << p.Stderr();
  EXPECT_EQ(p.Stderr().find("slot al_file: lag alarm"), std::string::npos) << p.Stderr();

  // One metrics file that shows the pipe's alarm and the file slot past
  // the 20 transactions (100 rows, BEGIN and COMMIT each).
  std::string err, text;
  std::map<std::string, double> pipe_m, file_m;
  ASSERT_TRUE(WaitFor(
      [&] {
        text = ReadFile(metrics);
        pipe_m = MetricsOf(text, "al_pipe", &err);
        if (!err.empty()) return false;
        file_m = MetricsOf(text, "al_file", &err);
        return err.empty() && pipe_m["pgslotd_slot_lag_alarm"] == 1 &&
               file_m["pgslotd_slot_changes_total"] >= 20 * 102;
      },
      seconds(30)))
      << err << "\n"
      << text;
  EXPECT_GT(pipe_m["pgslotd_slot_lag_seconds"], 2);
  EXPECT_GT(pipe_m["pgslotd_start_time_seconds"], 1.7e9);
  EXPECT_EQ(file_m["pgslotd_slot_lag_alarm"], 0);
  double file_changes = file_m["pgslotd_slot_changes_total"];
  EXPECT_EQ(file_m["pgslotd_slot_streaming"], 1);

  // A reader drains the pipe: the alarm clears (after it has stayed healthy
  // for min(seconds, 30 s)).
  std::atomic<bool> done{false};
  std::string drained;
  std::thread reader([&] {
    int fd = open(fifo.c_str(), O_RDONLY);
    char buf[65536];
    for (ssize_t n; fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0;) drained.append(buf, n);
    if (fd >= 0) close(fd);
    done = true;
  });
  bool cleared = WaitFor(
      [&] { return p.Stderr().find("slot al_pipe: lag alarm cleared") != std::string::npos; },
      seconds(20));
  EXPECT_TRUE(cleared) << p.Stderr();
  pg_->Exec("INSERT INTO lagged(v) VALUES ('more')");
  EXPECT_TRUE(WaitFor(
      [&] {
        auto m = MetricsOf(ReadFile(metrics), "al_file", &err);
        return m["pgslotd_slot_changes_total"] > file_changes;
      },
      seconds(20)))
      << "metrics do not move with the workload";
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0);
  reader.join();
  size_t commits = 0;
  for (size_t at = drained.find("COMMIT"); at != std::string::npos;
       at = drained.find("COMMIT", at + 1)) {
    ++commits;
  }
  EXPECT_EQ(commits, 21u) << "the reader got every transaction, once";
}

int64_t SafeWalSize(PgCluster* pg, const std::string& slot) {
  return std::stoll(pg->Scalar(
      "SELECT safe_wal_size FROM pg_replication_slots WHERE slot_name = '" + slot + "'"));
}

// Opens `fifo` for reading (blocking until pgslotd opens it to write) and
// reads until the writer closes it.
std::thread DrainFifo(const std::string& fifo, std::string* drained) {
  return std::thread([fifo, drained] {
    int fd = open(fifo.c_str(), O_RDONLY);
    char buf[65536];
    for (ssize_t n; fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0;) drained->append(buf, n);
    if (fd >= 0) close(fd);
  });
}

// A server with a small max_slot_wal_keep_size (64MB): the floor in force is
// a quarter of it, 16 MiB. A slot held behind that far raises the alarm, and
// once drained it has the whole 64 MB ahead of it again: the alarm clears.
TEST_F(DaemonTest, SafeWalSizeAlarmUnderASmallServerLimitClearsOnceDrained) {
  constexpr int64_t kMiB = 1 << 20;
  std::unique_ptr<PgCluster> pg = PgCluster::StartNew();
  pg->Exec("ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'");
  pg->Exec("SELECT pg_reload_conf()");
  pg->Exec("CREATE TABLE behind(id serial primary key, v text)");
  pg->CreateLogicalSlot("sw_pipe");
  // A change the slot must deliver, then WAL up to 12-16 MiB short of the
  // limit: one segment switch at a time, then 2 MB of rows. pgslotd does not
  // run yet, so nothing moves the slot meanwhile.
  pg->Exec("INSERT INTO behind(v) VALUES ('held')");
  for (int i = 0; i < 8 && SafeWalSize(pg.get(), "sw_pipe") > 17 * kMiB; ++i) {
    pg->Exec("INSERT INTO behind(v) VALUES ('switch')");
    pg->Exec("SELECT pg_switch_wal()");
  }
  pg->Exec("INSERT INTO behind(v) SELECT repeat('x', 1000) FROM generate_series(1, 2000)");
  int64_t safe = SafeWalSize(pg.get(), "sw_pipe");
  ASSERT_LT(safe, 16 * kMiB);
  ASSERT_GT(safe, 4 * kMiB);

  // seconds: 10s keeps lag_seconds from raising it first; the pipe has no
  // reader yet, so nothing is acknowledged.
  std::string fifo = dir_->File("sw.fifo");
  std::string cfg = WriteConfig("connection: \"" + pg->Conninfo() +
                                "\"\nstatus_interval: 1s\nmonitor_interval: 1s\n" + Dirs() +
                                "lag_alarm: {seconds: 10s, repeat: 1m}\nslots:\n" +
                                SlotYaml("sw_pipe", "{type: pipe, path: " + fifo + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("slot sw_pipe: lag alarm: ") != std::string::npos; },
              seconds(10)))
      << p.Stderr();
  std::string raised = p.Stderr().substr(p.Stderr().find("slot sw_pipe: lag alarm: "));
  raised = raised.substr(0, raised.find('\n'));
  EXPECT_NE(raised.find("below 16.0 MiB"), std::string::npos) << raised;

  // A reader drains the pipe; checkpoints let the slot's restart_lsn follow
  // its confirmed position (a logical slot's restart_lsn moves once a
  // running-xacts record, which a checkpoint logs, has been confirmed).
  std::string drained;
  std::thread reader = DrainFifo(fifo, &drained);
  ASSERT_TRUE(WaitFor(
      [&] {
        pg->Exec("CHECKPOINT");
        return SafeWalSize(pg.get(), "sw_pipe") >= 48 * kMiB;
      },
      seconds(30), std::chrono::milliseconds(500)))
      << SafeWalSize(pg.get(), "sw_pipe") << "\n"
      << p.Stderr();
  // Healthy for min(seconds, 30 s) = 10 s, one check (1 s), and slack.
  EXPECT_TRUE(WaitFor(
      [&] { return p.Stderr().find("slot sw_pipe: lag alarm cleared") != std::string::npos; },
      seconds(20)))
      << "safe_wal_size " << SafeWalSize(pg.get(), "sw_pipe") << "\n"
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0);
  reader.join();
  EXPECT_NE(drained.find("'held'"), std::string::npos) << "the held change reached the reader";
}

TEST_F(DaemonTest, InvalidatedSlotStopsWithoutRetryingAndTheOtherStreams) {
  std::unique_ptr<PgCluster> pg = PgCluster::StartNew();
  pg->Exec("ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'");
  pg->Exec("SELECT pg_reload_conf()");
  pg->Exec("CREATE TABLE inv(id serial primary key, v text)");
  pg->CreateLogicalSlot("inv_victim");
  pg->CreateLogicalSlot("inv_ok");
  std::string fifo = dir_->File("victim.fifo");
  std::string log = dir_->File("ok.log");
  std::string cfg =
      WriteConfig(HeaderWith(pg->Conninfo(), "monitor_interval: 1s\n") +
                  SlotYaml("inv_victim", "{type: pipe, path: " + fifo + "}") +
                  SlotYaml("inv_ok", "{type: file, path: " + log + "}", "    fsync_interval: 0\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor(
      [&] { return pg->Scalar("SELECT count(*) FROM pg_replication_slots WHERE active") == "2"; },
      seconds(20)))
      << p.Stderr();
  // The victim never acknowledges (no reader); push WAL past its limit,
  // one segment a round. The healthy slot confirms after each checkpoint,
  // so its restart_lsn follows (a logical slot's restart_lsn moves once a
  // running-xacts record, which a checkpoint logs, has been confirmed).
  for (int i = 0; i < 8; ++i) {
    pg->Exec("INSERT INTO inv(v) SELECT repeat('x', 100) FROM generate_series(1, 100)");
    pg->Exec("SELECT pg_switch_wal()");
    pg->Exec("CHECKPOINT");
    std::string lsn = pg->CurrentWalLsn();
    ASSERT_TRUE(WaitFor(
        [&] {
          return pg->Scalar("SELECT confirmed_flush_lsn >= '" + lsn +
                            "' FROM pg_replication_slots WHERE slot_name = 'inv_ok'") == "t";
        },
        seconds(20)))
        << p.Stderr();
  }
  pg->Exec("CHECKPOINT");
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg->Scalar(
                   "SELECT wal_status FROM pg_replication_slots WHERE slot_name = "
                   "'inv_victim'") == "lost";
      },
      seconds(30)))
      << pg->Scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'inv_victim'");
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("slot inv_victim: ") != std::string::npos &&
               p.Stderr().find("invalidated") != std::string::npos &&
               p.Stderr().find("this slot has stopped") != std::string::npos;
      },
      seconds(30)))
      << p.Stderr();
  EXPECT_NE(p.Stderr().find("an operator must recreate it"), std::string::npos) << p.Stderr();
  EXPECT_EQ(pg->Scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'inv_victim'"),
            "1")
      << "never dropped by pgslotd";
  // No retry loop: the error is logged once and stays logged once.
  std::this_thread::sleep_for(seconds(3));
  std::string err = p.Stderr();
  size_t first = err.find("this slot has stopped");
  std::string after = err.substr(err.find("\n", first));
  EXPECT_EQ(after.find("slot inv_victim: streaming"), std::string::npos) << err;
  EXPECT_EQ(after.find("slot inv_victim: replication slot"), std::string::npos) << err;
  EXPECT_EQ(after.find("slot inv_victim: "), after.find("slot inv_victim: lag alarm"))
      << "after the error only its lag alarm may speak:\n"
      << err;
  // The alarm says it too (wal_status lost); the healthy slot does not alarm.
  EXPECT_TRUE(
      WaitFor([&] { return p.Stderr().find("wal_status lost") != std::string::npos; }, seconds(10)))
      << p.Stderr();
  EXPECT_EQ(p.Stderr().find("slot inv_ok: lag alarm"), std::string::npos) << p.Stderr();
  // The other slot streams on.
  pg->Exec("INSERT INTO inv(v) VALUES ('after invalidation')");
  EXPECT_TRUE(WaitFor([&] { return ReadFile(log).find("after invalidation") != std::string::npos; },
                      seconds(20)))
      << p.Stderr();
  EXPECT_TRUE(p.Running());
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0);
}

}  // namespace
}  // namespace pgslotd::test
