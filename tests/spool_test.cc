// The spool of streamed transactions: order, the memory bound, the disk
// path, subtransaction aborts and file clean-up.
#include "decode/spool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace pgslotd {
namespace {

struct Record {
  uint32_t split;
  std::string line;
  bool operator==(const Record& o) const { return split == o.split && line == o.line; }
};

std::ostream& operator<<(std::ostream& os, const Record& r) {
  return os << "{" << r.split << ", " << r.line.size() << " bytes: " << r.line.substr(0, 40) << "}";
}

class Collect : public Spool::Visitor {
 public:
  void OnRecord(uint32_t split, std::string_view line) override {
    records.push_back({split, std::string(line)});
  }
  std::vector<Record> records;
};

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgslotd-spool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = std::string(tmpl) + "/spool";
  }
  void TearDown() override {
    std::filesystem::remove_all(std::filesystem::path(dir_).parent_path());
  }

  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    if (!std::filesystem::exists(dir_)) return names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  // What the spool's files hold together.
  uint64_t FileBytes() const {
    uint64_t total = 0;
    for (const std::string& name : Files()) total += std::filesystem::file_size(dir_ + "/" + name);
    return total;
  }
  std::vector<Record> Replay(Spool* spool, uint32_t xid) {
    Collect c;
    Status s = spool->Replay(xid, &c);
    EXPECT_TRUE(s.ok()) << s.message();
    return c.records;
  }
  static std::string Line(int i, size_t size = 20) {
    std::string s = "line " + std::to_string(i) + " ";
    s.resize(size, 'x');
    return s;
  }

  std::string dir_;
};

TEST_F(SpoolTest, SmallTransactionsStayInMemory) {
  Spool spool(dir_, "s", 1 << 20);
  ASSERT_TRUE(spool.Append(10, 10, 3, "first").ok());
  ASSERT_TRUE(spool.Append(11, 11, Spool::kNoSplit, "other").ok());
  ASSERT_TRUE(spool.Append(10, 12, 0, "second").ok());
  EXPECT_EQ(spool.files_open(), 0u);
  EXPECT_TRUE(Files().empty());
  EXPECT_EQ(spool.memory_used(), 3 * 12 + 5 + 5 + 6u);
  EXPECT_EQ(Replay(&spool, 10), (std::vector<Record>{{3, "first"}, {0, "second"}}));
  EXPECT_FALSE(spool.Contains(10));
  EXPECT_TRUE(spool.Contains(11));
  EXPECT_EQ(spool.memory_used(), 12 + 5u);
  EXPECT_EQ(Replay(&spool, 11), (std::vector<Record>{{Spool::kNoSplit, "other"}}));
  EXPECT_EQ(spool.memory_used(), 0u);
}

TEST_F(SpoolTest, MemoryStaysBoundedAndOrderIsKeptAcrossDiskAndMemory) {
  Spool spool(dir_, "s", 100);
  std::vector<Record> a;
  std::vector<Record> b;
  for (int i = 0; i < 200; ++i) {
    uint32_t xid = i % 3 == 0 ? 20 : 21;
    Record r{static_cast<uint32_t>(i), Line(i, 10 + i % 30)};
    ASSERT_TRUE(spool.Append(xid, xid, r.split, r.line).ok());
    (xid == 20 ? a : b).push_back(r);
    ASSERT_LE(spool.memory_used(), 100u);
  }
  EXPECT_EQ(spool.files_open(), 2u);
  EXPECT_EQ(spool.disk_used(), FileBytes());
  EXPECT_EQ(Files(),
            (std::vector<std::string>{"pgslotd-s-" + std::to_string(::getpid()) + "-20.spool",
                                      "pgslotd-s-" + std::to_string(::getpid()) + "-21.spool"}));
  EXPECT_EQ(Replay(&spool, 21), b);
  EXPECT_EQ(spool.disk_used(), FileBytes());
  EXPECT_GT(spool.disk_used(), 0u);
  EXPECT_EQ(Replay(&spool, 20), a);
  EXPECT_EQ(spool.disk_used(), 0u);
  EXPECT_TRUE(Files().empty());
  EXPECT_EQ(spool.files_open(), 0u);
}

TEST_F(SpoolTest, RecordsLargerThanTheLimitOrTheReadChunk) {
  Spool spool(dir_, "s", 100);
  std::vector<Record> expected = {
      {1, Line(1)},
      {2, Line(2, 1000)},
      {3, Line(3, 300 * 1024)},  // larger than the 64 KiB read chunk
      {4, Line(4)},
      {5, Line(5, 70 * 1024)},
      {6, ""},
  };
  for (const Record& r : expected) ASSERT_TRUE(spool.Append(30, 30, r.split, r.line).ok());
  EXPECT_LE(spool.memory_used(), 100u);
  EXPECT_EQ(Replay(&spool, 30), expected);
}

TEST_F(SpoolTest, SubtransactionAbortDropsOnlyItsRecords) {
  for (uint64_t limit : {uint64_t{60}, uint64_t{1} << 20}) {
    SCOPED_TRACE(limit);
    Spool spool(dir_, "s", limit);
    ASSERT_TRUE(spool.Append(40, 40, 0, "top 1").ok());
    ASSERT_TRUE(spool.Append(40, 41, 0, "sub 41 a").ok());
    ASSERT_TRUE(spool.Append(40, 42, 0, "sub 42").ok());
    ASSERT_TRUE(spool.Append(40, 41, 0, "sub 41 b").ok());
    spool.Abort(40, 41);
    ASSERT_TRUE(spool.Append(40, 40, 0, "top 2").ok());
    spool.Abort(40, 99);  // a subtransaction with no records
    spool.Abort(77, 78);  // a transaction that is not there
    EXPECT_EQ(Replay(&spool, 40), (std::vector<Record>{{0, "top 1"}, {0, "sub 42"}, {0, "top 2"}}));
    EXPECT_EQ(spool.memory_used(), 0u);
  }
}

TEST_F(SpoolTest, TopLevelAbortDropsEverythingAndItsFile) {
  Spool spool(dir_, "s", 30);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(spool.Append(50, 50 + i % 2, 0, Line(i)).ok());
  ASSERT_EQ(Files().size(), 1u);
  EXPECT_EQ(spool.disk_used(), FileBytes());
  spool.Abort(50, 50);
  EXPECT_EQ(spool.disk_used(), 0u);
  EXPECT_FALSE(spool.Contains(50));
  EXPECT_TRUE(Files().empty());
  EXPECT_EQ(spool.memory_used(), 0u);
  EXPECT_TRUE(Replay(&spool, 50).empty());
}

TEST_F(SpoolTest, ClearAndDestructionRemoveFiles) {
  {
    Spool spool(dir_, "s", 30);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(spool.Append(60 + i % 2, 60, 0, Line(i)).ok());
    ASSERT_EQ(Files().size(), 2u);
    spool.Clear();
    EXPECT_EQ(spool.disk_used(), 0u);
    EXPECT_TRUE(Files().empty());
    EXPECT_EQ(spool.memory_used(), 0u);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(spool.Append(62, 62, 0, Line(i)).ok());
    ASSERT_EQ(Files().size(), 1u);
  }
  EXPECT_TRUE(Files().empty());
}

TEST_F(SpoolTest, FilesAreOwnerOnlyAndTheDirectoryIsCreated) {
  ASSERT_FALSE(std::filesystem::exists(dir_));
  Spool spool(dir_, "", 10);
  ASSERT_TRUE(spool.Append(70, 70, 0, Line(1)).ok());
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string path = spool.PathFor(70);
  EXPECT_EQ(path, dir_ + "/pgslotd-" + std::to_string(::getpid()) + "-70.spool");
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SpoolTest, ClearStaleRemovesEveryFileOfTheSlotThatNoOwnerHolds) {
  std::filesystem::create_directories(dir_);
  Spool spool(dir_, "s", 10);
  ASSERT_TRUE(spool.Append(80, 80, 0, Line(1)).ok());  // ours and in use: kept
  std::string me = std::to_string(::getpid());
  for (const std::string& n : std::vector<std::string>{
           "pgslotd-s-999999999-1.spool", "pgslotd-s-" + me + "-2.spool", "pgslotd-s-1-3.spool",
           "pgslotd-t-999999999-4.spool", "pgslotd-999999999-5.spool", "pgslotd-s-x-6.spool",
           "pgslotd-s-999999999-7.spool.tmp", "pgslotd-s-42-8.spool"}) {
    FILE* f = std::fopen((dir_ + "/" + n).c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  // An owner (here: another open file description) holds this one.
  int held = ::open((dir_ + "/pgslotd-s-42-8.spool").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  spool.ClearStale();
  ::close(held);
  std::vector<std::string> kept = {"pgslotd-999999999-5.spool", "pgslotd-s-" + me + "-80.spool",
                                   "pgslotd-s-42-8.spool",      "pgslotd-s-999999999-7.spool.tmp",
                                   "pgslotd-s-x-6.spool",       "pgslotd-t-999999999-4.spool"};
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(Files(), kept);
  EXPECT_EQ(Replay(&spool, 80), (std::vector<Record>{{0, Line(1)}}));
}

// The files of another process are kept while it runs and removed once it
// has ended, even before it is reaped (a zombie still "exists" for kill()).
TEST_F(SpoolTest, ClearStaleKeepsFilesOfALiveProcessAndRemovesThoseOfAKilledOne) {
  std::filesystem::create_directories(dir_);
  int ready[2];
  int release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Spool owner(dir_, "s", 10);
    char c = owner.Append(90, 90, 0, Line(1)).ok() ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    ssize_t n = ::read(release[0], &c, 1);  // until the test says so, or dies
    (void)n;
    ::_exit(0);  // no destructor: the file stays behind
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  std::string name = "pgslotd-s-" + std::to_string(child) + "-90.spool";
  Spool spool(dir_, "s", 10);
  spool.ClearStale();
  EXPECT_EQ(Files(), std::vector<std::string>{name});  // alive: kept

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  // Wait until it has died, without reaping it.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  ASSERT_EQ(::kill(child, 0), 0);  // a zombie
  spool.ClearStale();
  EXPECT_TRUE(Files().empty());
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

TEST_F(SpoolTest, WithoutADirectoryNothingGoesToDisk) {
  Spool spool("", "s", 10);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(spool.Append(90, 90, 0, Line(i)).ok());
  EXPECT_EQ(spool.files_open(), 0u);
  EXPECT_EQ(Replay(&spool, 90).size(), 50u);
  spool.ClearStale();  // nothing to do, no crash
}

TEST_F(SpoolTest, WriteFailureIsRetryable) {
  std::filesystem::create_directories(std::filesystem::path(dir_).parent_path());
  std::string file = std::filesystem::path(dir_).parent_path().string() + "/file";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  Spool spool(file + "/spool", "s", 10);
  Status s = spool.Append(95, 95, 0, Line(1));
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_NE(s.message().find("pgoutput: cannot create spool file " + file + "/spool/pgslotd-s-"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("Not a directory"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace pgslotd
