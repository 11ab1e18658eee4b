// A disk that fills up, and a disk whose fsync fails, under a file sink,
// against a real server:
//
// - DiskFaultTest.DiskFullIsRetriedAndRecoversExactly (and
//   ...WithTheStateDirectoryOnTheFullDiskToo): the sink file lives on a
//   512 KiB tmpfs and a workload of about 4 MB fills it. pgslotd keeps
//   running, logs the file and "No space left on device", retries with a
//   growing backoff, raises the lag alarm, and never lets the slot's
//   confirmed_flush_lsn pass what the file holds. Once the tmpfs is grown to
//   64 MiB it recovers by itself and the file is exactly the server's own
//   decoding: nothing lost, nothing repeated. Needs root (mount); skipped
//   otherwise.
// - DiskFaultTest.AFailedFsyncStopsPgslotdAndNothingUnsyncedIsAcknowledged:
//   fsync_eio_shim.c (LD_PRELOAD) makes fdatasync of the sink file fail
//   with EIO from a moment the test picks. pgslotd exits 1 naming the file,
//   fsync and the error; the slot's confirmed_flush_lsn stays within what
//   the last good fsync made durable; a run without the shim then leaves the
//   file exactly equal to the server's decoding.
//
// The reference for a slot is a copy of it made before the daemon starts
// (DaemonTest::FreshSlots), read with pg_logical_slot_peek_changes
// (DaemonTest::Reference).
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon_fixture.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

const Options kOptions = {{"include-xids", "1"}, {"skip-empty-xacts", "1"}};
constexpr char kOptionsYaml[] = "    options: {include-xids: \"1\", skip-empty-xacts: \"1\"}\n";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// `content` without what at-least-once delivery may repeat
// (docs/operations.md): a transaction cut short by the BEGIN of another, and
// a transaction whose xid was committed before. Only for failure messages: it
// tells repeated transactions from lost ones.
std::string WithoutRepeats(const std::string& content) {
  std::string out, open, xid;
  std::set<std::string> committed;
  bool in_txn = false;
  for (const std::string& line : SplitLines(content)) {
    if (StartsWith(line, "BEGIN ")) {
      open = line + "\n";  // an open one without COMMIT was cut: dropped
      xid = line.substr(6);
      in_txn = true;
    } else if (in_txn) {
      open += line + "\n";
      if (StartsWith(line, "COMMIT ")) {
        if (committed.insert(xid).second) out += open;
        in_txn = false;
      }
    } else {
      out += line + "\n";
    }
  }
  return out;
}

// Where `got` and `want` part, for a failure message.
std::string Explain(const std::string& got, const std::string& want) {
  size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  auto around = [&](const std::string& s) {
    size_t from = at > 80 ? at - 80 : 0;
    return "\"" + s.substr(from, 200) + "\"";
  };
  std::string out = "the file holds " + std::to_string(got.size()) + " bytes, the reference " +
                    std::to_string(want.size()) + "; they part at byte " + std::to_string(at) +
                    ":\n  file:      " + around(got) + "\n  reference: " + around(want);
  out += WithoutRepeats(got) == want
             ? "\nwithout repeated transactions the file equals the reference: only repeats"
             : "\neven without repeated transactions it differs: something is lost or wrong";
  return out;
}

// Whether `prefix` is where `content` starts.
bool IsPrefix(const std::string& prefix, const std::string& content) {
  return prefix.size() <= content.size() && content.compare(0, prefix.size(), prefix) == 0;
}

// The N of each "reconnecting in N ms" of `lines`, in order.
std::vector<long> Backoffs(const std::vector<std::string>& lines) {
  std::vector<long> out;
  const std::string key = "reconnecting in ";
  for (const std::string& line : lines) {
    size_t at = line.find(key);
    if (at != std::string::npos) out.push_back(std::atol(line.c_str() + at + key.size()));
  }
  return out;
}

class DiskFaultTest : public DaemonTest {
 protected:
  void TearDown() override {
    // pgslotd holds the file open: it goes first, then the mount.
    daemon_.reset();
    if (!mnt_.empty()) {
      if (umount(mnt_.c_str()) != 0 && umount2(mnt_.c_str(), MNT_DETACH) != 0) {
        ADD_FAILURE() << "cannot unmount " << mnt_ << ": " << std::strerror(errno);
      }
      mnt_.clear();
    }
  }

  // Mounts a tmpfs of `size` (e.g. "512k") at <dir>/small. Returns why it
  // cannot (not root, no CAP_SYS_ADMIN), or "".
  std::string MountSmallDisk(const std::string& size) {
    if (geteuid() != 0) return "mounting a small tmpfs needs root, and this is not root";
    const std::string path = dir_->File("small");
    if (mkdir(path.c_str(), 0755) != 0) return "mkdir " + path + ": " + std::strerror(errno);
    const std::string options = "size=" + size + ",mode=0755";
    if (mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      return "cannot mount a tmpfs at " + path + " (" + std::strerror(errno) +
             "): it needs CAP_SYS_ADMIN";
    }
    mnt_ = path;
    return "";
  }

  void GrowSmallDisk(const std::string& size) {
    const std::string options = "size=" + size + ",mode=0755";
    ASSERT_EQ(
        mount(nullptr, mnt_.c_str(), nullptr, MS_REMOUNT | MS_NOSUID | MS_NODEV, options.c_str()),
        0)
        << "remount " << mnt_ << ": " << std::strerror(errno);
  }

  // A config header like DaemonTest::Header(), with the state directory and
  // the extra top-level lines given.
  std::string Head(const std::string& state_directory, const std::string& extra) const {
    return "connection: \"" + pg_->Conninfo() +
           "\"\nstatus_interval: 1s\nstate_directory: " + state_directory +
           "\nruntime_directory: " + dir_->path() + "\n" + extra + "slots:\n";
  }

  // That the slot has not been told more than the file holds: the server's
  // decoding up to the slot's confirmed_flush_lsn starts the file. Returns
  // false (after a failure) when it does not.
  bool AckedIsInTheFile(const std::string& slot, const std::string& ref, const std::string& path) {
    const std::string confirmed = pg_->ConfirmedFlushLsn(slot);
    const std::string file = FileExists(path) ? ReadFile(path) : "";
    const std::string acked = Reference(ref, confirmed, kOptions);
    if (IsPrefix(acked, file)) return true;
    ADD_FAILURE() << "confirmed_flush_lsn " << confirmed
                  << " is past what the file holds: " << Explain(file, acked);
    return false;
  }

  void RunDiskFull(bool state_on_the_full_disk);

  std::unique_ptr<Subprocess> daemon_;
  std::string mnt_;  // mounted tmpfs, or empty
};

void DiskFaultTest::RunDiskFull(bool state_on_the_full_disk) {
  if (std::string why = MountSmallDisk("512k"); !why.empty()) {
    GTEST_SKIP() << "disk-full test skipped: " << why;
  }
  const std::string slot = state_on_the_full_disk ? "fb_full_state" : "fb_full";
  const std::string ref = slot + "_ref";
  pg_->Exec(
      "DROP TABLE IF EXISTS fb_full; "
      "CREATE TABLE fb_full(id serial primary key, txn int, payload text)");
  FreshSlots({slot.c_str(), ref.c_str()});
  const std::string out = mnt_ + "/out.log";
  std::string state_dir = dir_->path();
  if (state_on_the_full_disk) {
    state_dir = mnt_ + "/state";
    ASSERT_EQ(mkdir(state_dir.c_str(), 0700), 0);
  }
  const std::string cfg =
      WriteConfig(Head(state_dir, "monitor_interval: 1s\nlag_alarm: {seconds: 2s}\n") +
                  SlotYaml(slot, "{type: file, path: " + out + "}",
                           std::string(kOptionsYaml) + "    fsync_interval: 100ms\n"));
  daemon_ = std::make_unique<Subprocess>();
  daemon_->Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return daemon_->Stderr().find("slot " + slot + ": streaming from") != std::string::npos;
      },
      seconds(30)))
      << daemon_->Stderr();

  // About 4 MB of output, 8 times the file system: 40 transactions of 100
  // rows of 1 KiB.
  for (int t = 0; t < 40; ++t) {
    pg_->Exec("INSERT INTO fb_full(txn, payload) SELECT " + std::to_string(t) +
              ", repeat(md5(g::text || '-" + std::to_string(t) +
              "'), 32) FROM generate_series(1, 100) g");
  }
  const std::string end = pg_->CurrentWalLsn();
  const std::string want = Reference(ref, end, kOptions);
  ASSERT_GT(want.size(), 3u << 20) << "the workload is too small to fill the disk";
  ASSERT_NE(want.find("txn[integer]:39"), std::string::npos);

  // The disk fills: pgslotd says so, naming the file (or, with the state
  // directory there too, possibly its state record first).
  const std::string no_space = "No space left on device";
  auto full_lines = [&] {
    std::vector<std::string> lines;
    for (const std::string& l :
         LinesWithAll(daemon_->Stderr(), {"slot " + slot + ": ", no_space})) {
      if (l.find(out) != std::string::npos ||
          (state_on_the_full_disk && l.find(state_dir) != std::string::npos)) {
        lines.push_back(l);
      }
    }
    return lines;
  };
  ASSERT_TRUE(WaitFor([&] { return !full_lines().empty() || !daemon_->Running(); }, seconds(60)))
      << daemon_->Stderr();
  ASSERT_TRUE(daemon_->Running()) << "pgslotd exited on a full disk:\n" << daemon_->Stderr();
  EXPECT_FALSE(LinesWithAll(daemon_->Stderr(), {"slot " + slot + ": ", out, no_space}).empty())
      << "the sink file is not named:\n"
      << daemon_->Stderr();

  // It retries, with a growing wait. All the while the slot is never told
  // more than the file holds: checked once each of the first four retries
  // has been logged (however fast they come, each check sees one more).
  for (size_t retries = 1; retries <= 4; ++retries) {
    SCOPED_TRACE("after retry " + std::to_string(retries));
    ASSERT_TRUE(WaitFor(
        [&] {
          return !daemon_->Running() ||
                 Backoffs(LinesWithAll(daemon_->Stderr(), {"slot " + slot + ": "})).size() >=
                     retries;
        },
        seconds(60)))
        << daemon_->Stderr();
    ASSERT_TRUE(daemon_->Running()) << daemon_->Stderr();
    if (!AckedIsInTheFile(slot, ref, out)) return;
  }
  // And the lag alarm goes off.
  const std::string alarm = "slot " + slot + ": lag alarm: ";
  ASSERT_TRUE(WaitFor(
      [&] { return !daemon_->Running() || daemon_->Stderr().find(alarm) != std::string::npos; },
      seconds(60)))
      << daemon_->Stderr();
  ASSERT_TRUE(daemon_->Running()) << daemon_->Stderr();
  {
    const std::string err = daemon_->Stderr();
    EXPECT_GT(err.find(alarm), err.find(no_space)) << "the alarm came before the disk was full";
    const std::vector<long> waits = Backoffs(LinesWithAll(err, {"slot " + slot + ": "}));
    ASSERT_GE(waits.size(), 4u) << err;
    for (size_t i = 1; i < waits.size(); ++i) {
      EXPECT_GT(waits[i], waits[i - 1]) << "the wait does not grow:\n" << err;
    }
    for (long w : waits) EXPECT_LE(w, 30000);
    EXPECT_LT(FileExists(out) ? ReadFile(out).size() : 0, want.size());
  }
  ASSERT_TRUE(AckedIsInTheFile(slot, ref, out));
  EXPECT_FALSE(FlushAtLeast(slot, end)) << "acknowledged everything on a full disk";

  // Room again: pgslotd recovers by itself (the wait is 30 s at most).
  GrowSmallDisk("64m");
  EXPECT_TRUE(WaitFor([&] { return FlushAtLeast(slot, end) || !daemon_->Running(); }, seconds(75)))
      << daemon_->Stderr();
  ASSERT_TRUE(daemon_->Running()) << daemon_->Stderr();
  EXPECT_TRUE(WaitFor(
      [&] {
        return daemon_->Stderr().find("slot " + slot + ": lag alarm cleared") != std::string::npos;
      },
      seconds(30)))
      << daemon_->Stderr();
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  ASSERT_EQ(daemon_->Wait(seconds(30)), 0) << daemon_->Stderr();

  const std::string got = ReadFile(out);
  EXPECT_TRUE(got == want) << Explain(got, want);
  EXPECT_TRUE(FlushAtLeast(slot, end));
}

TEST_F(DiskFaultTest, DiskFullIsRetriedAndRecoversExactly) { RunDiskFull(false); }

TEST_F(DiskFaultTest, DiskFullWithTheStateDirectoryOnTheFullDiskToo) { RunDiskFull(true); }

// --- fsync fails with EIO --------------------------------------------------

// The shim's log (see fsync_eio_shim.c): the size after the last good sync
// of `path`, and how many syncs of it failed.
struct ShimReport {
  long long durable = -1;
  int good = 0;
  int failed = 0;
};

ShimReport ReadShimLog(const std::string& log, const std::string& path) {
  ShimReport r;
  if (!FileExists(log)) return r;
  for (const std::string& line : SplitLines(ReadFile(log))) {
    // "<what> <size> <path>"
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || line.substr(sp2 + 1) != path) continue;
    const std::string what = line.substr(0, sp1);
    if (what == "ok") {
      ++r.good;
      r.durable = std::atoll(line.c_str() + sp1 + 1);
    } else if (what == "eio") {
      ++r.failed;
    }
  }
  return r;
}

std::string ShimPath() {
#ifdef PGSLOTD_FSYNC_EIO_SHIM
  return PGSLOTD_FSYNC_EIO_SHIM;
#else
  return "";
#endif
}

TEST_F(DiskFaultTest, AFailedFsyncStopsPgslotdAndNothingUnsyncedIsAcknowledged) {
  const std::string shim = ShimPath();
  ASSERT_TRUE(!shim.empty() && FileExists(shim)) << "the fsync shim is not built: " << shim;
  pg_->Exec(
      "DROP TABLE IF EXISTS fb_eio; CREATE TABLE fb_eio(id serial primary key, txn int, v text)");
  FreshSlots({"fb_eio", "fb_eio_ref"});
  const std::string sink_dir = dir_->File("sink");
  ASSERT_EQ(mkdir(sink_dir.c_str(), 0755), 0);
  const std::string out = sink_dir + "/out.log";
  const std::string trigger = dir_->File("fsync-fails-from-now-on");
  const std::string shim_log = dir_->File("shim.log");
  // The state directory (dir_) is outside sink_dir: its record syncs fine.
  const std::string cfg =
      WriteConfig(Header() + SlotYaml("fb_eio", "{type: file, path: " + out + "}",
                                      std::string(kOptionsYaml) + "    fsync_interval: 50ms\n"));
  auto txn = [&](int t) {
    pg_->Exec("INSERT INTO fb_eio(txn, v) SELECT " + std::to_string(t) +
              ", md5(g::text) FROM generate_series(1, 20) g");
  };

  Subprocess::Options env;
  const char* asan = std::getenv("ASAN_OPTIONS");
  env.env = {
      {"LD_PRELOAD", shim},
      {"PGSLOTD_FAULT_FSYNC_DIR", sink_dir},
      {"PGSLOTD_FAULT_FSYNC_TRIGGER", trigger},
      {"PGSLOTD_FAULT_FSYNC_LOG", shim_log},
      // Under AddressSanitizer the shim comes before its runtime.
      {"ASAN_OPTIONS", std::string(asan != nullptr ? asan : "") +
                           (asan != nullptr && *asan ? ":" : "") + "verify_asan_link_order=0"},
  };
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"}, env);

  // Good fsyncs first: some transactions are durable and acknowledged.
  for (int t = 0; t < 10; ++t) txn(t);
  const std::string before = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("fb_eio", before) || !p.Running(); }, seconds(30)))
      << p.Stderr();
  ASSERT_TRUE(p.Running()) << p.Stderr();
  ASSERT_GT(ReadShimLog(shim_log, out).good, 0) << "the shim saw no fsync of " << out;

  // From now on every fsync of the file fails, while changes keep coming.
  WriteFile(trigger, "");
  int t = 10;
  while (p.Running() && t < 1000) txn(t++);
  ASSERT_EQ(p.Wait(seconds(30)), 1) << p.Stderr();
  const std::string err = p.Stderr();
  const ShimReport shim_saw = ReadShimLog(shim_log, out);
  EXPECT_GT(shim_saw.failed, 0) << "pgslotd stopped, but not on an injected EIO:\n" << err;
  EXPECT_FALSE(
      LinesWithAll(err, {" critical ", "slot fb_eio: ", out, "fsync", "Input/output error"})
          .empty())
      << "expected a critical line naming the file, fsync and EIO:\n"
      << err;
  EXPECT_NE(err.find("exiting with code 1"), std::string::npos) << err;

  // The server was told nothing beyond the last good fsync.
  ASSERT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar("SELECT active FROM pg_replication_slots WHERE slot_name = 'fb_eio'") ==
               "f";
      },
      seconds(30)));
  const std::string confirmed = pg_->ConfirmedFlushLsn("fb_eio");
  const std::string acked = Reference("fb_eio_ref", confirmed, kOptions);
  const std::string file = ReadFile(out);
  ASSERT_GE(shim_saw.durable, 0);
  const std::string durable = file.substr(0, static_cast<size_t>(shim_saw.durable));
  EXPECT_TRUE(IsPrefix(acked, durable))
      << "confirmed_flush_lsn " << confirmed << " is past the last good fsync (" << shim_saw.durable
      << " bytes): " << Explain(durable, acked);
  EXPECT_TRUE(IsPrefix(acked, file)) << Explain(file, acked);
  std::printf(
      "[   INFO   ] fsync failed with %zu bytes in the file, %lld durable, %zu acknowledged\n",
      file.size(), shim_saw.durable, acked.size());

  // Without the shim, to an end position: the unsynced tail is cut back and
  // nothing is lost or written twice.
  const std::string end = pg_->CurrentWalLsn();
  const std::string want = Reference("fb_eio_ref", end, kOptions);
  ASSERT_NE(want.find("txn[integer]:" + std::to_string(t - 1)), std::string::npos);
  Subprocess again;
  ASSERT_EQ(RunUntil(cfg, end, &again), 0);
  const std::string got = ReadFile(out);
  EXPECT_TRUE(got == want) << Explain(got, want) << "\nsecond run:\n" << again.Stderr();
}

}  // namespace
}  // namespace pgslotd::test
