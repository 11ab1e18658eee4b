// A stuck sink must not hold the server hostage. A pipe sink without a
// reader stops the slot from taking what its walsender sends; when the
// server then ends that walsender (here: a checkpoint invalidating the slot
// past max_slot_wal_keep_size), a walsender blocked on an unread socket
// cannot end, and the checkpointer waits for it: CHECKPOINT hung for
// minutes. pgslotd pauses such a stream after sink_stall_timeout instead,
// learns of the invalidation from the monitor, reports it once, and the
// other slots go on.
#include <signal.h>

#include <string>

#include "fault_util.h"

namespace pgslotd::test::fault {
namespace {

using std::chrono::seconds;

class StuckSinkTest : public FaultTest {
 protected:
  StuckSinkTest() : FaultTest(Cluster::kPrivate) {}
};

TEST_F(StuckSinkTest, ACheckpointNeverWaitsForAStuckSinkAndTheSlotIsReportedInvalidatedOnce) {
  pg_->Exec("ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'");
  pg_->Exec("SELECT pg_reload_conf()");
  pg_->Exec("CREATE TABLE stuck(id serial primary key, v text)");
  FreshSlotsIn("postgres", {"st_victim", "st_ok"});
  std::string fifo = dir_->File("victim.fifo");
  std::string log = dir_->File("ok.log");
  // A small buffer: the victim's walsender blocks on its socket early.
  std::string cfg = WriteConfig(FaultConfig(
      pg_->Conninfo(),
      SlotYaml("st_victim", "{type: pipe, path: " + fifo + "}", "    buffer_size: 64KiB\n") +
          SlotYaml("st_ok", FileSinkYaml(log), "    fsync_interval: 0\n"),
      "monitor_interval: 1s\n"));
  Subprocess p;
  StartDaemon(cfg, &p);
  ASSERT_TRUE(WaitFor(
      [&] { return pg_->Scalar("SELECT count(*) FROM pg_replication_slots WHERE active") == "2"; },
      seconds(20)))
      << p.Stderr();
  // Far more than the victim takes, then WAL past its limit. Every
  // checkpoint must return: one that waits on a walsender stuck in a send
  // to pgslotd runs into the statement timeout and fails the test.
  for (int round = 0; round < 40; ++round) {
    pg_->Exec("INSERT INTO stuck(v) SELECT repeat('x', 2000) FROM generate_series(1, 1000)");
    pg_->Exec("SELECT pg_switch_wal()");
    pg_->Exec("SET statement_timeout = '30s'; CHECKPOINT");
    if (pg_->Scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = "
                    "'st_victim'") == "lost") {
      break;
    }
  }
  ASSERT_EQ(pg_->Scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = "
                        "'st_victim'"),
            "lost");
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("slot st_victim: the server has invalidated") != std::string::npos;
      },
      seconds(30)))
      << p.Stderr();
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot st_victim: ", "pausing the stream"}).size(), 1u)
      << p.Stderr();
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot st_victim: ", "invalidated",
                                      "this slot has stopped (the others go on)"})
                .size(),
            1u)
      << p.Stderr();
  // The other slot goes on.
  pg_->Exec("INSERT INTO stuck(v) VALUES ('after')");
  std::string end = pg_->CurrentWalLsn();
  EXPECT_TRUE(CatchUpAndStop(&p, "st_ok", end));
  EXPECT_NE(ReadFile(log).find("v[text]:'after'"), std::string::npos);
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"slot st_victim: ", "invalidated"}).size(), 1u)
      << "reported once";
}

TEST_F(StuckSinkTest, APausedSlotStreamsAgainOnceItsReaderComes) {
  pg_->Exec("CREATE TABLE back(id serial primary key, v text)");
  FreshSlotsIn("postgres", {"st_back"});
  std::string fifo = dir_->File("back.fifo");
  std::string cfg =
      WriteConfig(FaultConfig(pg_->Conninfo(),
                              SlotYaml("st_back", "{type: pipe, path: " + fifo + "}",
                                       "    options: {skip-empty-xacts: \"1\"}\n"),
                              "sink_stall_timeout: 1s\n"));
  Subprocess p;
  StartDaemon(cfg, &p);
  pg_->Exec("INSERT INTO back(v) VALUES ('while nobody reads')");
  ASSERT_TRUE(WaitFor(
      [&] {
        return p.Stderr().find("slot st_back: pipe " + fifo + " has taken nothing for") !=
               std::string::npos;
      },
      seconds(20)))
      << p.Stderr();
  // Paused: no walsender holds the slot.
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar(
                   "SELECT active FROM pg_replication_slots WHERE slot_name = "
                   "'st_back'") == "f";
      },
      seconds(20)))
      << p.Stderr();
  Subprocess status;
  status.Start({PgslotdBinary(), "--config", cfg, "--status"});
  ASSERT_EQ(status.Wait(seconds(10)), 0) << status.Stderr();
  EXPECT_NE(status.Stdout().find("st_back: paused: waiting for sink;"), std::string::npos)
      << status.Stdout();
  // A reader comes: the stream starts again from the acknowledged position
  // and the reader gets the change, whole.
  Subprocess reader;
  reader.Start({"/bin/sh", "-c", "exec head -n 3 < '" + fifo + "'"});
  ASSERT_EQ(reader.Wait(seconds(30)), 0) << p.Stderr();
  EXPECT_NE(reader.Stdout().find("table public.back: INSERT: id[integer]:1 v[text]:'while nobody "
                                 "reads'"),
            std::string::npos)
      << reader.Stdout();
  EXPECT_NE(p.Stderr().find("slot st_back: pipe " + fifo +
                            " takes bytes again: streaming again "
                            "from "),
            std::string::npos)
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
}

}  // namespace
}  // namespace pgslotd::test::fault
