// The real sinks against real files, FIFOs and pipes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "sink/file_sink.h"
#include "sink/kafka_position.h"
#include "sink/pipe_sink.h"
#include "sink/stdout_sink.h"
#include "util/path.h"

namespace pgslotd {
namespace {

class SinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // as the daemon does: a lost reader is an error value
    char tmpl[] = "/tmp/pgslotd-sink-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }
  std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // A new FIFO in the test directory.
  std::string Fifo() {
    std::string path = dir_ + "/fifo";
    EXPECT_EQ(mkfifo(path.c_str(), 0600), 0);
    return path;
  }
  // Opens a non-blocking reader of `path`; -1 on failure.
  static int OpenReader(const std::string& path) {
    return open(path.c_str(), O_RDONLY | O_NONBLOCK);
  }
  // What a reader can take from `fd` now, without blocking.
  static std::string ReadNow(int fd) {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, n);
    return out;
  }
  std::string dir_;
};

TEST_F(SinkTest, FileIsDurableOnlyAfterSync) {
  std::string path = dir_ + "/out.log";
  FileSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  size_t n = 0;
  ASSERT_TRUE(sink.Write("line 1\nline 2\n", 14, &n).ok());
  EXPECT_EQ(n, 14u);
  EXPECT_EQ(sink.accepted(), 14u);
  EXPECT_EQ(sink.durable(), 0u);
  EXPECT_TRUE(sink.SyncIsCostly());
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.durable(), 14u);
  EXPECT_FALSE(sink.SyncIsCostly());
  EXPECT_EQ(Read(path), "line 1\nline 2\n");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SinkTest, FileModeIsExactDespiteUmaskAndAppendsToExisting) {
  std::string path = dir_ + "/shared.log";
  mode_t old = umask(077);
  {
    FileSink sink(path, 0640);
    ASSERT_TRUE(sink.Open().ok());
    ASSERT_TRUE(sink.Close().ok());
  }
  umask(old);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);

  std::ofstream(path) << "old\n";
  FileSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  size_t n;
  ASSERT_TRUE(sink.Write("new\n", 4, &n).ok());
  ASSERT_TRUE(sink.Close().ok());
  EXPECT_EQ(Read(path), "old\nnew\n");
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "an existing file keeps its mode";
}

TEST_F(SinkTest, FileDiscardCutsBackToTheKeptOffset) {
  std::string path = dir_ + "/cut.log";
  std::ofstream(path) << "before\n";
  FileSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  size_t n;
  ASSERT_TRUE(sink.Write("aaa\n", 4, &n).ok());
  ASSERT_TRUE(sink.Sync().ok());
  ASSERT_TRUE(sink.Write("bbb\nccc", 7, &n).ok());
  ASSERT_TRUE(sink.Discard(4).ok());
  EXPECT_EQ(sink.accepted(), 4u);
  EXPECT_EQ(sink.durable(), 4u);
  EXPECT_EQ(Read(path), "before\naaa\n");
  ASSERT_TRUE(sink.Write("ddd\n", 4, &n).ok());
  ASSERT_TRUE(sink.Close().ok());
  EXPECT_EQ(Read(path), "before\naaa\nddd\n");
}

TEST_F(SinkTest, FileReopenFollowsLogrotateCreateMode) {
  std::string path = dir_ + "/rot.log";
  FileSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  size_t n;
  ASSERT_TRUE(sink.Write("one\n", 4, &n).ok());
  ASSERT_EQ(rename(path.c_str(), (path + ".1").c_str()), 0);
  ASSERT_TRUE(sink.Write("two\n", 4, &n).ok());  // still the old file
  ASSERT_TRUE(sink.Reopen().ok());
  EXPECT_EQ(sink.durable(), 8u) << "reopen syncs the old file first";
  ASSERT_TRUE(sink.Write("three\n", 6, &n).ok());
  ASSERT_TRUE(sink.Close().ok());
  EXPECT_EQ(Read(path + ".1"), "one\ntwo\n");
  EXPECT_EQ(Read(path), "three\n");
  EXPECT_EQ(sink.durable(), 14u);
}

TEST_F(SinkTest, FileRefusesADirectoryAndReportsAMissingOne) {
  FileSink dir_sink(dir_, 0600);
  Status s = dir_sink.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);  // retrying would not help
  EXPECT_EQ(s.message(), dir_ + " is a directory, not a regular file");
  // A missing directory is an operator's mistake, not something time cures.
  FileSink missing(dir_ + "/no/such/dir/out.log", 0600);
  s = missing.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_EQ(s.message(), "cannot open " + dir_ + "/no/such/dir/out.log: the directory " + dir_ +
                             "/no/such/dir does not exist (create it, or correct the path)");
  PipeSink missing_pipe(dir_ + "/no/fifo", 0600);
  s = missing_pipe.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find("the directory " + dir_ + "/no does not exist"), std::string::npos)
      << s.message();
}

// Opens `path` as a file sink and a pipe sink as user nobody (a child
// process when the test runs as root, where permissions never refuse) and
// returns "<code>|<message>" of each, joined by "\n".
std::string OpenAsNobody(const std::string& file, const std::string& fifo) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    std::string out;
    for (int i = 0; i < 2; ++i) {
      std::unique_ptr<Sink> sink;
      if (i == 0) sink = std::make_unique<FileSink>(file, 0600);
      if (i == 1) sink = std::make_unique<PipeSink>(fifo, 0600);
      Status st = sink->Open();
      out += std::to_string(static_cast<int>(st.code())) + "|" + st.message() + "\n";
    }
    ssize_t n = write(fds[1], out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 3);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return got;
}

TEST_F(SinkTest, ADirectoryThatRefusesTheUserStopsTheSlot) {
  std::string locked = dir_ + "/locked";
  ASSERT_EQ(mkdir(locked.c_str(), 0755), 0);
  if (geteuid() != 0) {
    ASSERT_EQ(chmod(locked.c_str(), 0555), 0);
  }
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);  // nobody may reach it, not write in it
  std::string got = OpenAsNobody(locked + "/out.log", locked + "/fifo");
  std::string fatal = std::to_string(static_cast<int>(Status::Code::kSlotFatal)) + "|";
  EXPECT_NE(got.find(fatal + "cannot open " + locked + "/out.log: Permission denied for user "),
            std::string::npos)
      << got;
  EXPECT_NE(got.find(fatal + "cannot create FIFO " + locked + "/fifo: Permission denied"),
            std::string::npos)
      << got;
  EXPECT_NE(got.find("grant it access to " + locked), std::string::npos) << got;
}

TEST(PathErrorTest, PassingConditionsAreRetried) {
  // A read-only file system may be remounted, a full one emptied.
  for (int err : {EROFS, ENOSPC, EDQUOT, EMFILE, EIO}) {
    EXPECT_EQ(PathError("cannot open /a/b", "/a/b", err).code(), Status::Code::kRetryable) << err;
  }
  for (int err : {ENOENT, EACCES, EPERM, ENOTDIR, ELOOP}) {
    EXPECT_EQ(PathError("cannot open /a/b", "/a/b", err).code(), Status::Code::kSlotFatal) << err;
  }
  EXPECT_EQ(PathError("cannot open /a/b", "/a/b", EROFS).message(),
            "cannot open /a/b: Read-only file system");
}

TEST_F(SinkTest, RealNameResolvesTheDirectoryAndKeepsTheName) {
  char* real = realpath(dir_.c_str(), nullptr);
  ASSERT_NE(real, nullptr);
  std::string root = real;
  free(real);
  ASSERT_EQ(mkdir((dir_ + "/real").c_str(), 0700), 0);
  ASSERT_EQ(symlink((dir_ + "/real").c_str(), (dir_ + "/link").c_str()), 0);
  EXPECT_EQ(RealName(dir_ + "/link/x.log"), root + "/real/x.log");
  EXPECT_EQ(RealName(dir_ + "/real/../real/x.log"), root + "/real/x.log");
  // Not there yet (a state directory made at start): through what is.
  EXPECT_EQ(RealName(dir_ + "/link/new/deeper/x.state"), root + "/real/new/deeper/x.state");
  // The last component stays as it is, a link or not.
  ASSERT_EQ(symlink((dir_ + "/real/x.log").c_str(), (dir_ + "/real/y.log").c_str()), 0);
  EXPECT_EQ(RealName(dir_ + "/link/y.log"), root + "/real/y.log");
  std::ofstream(dir_ + "/real/x.log") << "";
  EXPECT_TRUE(IdentifyFile(dir_ + "/link/y.log").Same(IdentifyFile(dir_ + "/real/x.log")));
  EXPECT_FALSE(IdentifyFile(dir_ + "/real/z.log").Same(IdentifyFile(dir_ + "/real/x.log")));
}

TEST_F(SinkTest, PipeWithoutReaderNeverBlocks) {
  std::string path = dir_ + "/fifo";
  PipeSink sink(path, 0620);
  ASSERT_TRUE(sink.Open().ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0620u);
  size_t n = 99;
  Status s = sink.Write("x\n", 2, &n);
  EXPECT_TRUE(s.ok()) << "no reader yet is not an error: " << s.message();
  EXPECT_EQ(n, 0u);
  EXPECT_STREQ(sink.WaitSpec().reason, "waiting for reader");
  EXPECT_EQ(sink.accepted(), 0u);
  Result<bool> takes = sink.Probe();
  ASSERT_TRUE(takes.ok());
  EXPECT_FALSE(takes.value());
}

TEST_F(SinkTest, PipeIsDurableOnlyOnceTheReaderTookIt) {
  std::string path = Fifo();
  PipeSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  int reader = OpenReader(path);
  ASSERT_GE(reader, 0);
  size_t n;
  ASSERT_TRUE(sink.Write("hello\nworld\n", 12, &n).ok());
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.accepted(), 12u);
  EXPECT_EQ(sink.durable(), 0u) << "still in the pipe";
  EXPECT_GT(sink.RecheckAfter().count(), 0);
  char buf[6];
  ASSERT_EQ(read(reader, buf, 6), 6);
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.durable(), 6u);

  // The reader goes away with "world\n" unread: that is not durable, and
  // the next write reports the loss as retryable.
  close(reader);
  Status s_ = sink.Write("more\n", 5, &n);
  EXPECT_EQ(s_.code(), Status::Code::kRetryable);
  EXPECT_NE(s_.message().find("reader of " + path + " went away"), std::string::npos);
  EXPECT_EQ(sink.durable(), 6u);
  ASSERT_TRUE(sink.Discard(6).ok());

  // A new reader gets only what is written after the discard.
  reader = OpenReader(path);
  ASSERT_GE(reader, 0);
  ASSERT_TRUE(sink.Write("again\n", 6, &n).ok());
  EXPECT_EQ(ReadNow(reader), "again\n");
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.durable(), 12u);
  close(reader);
}

TEST_F(SinkTest, PipeReaderThatLeavesWhileIdleIsNoticedBeforeTheNextReader) {
  std::string path = Fifo();
  PipeSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  int reader = OpenReader(path);
  ASSERT_GE(reader, 0);
  size_t n;
  ASSERT_TRUE(sink.Write("hello\nworld\n", 12, &n).ok());
  char buf[6];
  ASSERT_EQ(read(reader, buf, 6), 6);
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.durable(), 6u);

  // The reader leaves with "world\n" unread, and nothing more is written:
  // the next check (the worker's recheck while bytes are unread) notices.
  close(reader);
  Status s = sink.Sync();
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_NE(s.message().find("reader of " + path + " went away"), std::string::npos);
  EXPECT_EQ(sink.durable(), 6u);

  // A new reader that opens before anything more is written must not get
  // the old reader's leftover "world\n".
  reader = OpenReader(path);
  ASSERT_GE(reader, 0);
  EXPECT_EQ(sink.Write("x\n", 2, &n).code(), Status::Code::kRetryable) << "not before Discard";
  ASSERT_TRUE(sink.Discard(6).ok());
  ASSERT_TRUE(sink.Write("world\n", 6, &n).ok());
  EXPECT_EQ(ReadNow(reader), "world\n");
  ASSERT_TRUE(sink.Sync().ok());
  EXPECT_EQ(sink.durable(), 12u);
  close(reader);
}

TEST_F(SinkTest, PipeReaderStillThereIsNotLost) {
  std::string path = Fifo();
  PipeSink sink(path, 0600);
  ASSERT_TRUE(sink.Open().ok());
  int reader = OpenReader(path);
  ASSERT_GE(reader, 0);
  size_t n;
  ASSERT_TRUE(sink.Write("hello\n", 6, &n).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sink.Sync().ok()) << "a slow reader is not gone";
  EXPECT_EQ(sink.durable(), 0u);
  close(reader);
}

TEST_F(SinkTest, PipeRefusesARegularFile) {
  std::string path = dir_ + "/plain";
  std::ofstream(path) << "x";
  PipeSink sink(path, 0600);
  Status s = sink.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find("is not a named pipe"), std::string::npos);
}

// A directory in the test directory with `mode` (umask aside).
std::string MakeDir(const std::string& path, mode_t mode) {
  EXPECT_EQ(mkdir(path.c_str(), 0700), 0);
  EXPECT_EQ(chmod(path.c_str(), mode), 0);
  return path;
}

TEST_F(SinkTest, ALinkInADirectoryEveryUserMayWriteToIsNotFollowed) {
  std::string target = dir_ + "/target.log";
  std::ofstream(target) << "mine\n";
  std::string fifo = dir_ + "/target.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (mode_t mode : {01777, 0777}) {  // sticky or not
    std::string shared = MakeDir(dir_ + "/shared" + std::to_string(mode), mode);
    std::string link = shared + "/out.log";
    ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
    FileSink file(link, 0600);
    Status s = file.Open();
    EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(s.message(), link + " is a symbolic link (to " + target + ") in " + shared +
                               ", a directory every user may write to (mode " + octal +
                               "): anyone could have put it there; pgslotd does not follow it: "
                               "set the sink's path to the file itself, or to a link of your own "
                               "in a directory only you may write to");
    size_t n = 0;
    EXPECT_EQ(file.Write("row\n", 4, &n).code(), Status::Code::kSlotFatal);
    EXPECT_EQ(Read(target), "mine\n");

    std::string pipe_link = shared + "/fifo";
    ASSERT_EQ(symlink(fifo.c_str(), pipe_link.c_str()), 0);
    int reader = OpenReader(fifo);  // a reader there would let a writer open
    ASSERT_GE(reader, 0);
    PipeSink pipe(pipe_link, 0600);
    s = pipe.Open();
    EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
    EXPECT_NE(s.message().find(pipe_link + " is a symbolic link (to " + fifo + ") in " + shared),
              std::string::npos)
        << s.message();
    EXPECT_EQ(pipe.Write("row\n", 4, &n).code(), Status::Code::kSlotFatal);
    EXPECT_EQ(ReadNow(reader), "");
    close(reader);
  }
}

TEST_F(SinkTest, ALinkOfAnotherUserIsNotFollowed) {
  if (geteuid() != 0) GTEST_SKIP() << "giving a link to another user (lchown) needs root";
  std::string target = dir_ + "/target.log";
  std::ofstream(target) << "mine\n";
  std::string link = dir_ + "/out.log";  // in a directory only we may write to
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  ASSERT_EQ(lchown(link.c_str(), 65534, 65534), 0);
  FileSink file(link, 0600);
  Status s = file.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find(link + " is a symbolic link (to " + target + ") owned by user " +
                             UserName(65534) +
                             ", not by root, whom pgslotd runs as; pgslotd "
                             "does not follow it"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(Read(target), "mine\n");
  std::string fifo = dir_ + "/target.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string pipe_link = dir_ + "/fifo";
  ASSERT_EQ(symlink(fifo.c_str(), pipe_link.c_str()), 0);
  ASSERT_EQ(lchown(pipe_link.c_str(), 65534, 65534), 0);
  PipeSink pipe(pipe_link, 0600);
  s = pipe.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find("owned by user " + UserName(65534)), std::string::npos) << s.message();
}

TEST_F(SinkTest, ALinkTheOperatorMadeKeepsWorking) {
  // Ours (root's, when the tests run as root), in a directory only we may
  // write to; a group-writable one is the operator's own grant.
  std::string real = MakeDir(dir_ + "/real", 0755);
  std::string links = MakeDir(dir_ + "/links", 0775);
  std::string target = real + "/out.log";
  std::string link = links + "/out.log";
  std::ofstream(target) << "";  // a link leads to a file, which pgslotd never creates
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  FileSink file(link, 0640);
  ASSERT_TRUE(file.Open().ok());
  size_t n = 0;
  ASSERT_TRUE(file.Write("row\n", 4, &n).ok());
  ASSERT_TRUE(file.Sync().ok());
  EXPECT_EQ(Read(target), "row\n");
  struct stat st;
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));  // still a link, to the same file

  std::string fifo = real + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string pipe_link = links + "/fifo";
  ASSERT_EQ(symlink(fifo.c_str(), pipe_link.c_str()), 0);
  int reader = OpenReader(fifo);
  ASSERT_GE(reader, 0);
  PipeSink pipe(pipe_link, 0600);
  ASSERT_TRUE(pipe.Open().ok());
  ASSERT_TRUE(pipe.Write("row\n", 4, &n).ok());
  EXPECT_EQ(ReadNow(reader), "row\n");
  close(reader);
}

TEST_F(SinkTest, ANewFifoGetsItsModeAndALinkToNothingIsNamed) {
  std::string path = dir_ + "/fifo";
  mode_t old = umask(077);
  PipeSink sink(path, 0660);
  Status s = sink.Open();
  umask(old);
  ASSERT_TRUE(s.ok()) << s.message();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  std::string dangling = dir_ + "/dangling";
  ASSERT_EQ(symlink((dir_ + "/nowhere").c_str(), dangling.c_str()), 0);
  PipeSink nowhere(dangling, 0600);
  s = nowhere.Open();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_EQ(s.message(), dangling +
                             " is a symbolic link to nothing (correct the path, or create "
                             "the FIFO it points to)");
}

TEST_F(SinkTest, StdoutPipeIsNonBlockingAndSurvivesNothingAfterClose) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  StdoutSink sink(p[1]);
  ASSERT_TRUE(sink.Open().ok());
  std::string big(1 << 20, 'x');
  size_t n = 0;
  Status s = sink.Write(big.data(), big.size(), &n);
  EXPECT_TRUE(s.ok()) << "a full pipe is not an error: " << s.message();
  EXPECT_GT(n, 0u);
  EXPECT_LT(n, big.size()) << "a full pipe must not block the worker";
  EXPECT_EQ(sink.durable(), n);
  Result<bool> takes = sink.Probe();
  ASSERT_TRUE(takes.ok());
  EXPECT_FALSE(takes.value()) << "the pipe is full";
  close(p[0]);
  s = sink.Write("y", 1, &n);
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find("stdout was closed"), std::string::npos);
  ASSERT_TRUE(sink.Close().ok());
  close(p[1]);
}

// MakeSink's table: each kind a config names is made by its own line, and
// only the kind that keeps a state record is exactly-once.
TEST_F(SinkTest, MakeSinkMakesTheKindTheConfigNames) {
  const std::string config_path = dir_ + "/pgslotd.yaml";
  std::ofstream(config_path) << "slots:\n"
                             << "  - {name: a, plugin: p, sink: {type: stdout}}\n"
                             << "  - {name: b, plugin: p, sink: {type: file, path: " << dir_
                             << "/b.log}}\n"
                             << "  - {name: c, plugin: p, sink: {type: pipe, path: " << dir_
                             << "/c.fifo}}\n";
  Config config;
  std::vector<ConfigError> errors;
  ASSERT_TRUE(LoadConfig(config_path, &config, &errors)) << errors[0].ToString();
  ASSERT_EQ(config.slots.size(), 3u);
  const std::string described[] = {"stdout", "file " + dir_ + "/b.log", "pipe " + dir_ + "/c.fifo"};
  for (size_t i = 0; i < 3; ++i) {
    std::unique_ptr<Sink> sink = MakeSink(config.slots[i]);
    ASSERT_NE(sink, nullptr);
    EXPECT_EQ(sink->Describe(), described[i]);
    EXPECT_EQ(sink->exactly_once() != nullptr, config.slots[i].sink.type == SinkType::kFile);
  }
}

// The Kafka position record's value: without a snapshot as before, with one
// its progress as a JSON string that reads back byte for byte.
TEST(KafkaPositionTest, TheValueCarriesTheSnapshotProgressAndReadsItBack) {
  const std::string plain = PositionValue("7300", "orders", 0x16B3748, "pgslotd-7300-orders");
  EXPECT_EQ(plain,
            "{\"system_id\":\"7300\",\"slot\":\"orders\",\"lsn\":\"0/16B3748\","
            "\"transactional_id\":\"pgslotd-7300-orders\"}");
  CommittedPosition p = ParsePosition(plain);
  EXPECT_EQ(p.lsn, Lsn{0x16B3748});
  EXPECT_EQ(p.snapshot, "");

  // A key with a quote, a backslash, a control character and UTF-8.
  const std::string progress =
      "queue 1 t public orders started 1 rows 5 after 1 a\"b\\\\c\x01\xc3\xa9 ranges 0 again 0 "
      "done 0 total 5";
  const std::string value = PositionValue("7300", "orders", 0x16B3748, "a\"b", progress);
  EXPECT_EQ(value,
            "{\"system_id\":\"7300\",\"slot\":\"orders\",\"lsn\":\"0/16B3748\","
            "\"transactional_id\":\"a\\\"b\",\"snapshot\":\"queue 1 t public orders started 1 "
            "rows 5 after 1 a\\\"b\\\\\\\\c\\u0001\xc3\xa9 ranges 0 again 0 done 0 total 5\"}");
  p = ParsePosition(value);
  EXPECT_EQ(p.lsn, Lsn{0x16B3748});
  EXPECT_EQ(p.snapshot, progress);

  // JSON's other escapes read as well; a malformed string names no
  // position, and says it is malformed (ReadCommittedPosition refuses it).
  EXPECT_EQ(ParsePosition("{\"lsn\":\"0/1\",\"snapshot\":\"a\\tb\\u0041\\/\"}").snapshot, "a\tbA/");
  for (const char* bad :
       {"{\"lsn\":\"0/1\",\"snapshot\":\"a\\qb\"}", "{\"lsn\":\"0/1\",\"snapshot\":\"unterminated",
        "{\"lsn\":\"0/1\",\"snapshot\":\"\\u00e9\"}"}) {
    p = ParsePosition(bad);
    EXPECT_EQ(p.lsn, kInvalidLsn) << bad;
    EXPECT_TRUE(p.malformed) << bad;
  }
  EXPECT_FALSE(ParsePosition(plain).malformed);
}

}  // namespace
}  // namespace pgslotd
