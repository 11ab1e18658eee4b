// Small helpers for tests that run real programs (the pgslotd binary,
// pg_recvlogical, a shell) as child processes and look at the files they
// leave behind.
//
// Errors are reported by throwing std::runtime_error with a message that says
// what failed and why; GoogleTest turns an exception escaping a test body into
// a test failure that shows the message. None of these helpers is thread-safe:
// call them from the test's own thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pgslotd::test {

// A fresh directory under /tmp (mode 0755, so that a server or daemon running
// as another user can look into it), removed with everything in it when the
// TempDir is destroyed. While it lives it is a place pgslotd may keep its
// state in (see Subprocess::Start).
class TempDir {
 public:
  // `prefix` becomes the start of the directory name: /tmp/<prefix>-XXXXXX.
  explicit TempDir(const std::string& prefix = "pgslotd-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The whole content of `path`. Throws if it cannot be read (including when it
// does not exist; use FileExists first when that is expected).
std::string ReadFile(const std::string& path);

// Replaces the content of `path` with `content`, creating it (mode 0644) if
// needed. Throws on failure.
void WriteFile(const std::string& path, const std::string& content);

// Whether `path` names an existing file or directory.
bool FileExists(const std::string& path);

// The lines of `content`, without their '\n'. A final line without '\n' is
// kept; the empty string after a final '\n' is not: "a\nb\n" -> {"a", "b"},
// "a\n\nb" -> {"a", "", "b"}, "" -> {}.
std::vector<std::string> SplitLines(const std::string& content);

// The string field `name` of a JSON line ("lsn":"0/16B3748" -> 0/16B3748);
// "" when it has none.
std::string JsonText(const std::string& line, const std::string& name);

// Calls `pred` every `step` until it returns true (returns true) or until
// `timeout` has passed (returns false). `pred` is always called at least once,
// and once more at the deadline.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step = std::chrono::milliseconds(50));

// The absolute path of the daemon under test: the PGSLOTD_BINARY compile
// definition (a string literal), or "pgslotd" (looked up in PATH) without it.
std::string PgslotdBinary();

// One child process, started with fork/execve. stdin is /dev/null (or, on
// request, a stream this process writes to); stdout and stderr go to files
// (never pipes, so a chatty child cannot block on a full pipe), which
// Stdout()/Stderr() read back at any time.
//
// The child is killed (SIGKILL) and reaped by the destructor if it is still
// running, so a failing test never leaks a process. It is also sent SIGKILL
// by the kernel if the thread that started it dies (PR_SET_PDEATHSIG), which
// covers a test binary that crashes; start children from the test's main
// thread, not from a short-lived helper thread.
class Subprocess {
 public:
  struct Options {
    // Where stdout/stderr go. Empty: a file in a private temp dir.
    std::string stdout_path;
    std::string stderr_path;
    // Set in the child's environment, replacing inherited values of the same
    // name.
    std::vector<std::pair<std::string, std::string>> env;
    // Start from this process's environment (true) or from an empty one.
    bool inherit_env = true;
    // Working directory of the child; empty means this process's.
    std::string cwd;
    // When true, the child's stdin is one end of a stream that this process
    // writes with WriteStdin() and closes with CloseStdin() (the child then
    // reads end of file). It is a Unix socket rather than a pipe, so that
    // writing to a child that has gone fails with EPIPE instead of raising
    // SIGPIPE in the test.
    bool stdin_stream = false;
  };

  Subprocess();
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Starts argv[0] (a path, or a name looked up in PATH) with arguments
  // argv. Throws if the program cannot be started (the exec error of the
  // child is reported, e.g. "No such file or directory"). May be called only
  // once per Subprocess.
  //
  // When argv[0] is PgslotdBinary() with a valid --config file, that file
  // must name a state_directory inside a live TempDir of this process;
  // otherwise Start throws and starts nothing, so that no test leaves state
  // files in pgslotd's default directory (/var/lib/pgslotd).
  void Start(const std::vector<std::string>& argv, const Options& options);
  void Start(const std::vector<std::string>& argv) { Start(argv, Options()); }

  // The child's process id; 0 before Start.
  pid_t pid() const { return pid_; }

  // Sends `sig` to the child. Returns false if it has already been reaped
  // (or was never started) or kill() failed.
  bool Signal(int sig);

  // Waits up to `timeout` for the child to end and returns its exit code, or
  // 128 + N if signal N ended it. Returns -1 on timeout; the child is left
  // running. Once the child has ended, every call returns the same value.
  int Wait(std::chrono::milliseconds timeout);

  // Whether the child has been started and has not ended yet (reaping it if
  // it has just ended).
  bool Running();

  // With Options::stdin_stream: writes all of `data` to the child's stdin,
  // blocking while the stream is full. Throws if the child has closed its
  // stdin or gone, or after CloseStdin().
  void WriteStdin(const std::string& data);
  // Closes this process's end of the child's stdin, so that the child reads
  // end of file. Does nothing if it is closed already or there is none.
  void CloseStdin();

  // What the child has written to stdout/stderr so far.
  std::string Stdout() const;
  std::string Stderr() const;

  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }

 private:
  // Reaps the child without blocking; returns true if it has ended.
  bool Poll();

  pid_t pid_ = 0;
  bool reaped_ = false;
  int stdin_fd_ = -1;  // our end of the child's stdin (Options::stdin_stream)
  int exit_code_ = -1;
  std::unique_ptr<TempDir> capture_dir_;  // only when something is captured
  std::string stdout_path_;
  std::string stderr_path_;
};

// argv/envp for execve: pointers into `strings` (which must outlive them),
// ending with nullptr.
std::vector<char*> CStrings(std::vector<std::string>& strings);

// Whether two outputs are the same bytes. On a mismatch it says where they
// first differ, with the lines around it, and how big each is; use it
// instead of EXPECT_EQ for sink contents: GoogleTest's diff of two large
// multi-line strings needs memory quadratic in their line counts.
::testing::AssertionResult SameBytes(const std::string& got, const std::string& want);

// The lines of `text` (a daemon's log) that hold every one of `words`.
std::vector<std::string> LinesWithAll(const std::string& text,
                                      const std::vector<std::string>& words);

}  // namespace pgslotd::test
