// Exactly-once file sinks against a real server: a transaction torn by a
// crash is cut and written again whole, a file that no longer holds what the
// server was told stops its slot, and rotation and reopening fall between
// transactions.
#include <signal.h>
#include <sys/stat.h>

#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "daemon_fixture.h"
#include "pg/lsn.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

const Options kXids = {{"include-xids", "1"}};
const char kXidsYaml[] = "    options: {include-xids: \"1\"}\n";
// Without background work's empty transactions, for a test that counts
// transactions in the file.
const Options kXidsNoEmpty = {{"include-xids", "1"}, {"skip-empty-xacts", "1"}};
const char kXidsNoEmptyYaml[] = "    options: {include-xids: \"1\", skip-empty-xacts: \"1\"}\n";

class ExactlyOnceTest : public DaemonTest {};

// Each file starts with a BEGIN line and ends right after a COMMIT line (or
// is empty).
void ExpectWholeTransactions(const std::string& name, const std::string& text) {
  if (text.empty()) return;
  EXPECT_EQ(text.rfind("BEGIN ", 0), 0u) << name << " starts mid-transaction:\n"
                                         << text.substr(0, 200);
  size_t last = text.rfind('\n', text.size() - 2);
  std::string tail = text.substr(last == std::string::npos ? 0 : last + 1);
  EXPECT_EQ(tail.rfind("COMMIT ", 0), 0u) << name << " ends mid-transaction: " << tail;
}

TEST_F(ExactlyOnceTest, ATransactionTornByACrashIsCutAndWrittenAgainWhole) {
  pg_->Exec("DROP TABLE IF EXISTS torn; CREATE TABLE torn(id serial primary key, v text)");
  FreshSlots({"eo_torn", "eo_torn_ref"});
  pg_->Exec("INSERT INTO torn(v) VALUES ('first')");
  pg_->Exec("INSERT INTO torn(v) SELECT repeat('x', 40) || g FROM generate_series(1, 60000) g");
  pg_->Exec("INSERT INTO torn(v) VALUES ('last')");
  std::string end = pg_->CurrentWalLsn();
  std::string log = dir_->File("torn.log");
  std::string cfg = WriteConfig(
      Header() +
      SlotYaml("eo_torn", "{type: file, path: " + log + "}",
               std::string("    buffer_size: 256KiB\n    fsync_interval: 0\n") + kXidsNoEmptyYaml));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  // Killed once the big transaction is partly in the file.
  ASSERT_TRUE(WaitFor(
      [&] {
        struct stat st;
        return stat(log.c_str(), &st) == 0 && st.st_size > 600 * 1024;
      },
      seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGKILL));
  ASSERT_EQ(p.Wait(seconds(10)), 128 + SIGKILL);
  std::string torn = ReadFile(log);
  size_t commits = 0;
  for (size_t at = torn.find("\nCOMMIT "); at != std::string::npos;
       at = torn.find("\nCOMMIT ", at + 1)) {
    ++commits;
  }
  ASSERT_EQ(commits, 1u) << "the kill was meant to fall inside the big transaction";

  Subprocess again;
  ASSERT_EQ(RunUntil(cfg, end, &again), 0);
  EXPECT_NE(again.Stderr().find("bytes of an unfinished transaction off the end of " + log),
            std::string::npos)
      << again.Stderr();
  EXPECT_TRUE(SameBytes(ReadFile(log), Reference("eo_torn_ref", end, kXidsNoEmpty)));
  EXPECT_EQ(pg_->ConfirmedFlushLsn("eo_torn"), end);
  std::string state = ReadFile(dir_->File("eo_torn.state"));
  EXPECT_NE(state.find("lsn " + end + "\n"), std::string::npos) << state;
  EXPECT_NE(state.find("size " + std::to_string(ReadFile(log).size()) + "\n"), std::string::npos)
      << state;
}

TEST_F(ExactlyOnceTest, AFileBehindWhatTheServerWasToldStopsTheSlot) {
  pg_->Exec("DROP TABLE IF EXISTS behind; CREATE TABLE behind(id serial primary key, v text)");
  FreshSlots({"eo_behind"});
  pg_->Exec("INSERT INTO behind(v) VALUES ('kept')");
  std::string end1 = pg_->CurrentWalLsn();
  std::string log = dir_->File("behind.log");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("eo_behind", "{type: file, path: " + log + "}", kXidsYaml));
  Subprocess first;
  ASSERT_EQ(RunUntil(cfg, end1, &first), 0);
  std::string before = ReadFile(log);
  ASSERT_NE(before.find("'kept'"), std::string::npos);

  // Someone moves the slot on behind pgslotd's back (or the file is an old
  // copy): the changes in between are gone from the server.
  pg_->Exec("INSERT INTO behind(v) VALUES ('skipped')");
  std::string end2 = pg_->CurrentWalLsn();
  pg_->Scalar("SELECT 1 FROM pg_replication_slot_advance('eo_behind', '" + end2 + "')");
  Subprocess second;
  second.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", end2, "--log-target", "stderr"});
  EXPECT_EQ(second.Wait(seconds(30)), 1) << second.Stderr();
  EXPECT_NE(second.Stderr().find("the server has been told that changes up to " + end2 +
                                 " are stored, but file " + log + " holds them only up to " + end1),
            std::string::npos)
      << second.Stderr();
  EXPECT_NE(second.Stderr().find("stopping rather than skip them silently"), std::string::npos);
  EXPECT_EQ(second.Stderr().find("reconnecting"), std::string::npos) << "no retry loop";
  EXPECT_TRUE(SameBytes(ReadFile(log), before));
}

// A state record edited by hand (or damaged) made pgslotd skip committed
// transactions (a raised lsn) or cut them off the file (a lowered size), and
// acknowledge them. Its checksum refuses it: the slot stops before anything
// is cut or acknowledged.
TEST_F(ExactlyOnceTest, AnEditedStateRecordStopsTheSlotAndAcknowledgesNothing) {
  pg_->Exec("DROP TABLE IF EXISTS edited; CREATE TABLE edited(id serial primary key, v text)");
  FreshSlots({"eo_edit", "eo_edit_ref"});
  for (int i = 0; i < 10; ++i)
    pg_->Exec("INSERT INTO edited(v) VALUES ('before " + std::to_string(i) + "')");
  std::string end1 = pg_->CurrentWalLsn();
  std::string log = dir_->File("edited.log");
  std::string state = dir_->File("eo_edit.state");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("eo_edit", "{type: file, path: " + log + "}", kXidsYaml));
  Subprocess first;
  ASSERT_EQ(RunUntil(cfg, end1, &first), 0);
  const std::string record = ReadFile(state);
  const std::string file = ReadFile(log);
  const std::string confirmed = pg_->ConfirmedFlushLsn("eo_edit");
  for (int i = 0; i < 10; ++i)
    pg_->Exec("INSERT INTO edited(v) VALUES ('after " + std::to_string(i) + "')");
  std::string end2 = pg_->CurrentWalLsn();

  // The record's own lines, each edited as an attacker (or a slip) would.
  auto line = [&](const std::string& key) {
    size_t at = record.find("\n" + key + " ") + 1;
    return record.substr(at, record.find('\n', at) - at);
  };
  std::optional<Lsn> lsn = ParseLsn(line("lsn").substr(4));
  ASSERT_TRUE(lsn) << record;
  size_t last_begin = file.rfind("BEGIN ");  // the last transaction goes
  ASSERT_NE(last_begin, std::string::npos);
  std::string created = line("created");
  created.back() = created.back() == '0' ? '1' : '0';
  const std::vector<std::pair<std::string, std::string>> edits = {
      {line("lsn"), "lsn " + FormatLsn(*lsn + 0x2000)},
      {line("size"), "size " + std::to_string(last_begin)},
      {line("created"), created},
  };
  for (const auto& [from, to] : edits) {
    SCOPED_TRACE(from + " -> " + to);
    std::string edited = record;
    edited.replace(edited.find(from), from.size(), to);
    WriteFile(state, edited);
    Subprocess p;
    p.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", end2, "--log-target", "stderr"});
    EXPECT_EQ(p.Wait(seconds(30)), 1) << p.Stderr();
    EXPECT_NE(p.Stderr().find("the state record " + state +
                              " is unreadable (its checksum does not match its contents: it was "
                              "edited or damaged); pgslotd will not guess what its file holds "
                              "and acknowledges nothing"),
              std::string::npos)
        << p.Stderr();
    EXPECT_NE(p.Stderr().find("this slot has stopped"), std::string::npos) << p.Stderr();
    EXPECT_TRUE(SameBytes(ReadFile(log), file));
    EXPECT_EQ(ReadFile(state), edited);
    EXPECT_EQ(pg_->ConfirmedFlushLsn("eo_edit"), confirmed);
  }

  // The record as pgslotd wrote it goes on from where it was.
  WriteFile(state, record);
  Subprocess again;
  ASSERT_EQ(RunUntil(cfg, end2, &again), 0);
  EXPECT_TRUE(SameBytes(ReadFile(log), Reference("eo_edit_ref", end2, kXids)));
}

// An upgrade: the record an older pgslotd wrote (version 1, no checksum)
// is used, and the next one has a checksum.
TEST_F(ExactlyOnceTest, ARecordOfTheOldFormatIsUsedAndRewrittenWithAChecksum) {
  pg_->Exec("DROP TABLE IF EXISTS upgrade; CREATE TABLE upgrade(v text)");
  FreshSlots({"eo_upgrade", "eo_upgrade_ref"});
  pg_->Exec("INSERT INTO upgrade VALUES ('before')");
  std::string end1 = pg_->CurrentWalLsn();
  std::string log = dir_->File("upgrade.log");
  std::string state = dir_->File("eo_upgrade.state");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("eo_upgrade", "{type: file, path: " + log + "}", kXidsYaml));
  Subprocess first;
  ASSERT_EQ(RunUntil(cfg, end1, &first), 0);
  std::string record = ReadFile(state);
  size_t checksum = record.rfind("checksum ");
  ASSERT_NE(checksum, std::string::npos) << record;
  std::string old = record.substr(0, checksum);
  old.replace(old.find("\nversion 2\n"), 11, "\nversion 1\n");
  WriteFile(state, old);
  // A torn tail the old record does not cover: cut, as before.
  WriteFile(log, ReadFile(log) + "BEGIN 999\n");

  pg_->Exec("INSERT INTO upgrade VALUES ('after')");
  std::string end2 = pg_->CurrentWalLsn();
  Subprocess second;
  second.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", end2, "--log-target", "stderr"});
  ASSERT_EQ(second.Wait(seconds(60)), 0) << second.Stderr();
  EXPECT_NE(
      second.Stderr().find("the state record " + state +
                           " had no checksum (an older pgslotd wrote it): rewritten with one"),
      std::string::npos)
      << second.Stderr();
  EXPECT_TRUE(SameBytes(ReadFile(log), Reference("eo_upgrade_ref", end2, kXids)));
  std::string now = ReadFile(state);
  EXPECT_NE(now.find("\nversion 2\n"), std::string::npos) << now;
  EXPECT_NE(now.find("\nchecksum "), std::string::npos) << now;
  EXPECT_EQ(pg_->ConfirmedFlushLsn("eo_upgrade"), end2);
}

TEST_F(ExactlyOnceTest, RotationAndReopenFallBetweenTransactions) {
  pg_->Exec("DROP TABLE IF EXISTS rot; CREATE TABLE rot(id serial primary key, v text)");
  FreshSlots({"eo_rot", "eo_rot_ref"});
  std::string log = dir_->File("rot.log");
  std::string cfg = WriteConfig(
      Header() + SlotYaml("eo_rot",
                          "{type: file, path: " + log + ", rotate: {size: 3KiB, keep: 1000}}",
                          std::string("    fsync_interval: 0\n") + kXidsYaml));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  // Transactions of a few rows, with one logrotate (create mode) half way.
  for (int i = 0; i < 40; ++i) {
    pg_->Exec("INSERT INTO rot(v) SELECT 'txn " + std::to_string(i) +
              " row ' || g FROM generate_series(1, 5) g");
    if (i == 20) {
      ASSERT_TRUE(WaitFor([&] { return FileExists(log + ".2"); }, seconds(20))) << p.Stderr();
      ASSERT_EQ(rename(log.c_str(), dir_->File("rot.log-logrotate").c_str()), 0);
      ASSERT_TRUE(p.Signal(SIGHUP));
      ASSERT_TRUE(
          WaitFor([&] { return p.Stderr().find("reopened file " + log) != std::string::npos; },
                  seconds(20)))
          << p.Stderr();
    }
  }
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("eo_rot", end); }, seconds(30))) << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // It ran on past `end` until stopped, maybe through empty transactions
  // of background work: the files hold what the server decodes up to where
  // the clean stop acknowledged.
  const std::string stopped_at = pg_->ConfirmedFlushLsn("eo_rot");

  // Oldest first: the highest number, ..., .1, then the live file. The
  // file logrotate took sits where it was renamed in that sequence: it was
  // the live file until the reopen.
  std::vector<std::string> files;
  for (int n = 1000; n >= 1; --n) {
    if (FileExists(log + "." + std::to_string(n))) files.push_back(log + "." + std::to_string(n));
  }
  ASSERT_GE(files.size(), 4u);
  std::vector<std::string> texts;
  for (const std::string& f : files) {
    texts.push_back(ReadFile(f));
    ExpectWholeTransactions(f, texts.back());
    EXPECT_LE(texts.back().size(), 3 * 1024 + 400u) << f << " grew well past the rotation size";
  }
  std::string logrotated = ReadFile(dir_->File("rot.log-logrotate"));
  std::string live = ReadFile(log);
  ExpectWholeTransactions("rot.log-logrotate", logrotated);
  ExpectWholeTransactions(log, live);
  // Every byte once, in order: the file logrotate took sits somewhere among
  // the numbered ones (it was the live file until the reopen).
  std::string expected = Reference("eo_rot_ref", stopped_at, kXids);
  bool found = false;
  for (size_t k = 0; k <= texts.size() && !found; ++k) {
    std::string all;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (i == k) all += logrotated;
      all += texts[i];
    }
    if (k == texts.size()) all += logrotated;
    found = all + live == expected;
  }
  EXPECT_TRUE(found) << "the files together do not hold the reference exactly once";
  EXPECT_NE(p.Stderr().find("rotated: started a new file " + log), std::string::npos);
}

}  // namespace
}  // namespace pgslotd::test
