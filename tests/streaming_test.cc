// The daemon end to end against a real PostgreSQL 15: output bytes compared
// with the server's own decoding, acknowledgements read back from
// pg_replication_slots.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>

#include "daemon_fixture.h"

namespace pgslotd::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Options kXids = {{"include-xids", "1"}, {"skip-empty-xacts", "1"}};

// A workload with the awkward cases: multi-row transactions, updates,
// deletes, a rollback, quotes, backslashes, newlines and multi-byte text.
void Workload(PgCluster* pg, const std::string& table, const std::string& db = "postgres") {
  pg->Exec("INSERT INTO " + table +
               "(v) VALUES ('plain'), ('it''s'), (E'two\\nlines'), "
               "('back\\slash'), ('ünïcødé ✓')",
           db);
  pg->Exec("BEGIN; INSERT INTO " + table + "(v) VALUES ('rolled back'); ROLLBACK;", db);
  pg->Exec("UPDATE " + table + " SET v = v || '!' WHERE id % 2 = 0", db);
  pg->Exec("DELETE FROM " + table + " WHERE v = 'plain'", db);
  pg->Exec("INSERT INTO " + table + "(v) SELECT 'row ' || g FROM generate_series(1, 300) g", db);
}

// Transactions of test_decoding output with include-xids, keyed by xid: a
// partial transaction (cut by a crash) is replaced by its complete re-send.
std::vector<std::pair<std::string, std::string>> Transactions(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> txns;
  std::map<std::string, size_t> index;
  std::string xid, body;
  for (const std::string& line : SplitLines(text)) {
    if (line.rfind("BEGIN ", 0) == 0) {
      xid = line.substr(6);
      body = line + "\n";
    } else {
      body += line + "\n";
      if (line.rfind("COMMIT ", 0) == 0) {
        auto it = index.find(xid);
        if (it == index.end()) {
          index[xid] = txns.size();
          txns.emplace_back(xid, body);
        } else {
          txns[it->second].second = body;  // a complete repeat replaces the first copy
        }
      }
    }
  }
  return txns;
}

TEST_F(DaemonTest, ThreeSinksAtOnceMatchTheServersOwnDecoding) {
  pg_->Exec("DROP TABLE IF EXISTS three; CREATE TABLE three(id serial primary key, v text)");
  FreshSlots({"it_file", "it_pipe", "it_stdout", "it_ref"});
  Workload(pg_, "three");
  std::string end = pg_->CurrentWalLsn();

  std::string fifo = dir_->File("out.fifo");
  std::string opts = "    options: {include-xids: \"1\", skip-empty-xacts: \"1\"}\n";
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_file", "{type: file, path: " + dir_->File("f.log") + "}", opts) +
      SlotYaml("it_pipe", "{type: pipe, path: " + fifo + "}", opts) +
      SlotYaml("it_stdout", "{type: stdout}", opts));
  // The pipe's reader: copies everything until the daemon closes the pipe.
  std::string piped;
  std::thread reader([&] {
    WaitFor([&] { return FileExists(fifo); }, seconds(20));
    int fd = open(fifo.c_str(), O_RDONLY);
    char buf[65536];
    for (ssize_t n; fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0;) piped.append(buf, n);
    if (fd >= 0) close(fd);
  });
  Subprocess p;
  int rc = RunUntil(cfg, end, &p);
  reader.join();
  ASSERT_EQ(rc, 0);

  std::string expected = Reference("it_ref", end, kXids);
  ASSERT_NE(expected.find("'it''s'"), std::string::npos);
  EXPECT_EQ(expected.find("rolled back"), std::string::npos);
  EXPECT_TRUE(SameBytes(ReadFile(dir_->File("f.log")), expected));
  EXPECT_TRUE(SameBytes(piped, expected));
  EXPECT_TRUE(SameBytes(p.Stdout(), expected));
  for (const char* s : {"it_file", "it_pipe", "it_stdout"}) {
    EXPECT_EQ(pg_->ConfirmedFlushLsn(s), end) << s;
  }
  struct stat st;
  ASSERT_EQ(stat(dir_->File("f.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(DaemonTest, SecondRunResumesWithNothingLostOrRepeated) {
  pg_->Exec("DROP TABLE IF EXISTS resume; CREATE TABLE resume(id serial primary key, v text)");
  pg_->DropSlotIfExists("it_resume");
  pg_->DropSlotIfExists("it_resume_ref");
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_resume", "{type: file, path: " + dir_->File("r.log") + "}",
                          "    create: true\n    options: {include-xids: \"1\"}\n"));
  // The daemon creates its slot, before any change; the reference is a copy
  // of it as the first run left it, so that both cover exactly the same
  // range (a slot created at another moment would hold a different set of
  // background work's empty transactions).
  Subprocess first;
  ASSERT_EQ(RunUntil(cfg, pg_->CurrentWalLsn(), &first), 0);
  EXPECT_NE(first.Stderr().find("created logical replication slot"), std::string::npos);
  pg_->CopyLogicalSlot("it_resume", "it_resume_ref");

  Workload(pg_, "resume");
  std::string end1 = pg_->CurrentWalLsn();
  Subprocess second;
  ASSERT_EQ(RunUntil(cfg, end1, &second), 0);
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_resume"), end1);

  pg_->Exec("INSERT INTO resume(v) SELECT 'more ' || g FROM generate_series(1, 50) g");
  pg_->Exec("UPDATE resume SET v = 'changed' WHERE id = 3");
  std::string end2 = pg_->CurrentWalLsn();
  Subprocess third;
  ASSERT_EQ(RunUntil(cfg, end2, &third), 0);

  EXPECT_EQ(ReadFile(dir_->File("r.log")),
            Reference("it_resume_ref", end2, {{"include-xids", "1"}}));
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_resume"), end2);
}

TEST_F(DaemonTest, CleanStopBySignalAcknowledgesExactlyWhatIsWritten) {
  pg_->Exec("DROP TABLE IF EXISTS stopme; CREATE TABLE stopme(id serial primary key, v text)");
  FreshSlots({"it_stop", "it_stop_ref"});
  std::string log = dir_->File("s.log");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_stop", "{type: file, path: " + log + "}",
                                                    "    options: {include-xids: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  pg_->Exec("INSERT INTO stopme(v) SELECT 'a' || g FROM generate_series(1, 100) g");
  ASSERT_TRUE(
      WaitFor([&] { return FileExists(log) && ReadFile(log).find("COMMIT") != std::string::npos; },
              seconds(20)));
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  EXPECT_NE(p.Stderr().find("slot it_stop: stopped cleanly"), std::string::npos) << p.Stderr();
  // Nothing is re-delivered after a clean stop: a new run up to a later
  // position appends only the new transaction.
  pg_->Exec("INSERT INTO stopme(v) VALUES ('after')");
  std::string end = pg_->CurrentWalLsn();
  Subprocess again;
  ASSERT_EQ(RunUntil(cfg, end, &again), 0);
  EXPECT_TRUE(SameBytes(ReadFile(log), Reference("it_stop_ref", end, {{"include-xids", "1"}})));
}

TEST_F(DaemonTest, KillNineMidStreamLosesAndRepeatsNothing) {
  pg_->Exec("DROP TABLE IF EXISTS k9; CREATE TABLE k9(id serial primary key, v text)");
  FreshSlots({"it_k9", "it_k9_ref"});
  std::string log = dir_->File("k9.log");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_k9", "{type: file, path: " + log + "}",
                                                    "    fsync_interval: 50ms\n"
                                                    "    options: {include-xids: \"1\"}\n"));
  // A writer that keeps committing while the daemon is killed.
  std::atomic<bool> stop{false};
  std::string conninfo = pg_->Conninfo();
  Subprocess writer;
  writer.Start({"/bin/sh", "-c",
                "for i in $(seq 1 400); do echo \"INSERT INTO k9(v) SELECT 'x' || g FROM "
                "generate_series(1, 20) g;\"; done | psql -q -X \"" +
                    conninfo + "\""});
  for (int round = 0; round < 3; ++round) {
    Subprocess p;
    p.Start({PgslotdBinary(), "--config", cfg});
    // Killed once it has written more (the file may first shrink: a start
    // cuts what the last kill left unrecorded), or once the writer is done.
    size_t before = FileExists(log) ? ReadFile(log).size() : 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          return (FileExists(log) && ReadFile(log).size() > before + 2000) || !writer.Running();
        },
        seconds(30)))
        << p.Stderr();
    ASSERT_TRUE(p.Signal(SIGKILL));
    ASSERT_EQ(p.Wait(seconds(10)), 128 + SIGKILL);
  }
  ASSERT_EQ(writer.Wait(seconds(120)), 0) << writer.Stderr();
  std::string end = pg_->CurrentWalLsn();
  Subprocess last;
  ASSERT_EQ(RunUntil(cfg, end, &last, Subprocess::Options(), seconds(120)), 0);
  std::string expected = Reference("it_k9_ref", end, {{"include-xids", "1"}});
  // The writer's 400, and any empty ones of background work.
  size_t written = 0;
  for (const auto& [xid, body] : Transactions(expected)) {
    written += body.find("table public.k9: INSERT") != std::string::npos ? 1 : 0;
  }
  ASSERT_EQ(written, 400u);
  // A file sink is exactly-once: every transaction once, whole, in order.
  EXPECT_TRUE(SameBytes(ReadFile(log), expected));
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_k9"), end);
}

TEST_F(DaemonTest, IdleSlotAdvancesWhileAnotherDatabaseIsWritten) {
  pg_->CreateDatabase("idle_db");
  pg_->DropSlotIfExists("it_idle");
  pg_->CreateLogicalSlot("it_idle", "test_decoding", "idle_db");
  // Nothing is written in idle_db but background work's empty transactions
  // (autovacuum's, say), which are not what this test is about.
  std::string log = dir_->File("idle.log");
  std::string cfg =
      WriteConfig(Header("idle_db") + SlotYaml("it_idle", "{type: file, path: " + log + "}",
                                               "    options: {skip-empty-xacts: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  std::string start = pg_->ConfirmedFlushLsn("it_idle");
  pg_->Exec("DROP TABLE IF EXISTS busy; CREATE TABLE busy(id serial, v text)");
  pg_->Exec("INSERT INTO busy(v) SELECT repeat('y', 200) FROM generate_series(1, 20000)");
  std::string after = pg_->CurrentWalLsn();
  bool advanced = WaitFor(
      [&] {
        return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + after +
                           "'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'it_idle'") ==
               "t";
      },
      seconds(30));
  EXPECT_TRUE(advanced) << "confirmed_flush_lsn stayed at " << pg_->ConfirmedFlushLsn("it_idle")
                        << " (started at " << start << ", WAL at " << after << ")";
  EXPECT_EQ(pg_->Scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) < 16*1024*1024 "
                        "FROM pg_replication_slots WHERE slot_name = 'it_idle'"),
            "t");
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0);
  EXPECT_EQ(ReadFile(log), "");
}

TEST_F(DaemonTest, PipeReaderThatGoesAwayAndComesBackLosesNothing) {
  pg_->Exec("DROP TABLE IF EXISTS piped; CREATE TABLE piped(id serial primary key, v text)");
  FreshSlots({"it_pipe2", "it_pipe2_ref"});
  // Far more than a pipe holds, in many transactions.
  for (int i = 0; i < 40; ++i) {
    pg_->Exec("INSERT INTO piped(v) SELECT repeat('p', 100) FROM generate_series(1, 50)");
  }
  std::string end = pg_->CurrentWalLsn();
  std::string expected = Reference("it_pipe2_ref", end, {});
  ASSERT_GT(expected.size(), 200000u);

  std::string fifo = dir_->File("p.fifo");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_pipe2", "{type: pipe, path: " + fifo + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", end});
  ASSERT_TRUE(WaitFor([&] { return FileExists(fifo); }, seconds(20)));
  // The daemon streams with no reader; it must still be answering the server.
  std::this_thread::sleep_for(milliseconds(1500));
  ASSERT_TRUE(p.Running()) << p.Stderr();

  // First reader: takes 30000 bytes, then goes away.
  std::string first;
  {
    int fd = open(fifo.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    char buf[4096];
    while (first.size() < 30000) {
      ssize_t n = read(fd, buf, std::min<size_t>(sizeof buf, 30000 - first.size()));
      ASSERT_GT(n, 0);
      first.append(buf, n);
    }
    close(fd);
  }
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("went away") != std::string::npos; }, seconds(20)))
      << p.Stderr();
  // Second reader: everything until the daemon is done.
  std::string second;
  {
    int fd = open(fifo.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) second.append(buf, n);
    close(fd);
  }
  ASSERT_EQ(p.Wait(seconds(60)), 0) << p.Stderr();
  EXPECT_EQ(first, expected.substr(0, first.size()));
  ASSERT_LE(second.size(), expected.size());
  EXPECT_EQ(second, expected.substr(expected.size() - second.size())) << "not a clean suffix";
  EXPECT_GE(first.size() + second.size(), expected.size()) << "a gap: something was lost";
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_pipe2"), end);
}

// A reader that takes half a message and leaves while the daemon has
// nothing more to write: the next reader must start at a message boundary,
// not with the rest of a line whose start it never saw.
TEST_F(DaemonTest, PipeReaderThatLeavesWhileIdleLeavesNoHalfLineToTheNext) {
  pg_->Exec("DROP TABLE IF EXISTS idlepipe; CREATE TABLE idlepipe(id int primary key, v text)");
  FreshSlots({"it_pipe3", "it_pipe3_ref"});
  pg_->Exec("INSERT INTO idlepipe SELECT g, 'row ' || g FROM generate_series(1, 3) g");
  std::string end = pg_->CurrentWalLsn();
  // Without empty transactions: background work (autovacuum) commits some
  // at any moment, and one after `end` would reach the pipe too.
  const Options skip_empty = {{"skip-empty-xacts", "1"}};
  std::string expected = Reference("it_pipe3_ref", end, skip_empty);
  ASSERT_GT(expected.size(), 100u);

  std::string fifo = dir_->File("idle.fifo");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_pipe3", "{type: pipe, path: " + fifo + "}",
                                                    "    options: {skip-empty-xacts: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor([&] { return FileExists(fifo); }, seconds(20))) << p.Stderr();

  // First reader: 10 bytes, the middle of the first line, then gone. The
  // daemon has written everything and has nothing more to write.
  {
    int fd = open(fifo.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    std::string first;
    char buf[10];
    while (first.size() < 10) {
      ssize_t n = read(fd, buf, 10 - first.size());
      ASSERT_GT(n, 0);
      first.append(buf, n);
    }
    EXPECT_EQ(first, expected.substr(0, 10));
    // The whole transaction is in the pipe before the reader leaves.
    int queued = 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          return ioctl(fd, FIONREAD, &queued) == 0 &&
                 static_cast<size_t>(queued) >= expected.size() - 10;
        },
        seconds(20)))
        << "the pipe holds " << queued << " of the " << expected.size() - 10 << " bytes left";
    EXPECT_EQ(static_cast<size_t>(queued), expected.size() - 10);
    close(fd);
  }
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("went away") != std::string::npos; }, seconds(20)))
      << "a reader that left while the daemon was idle went unnoticed:\n"
      << p.Stderr();

  // Second reader: the transaction again, whole, from its first byte.
  std::string second;
  {
    int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    ASSERT_GE(fd, 0);
    char buf[4096];
    ASSERT_TRUE(WaitFor(
        [&] {
          for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) second.append(buf, n);
          return second.size() >= expected.size();
        },
        seconds(20)))
        << "got " << second.size() << " bytes: " << second << "\n"
        << p.Stderr();
    close(fd);
  }
  EXPECT_EQ(second, expected);
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
}

TEST_F(DaemonTest, EndLsnEndsOnAnIdleServer) {
  pg_->DropSlotIfExists("it_idle_end");
  pg_->CreateLogicalSlot("it_idle_end");
  std::string end = pg_->CurrentWalLsn();
  // Idle but for background work's empty transactions, which the file
  // leaves out: it must stay empty, and the run still end.
  std::string cfg = WriteConfig(
      Header() + SlotYaml("it_idle_end", "{type: file, path: " + dir_->File("e.log") + "}",
                          "    options: {skip-empty-xacts: \"1\"}\n"));
  Subprocess p;
  ASSERT_EQ(RunUntil(cfg, end, &p, Subprocess::Options(), seconds(30)), 0);
  EXPECT_EQ(pg_->ConfirmedFlushLsn("it_idle_end"), end);
  EXPECT_EQ(ReadFile(dir_->File("e.log")), "");
}

TEST_F(DaemonTest, ServerRestartMidStreamIsSurvived) {
  pg_->Exec("DROP TABLE IF EXISTS rs; CREATE TABLE rs(id serial primary key, v text)");
  FreshSlots({"it_rs", "it_rs_ref"});
  std::string log = dir_->File("rs.log");
  std::string cfg = WriteConfig(Header() + SlotYaml("it_rs", "{type: file, path: " + log + "}",
                                                    "    options: {include-xids: \"1\"}\n"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  pg_->Exec("INSERT INTO rs(v) SELECT 'before' FROM generate_series(1, 10)");
  ASSERT_TRUE(
      WaitFor([&] { return FileExists(log) && ReadFile(log).find("COMMIT") != std::string::npos; },
              seconds(20)));
  pg_->Restart("fast");
  pg_->Exec("INSERT INTO rs(v) SELECT 'after' FROM generate_series(1, 10)");
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("streaming again") != std::string::npos; }, seconds(30)))
      << p.Stderr();
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + end +
                           "'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'it_rs'") == "t";
      },
      seconds(30)));
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0);
  EXPECT_NE(p.Stderr().find("reconnecting in"), std::string::npos);
  // The daemon ran on past `end` until stopped (background work's empty
  // transactions may have come meanwhile): the file holds exactly what the
  // server decodes up to where the clean stop acknowledged.
  const std::string stopped_at = pg_->ConfirmedFlushLsn("it_rs");
  EXPECT_TRUE(
      SameBytes(ReadFile(log), Reference("it_rs_ref", stopped_at, {{"include-xids", "1"}})));
}

}  // namespace
}  // namespace pgslotd::test
