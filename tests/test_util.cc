#include "test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "config/config.h"

extern char** environ;

namespace pgslotd::test {

namespace {

[[noreturn]] void ThrowErrno(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Gives up ownership without closing.
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

int OpenOrThrow(const std::string& path, int flags, mode_t mode = 0) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) ThrowErrno("open(" + path + ")", errno);
  return fd;
}

// The path execve should run for argv[0]: itself if it contains a '/',
// otherwise the first executable of that name in PATH.
std::string ResolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env_path = std::getenv("PATH");
  std::string path = env_path != nullptr ? env_path : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    begin = end + 1;
  }
  throw std::runtime_error("cannot start \"" + name + "\": not found in PATH (" + path + ")");
}

std::vector<std::string> BuildEnv(const Subprocess::Options& options) {
  std::map<std::string, std::string> vars;
  if (options.inherit_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string entry(*e);
      size_t eq = entry.find('=');
      if (eq == std::string::npos) continue;
      vars[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
  }
  for (const auto& [name, value] : options.env) vars[name] = value;
  std::vector<std::string> env;
  env.reserve(vars.size());
  for (const auto& [name, value] : vars) env.push_back(name + "=" + value);
  return env;
}

// The paths of the TempDirs alive in this process.
std::mutex live_dirs_mu;
std::set<std::string>& LiveTempDirs() {
  static std::set<std::string>* const dirs = new std::set<std::string>;
  return *dirs;
}

bool InsideLiveTempDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(live_dirs_mu);
  for (const std::string& dir : LiveTempDirs()) {
    if (path == dir || path.rfind(dir + "/", 0) == 0) return true;
  }
  return false;
}

// The value of --config (-c) in a pgslotd command line, or "".
std::string ConfigArgument(const std::vector<std::string>& argv) {
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argv.size()) return argv[i + 1];
    if (a.rfind("--config=", 0) == 0) return a.substr(9);
    if (a.size() > 2 && a.rfind("-c", 0) == 0 && a[2] != '-') return a.substr(2);
  }
  return "";
}

// Throws unless pgslotd, started on `argv`, keeps its state inside a
// temporary directory of the test. A config that pgslotd will refuse
// (LoadConfig fails, or there is no such file) starts nothing and is let
// through; a valid one must name state_directory itself (no default, no
// $STATE_DIRECTORY) and that directory must lie inside a live TempDir.
// Otherwise the daemon would leave its *.state files (and, where the
// default is derived from the config's name, a lock file) in
// /var/lib/pgslotd, outside anything a test cleans up.
void CheckStateDirectory(const std::vector<std::string>& argv) {
  const std::string config = ConfigArgument(argv);
  struct stat st;
  if (config.empty() || stat(config.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  Config loaded;
  std::vector<ConfigError> errors;
  if (!LoadConfig(config, &loaded, &errors)) return;
  // The state directory (records, the lock) and the runtime directory (the
  // control socket) both default to system directories.
  for (const auto& [key, dir] :
       {std::make_pair(std::string("state_directory"), loaded.state_directory),
        std::make_pair(std::string("runtime_directory"), loaded.runtime_directory)}) {
    bool named = false;
    for (const std::string& line : SplitLines(ReadFile(config))) {
      named = named || line.rfind(key + ":", 0) == 0;
    }
    if (named && InsideLiveTempDir(dir)) continue;
    throw std::runtime_error(
        "refusing to start pgslotd on " + config + ": " +
        (named ? "its " + key + " " + dir + " is not inside a temporary directory of this test"
               : "it names no " + key + " (pgslotd would use " + dir + ")") +
        "; every config a test hands to pgslotd must name its own, as DaemonTest::Header() "
        "does, or pgslotd leaves files behind outside the test");
  }
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

TempDir::TempDir(const std::string& prefix) {
  std::string templ = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) ThrowErrno("mkdtemp(" + templ + ")", errno);
  path_ = templ;
  if (chmod(path_.c_str(), 0755) != 0) {
    int err = errno;
    rmdir(path_.c_str());
    ThrowErrno("chmod(" + path_ + ")", err);
  }
  std::lock_guard<std::mutex> lock(live_dirs_mu);
  LiveTempDirs().insert(path_);
}

TempDir::~TempDir() {
  {
    std::lock_guard<std::mutex> lock(live_dirs_mu);
    LiveTempDirs().erase(path_);
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec)
    std::fprintf(stderr, "warning: cannot remove %s: %s\n", path_.c_str(), ec.message().c_str());
}

std::string ReadFile(const std::string& path) {
  Fd fd(OpenOrThrow(path, O_RDONLY));
  std::string content;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("read(" + path + ")", errno);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  return content;
}

void WriteFile(const std::string& path, const std::string& content) {
  Fd fd(OpenOrThrow(path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("write(" + path + ")", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd.Release()) != 0) ThrowErrno("close(" + path + ")", errno);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::vector<std::string> SplitLines(const std::string& content) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < content.size()) {
    size_t end = content.find('\n', begin);
    if (end == std::string::npos) {
      lines.push_back(content.substr(begin));
      break;
    }
    lines.push_back(content.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(step, deadline - now));
  }
}

std::string PgslotdBinary() {
#ifdef PGSLOTD_BINARY
  return PGSLOTD_BINARY;
#else
  return "pgslotd";
#endif
}

Subprocess::Subprocess() = default;

Subprocess::~Subprocess() {
  CloseStdin();
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void Subprocess::Start(const std::vector<std::string>& argv, const Options& options) {
  if (pid_ != 0) throw std::runtime_error("Subprocess::Start called twice");
  if (argv.empty()) throw std::runtime_error("Subprocess::Start: empty argv");

  // Everything the child needs is prepared here: between fork and execve
  // only async-signal-safe calls are allowed.
  std::string program = ResolveProgram(argv[0]);
  if (program == ResolveProgram(PgslotdBinary())) CheckStateDirectory(argv);
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<std::string> env = BuildEnv(options);
  std::vector<char*> c_env = CStrings(env);

  if (options.stdout_path.empty() || options.stderr_path.empty()) {
    capture_dir_ = std::make_unique<TempDir>("pgslotd-proc");
  }
  stdout_path_ = options.stdout_path.empty() ? capture_dir_->File("stdout") : options.stdout_path;
  stderr_path_ = options.stderr_path.empty() ? capture_dir_->File("stderr") : options.stderr_path;
  const int out_flags = O_WRONLY | O_CREAT | O_TRUNC;
  // With stdin_stream, ends[0] stays ours and ends[1] becomes the child's
  // stdin.
  int ends[2] = {-1, -1};
  if (options.stdin_stream && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
    ThrowErrno("socketpair", errno);
  }
  Fd stdin_ours(ends[0]);
  Fd in_fd(options.stdin_stream ? ends[1] : OpenOrThrow("/dev/null", O_RDONLY));
  Fd out_fd(OpenOrThrow(stdout_path_, out_flags, 0644));
  Fd err_fd(stdout_path_ == stderr_path_ ? dup(out_fd.get())
                                         : OpenOrThrow(stderr_path_, out_flags, 0644));
  if (err_fd.get() < 0) ThrowErrno("dup", errno);

  // The child reports a failed execve through this pipe; a successful one
  // closes it (O_CLOEXEC) without writing.
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) ThrowErrno("pipe2", errno);
  Fd report_read(report[0]);
  Fd report_write(report[1]);

  const pid_t parent = getpid();
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  pid_t pid = fork();
  if (pid < 0) ThrowErrno("fork", errno);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent is already gone
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    int err = 0;
    if (dup2(in_fd.get(), 0) < 0 || dup2(out_fd.get(), 1) < 0 || dup2(err_fd.get(), 2) < 0 ||
        (cwd != nullptr && chdir(cwd) != 0)) {
      err = errno;
    } else {
      // Descriptors this process opened without O_CLOEXEC must not leak into
      // the child (a leaked pipe end can keep another process waiting).
      const unsigned keep = static_cast<unsigned>(report_write.get());
      close_range(3, keep - 1, 0);
      close_range(keep + 1, ~0U, 0);
      execve(program.c_str(), c_args.data(), c_env.data());
      err = errno;
    }
    ssize_t ignored = write(report_write.get(), &err, sizeof(err));
    static_cast<void>(ignored);
    _exit(127);
  }
  pid_ = pid;
  report_write.Reset();
  in_fd.Reset();  // the child's end: only the child may hold it open
  stdin_fd_ = stdin_ours.Release();
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(report_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    Wait(std::chrono::milliseconds(5000));
    ThrowErrno("cannot start " + program, child_errno);
  }
}

bool Subprocess::Poll() {
  if (pid_ <= 0) return false;
  if (reaped_) return true;
  int status;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = DecodeWaitStatus(status);
    return true;
  }
  if (r < 0) ThrowErrno("waitpid(" + std::to_string(pid_) + ")", errno);
  return false;
}

bool Subprocess::Signal(int sig) {
  if (pid_ <= 0 || reaped_) return false;
  return kill(pid_, sig) == 0;
}

int Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) throw std::runtime_error("Subprocess::Wait before Start");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto step = std::chrono::milliseconds(1);
  for (;;) {
    if (Poll()) return exit_code_;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return -1;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(step, deadline - now));
    step = std::min(step * 2, std::chrono::milliseconds(20));
  }
}

bool Subprocess::Running() { return pid_ > 0 && !Poll(); }

void Subprocess::WriteStdin(const std::string& data) {
  if (stdin_fd_ < 0) throw std::runtime_error("Subprocess::WriteStdin: no stdin stream");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(stdin_fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowErrno("writing to the stdin of process " + std::to_string(pid_), errno);
    }
    done += static_cast<size_t>(n);
  }
}

void Subprocess::CloseStdin() {
  if (stdin_fd_ < 0) return;
  close(stdin_fd_);
  stdin_fd_ = -1;
}

std::string Subprocess::Stdout() const {
  if (stdout_path_.empty()) throw std::runtime_error("Subprocess::Stdout before Start");
  return ReadFile(stdout_path_);
}

std::string Subprocess::Stderr() const {
  if (stderr_path_.empty()) throw std::runtime_error("Subprocess::Stderr before Start");
  return ReadFile(stderr_path_);
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

::testing::AssertionResult SameBytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  size_t line = 1;
  for (size_t i = 0; i < at; ++i) line += want[i] == '\n' ? 1 : 0;
  size_t from = at > 200 ? at - 200 : 0;
  auto excerpt = [&](const std::string& s) {
    return "\"" + s.substr(from, std::min<size_t>(400, s.size() > from ? s.size() - from : 0)) +
           "\"";
  };
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size()
         << " bytes; first difference at byte " << at << " (line " << line
         << ")\n  got:  " << excerpt(got) << "\n  want: " << excerpt(want);
}

std::vector<std::string> LinesWithAll(const std::string& text,
                                      const std::vector<std::string>& words) {
  std::vector<std::string> found;
  for (const std::string& line : SplitLines(text)) {
    bool all = true;
    for (const std::string& w : words) all = all && line.find(w) != std::string::npos;
    if (all) found.push_back(line);
  }
  return found;
}

std::string JsonText(const std::string& line, const std::string& name) {
  std::string head = "\"" + name + "\":\"";
  size_t at = line.find(head);
  if (at == std::string::npos) return "";
  at += head.size();
  return line.substr(at, line.find('"', at) - at);
}

}  // namespace pgslotd::test
