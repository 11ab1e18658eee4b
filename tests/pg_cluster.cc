#include "pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "test_util.h"

extern char** environ;

namespace pgslotd::test {

namespace {

constexpr char kBinDir[] = "/usr/lib/postgresql/15/bin";

[[noreturn]] void ThrowErrno(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

std::string TrimTrailingNewlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

// A conninfo value, quoted when libpq would otherwise misread it.
std::string ConninfoValue(const std::string& value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\'' || c == '\\' || c == '=') plain = false;
  }
  if (plain) return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// A port on 127.0.0.1 that nothing listened on a moment ago.
int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno("cannot pick a free port", err);
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Waits for `pid` for up to `timeout`; returns whether it was reaped.
bool ReapWithTimeout(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// In a child between fork and execve: undo signal settings inherited from
// the test process. Async-signal-safe.
void ResetSignalsInChild() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
}

// In a child between fork and execve: reports `what` on fd 1 and exits.
[[noreturn]] void ChildFail(const char* what) {
  ssize_t ignored = write(1, what, std::strlen(what));
  static_cast<void>(ignored);
  _exit(126);
}

// --- libpq ---

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;

struct ResultClearer {
  void operator()(PGresult* res) const { PQclear(res); }
};
using Result = std::unique_ptr<PGresult, ResultClearer>;

void IgnoreNotice(void* /*arg*/, const char* /*message*/) {}

Conn Connect(const std::string& conninfo) {
  Conn conn(PQconnectdb(conninfo.c_str()));
  if (!conn) throw std::runtime_error("PQconnectdb: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("cannot connect with \"" + conninfo +
                             "\": " + TrimTrailingNewlines(PQerrorMessage(conn.get())));
  }
  // WARNINGs (e.g. from pg_terminate_backend) would only clutter test output.
  PQsetNoticeProcessor(conn.get(), IgnoreNotice, nullptr);
  return conn;
}

Result Execute(PGconn* conn, const std::string& sql, const std::string& db) {
  Result res(PQexec(conn, sql.c_str()));
  std::string error;
  if (!res) {
    error = PQerrorMessage(conn);
  } else {
    ExecStatusType status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
      error = PQresultErrorMessage(res.get());
      if (error.empty()) error = PQresStatus(status);
    }
  }
  if (!error.empty() || !res) {
    throw std::runtime_error("SQL failed in database \"" + db +
                             "\": " + TrimTrailingNewlines(error) + "\nstatement: " + sql);
  }
  return res;
}

std::vector<std::vector<std::string>> ResultRows(const PGresult* res) {
  std::vector<std::vector<std::string>> rows;
  const int nrows = PQntuples(res);
  const int ncols = PQnfields(res);
  rows.reserve(static_cast<size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    std::vector<std::string> row;
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      row.emplace_back(PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string Literal(PGconn* conn, const std::string& value) {
  char* quoted = PQescapeLiteral(conn, value.data(), value.size());
  if (quoted == nullptr) {
    throw std::runtime_error("PQescapeLiteral: " + TrimTrailingNewlines(PQerrorMessage(conn)));
  }
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}

std::string Identifier(PGconn* conn, const std::string& value) {
  char* quoted = PQescapeIdentifier(conn, value.data(), value.size());
  if (quoted == nullptr) {
    throw std::runtime_error("PQescapeIdentifier: " + TrimTrailingNewlines(PQerrorMessage(conn)));
  }
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}

// --- the shared cluster ---

struct SharedCluster {
  std::unique_ptr<PgCluster> cluster;
  std::string start_error;
};

SharedCluster& SharedSlot() {
  // Never destroyed: the atexit hook below decides when the cluster goes.
  static SharedCluster* const slot = new SharedCluster;
  return *slot;
}

void StopSharedClusterAtExit() { SharedSlot().cluster.reset(); }

}  // namespace

PgCluster* PgCluster::Shared() {
  SharedCluster& slot = SharedSlot();
  if (slot.cluster) {
    // A test that stopped the server and failed before starting it again
    // must not break the tests after it.
    if (!slot.cluster->running()) slot.cluster->Start();
    return slot.cluster.get();
  }
  if (!slot.start_error.empty()) throw std::runtime_error(slot.start_error);
  try {
    slot.cluster = StartNew();
  } catch (const std::exception& e) {
    slot.start_error = std::string("the shared test cluster failed to start: ") + e.what();
    throw std::runtime_error(slot.start_error);
  }
  std::atexit(StopSharedClusterAtExit);
  return slot.cluster.get();
}

std::unique_ptr<PgCluster> PgCluster::StartNew() {
  std::unique_ptr<PgCluster> cluster(new PgCluster());
  cluster->Init();  // if this throws, ~PgCluster removes what was made
  return cluster;
}

PgCluster::~PgCluster() {
  try {
    Shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: test cluster clean-up failed: %s\n", e.what());
  }
}

void PgCluster::Init() {
  owner_pid_ = getpid();
  run_as_postgres_ = geteuid() == 0;
  if (run_as_postgres_) {
    // initdb and pg_ctl refuse to run as root.
    passwd pw;
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    int rc = getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found);
    if (found == nullptr) {
      throw std::runtime_error(
          "running as root, but there is no `postgres` OS user to run the server as" +
          std::string(rc != 0 ? std::string(": ") + std::strerror(rc) : ""));
    }
    postgres_uid_ = pw.pw_uid;
    postgres_gid_ = pw.pw_gid;
    int ngroups = 32;
    for (;;) {
      postgres_groups_.resize(static_cast<size_t>(ngroups));
      int n = ngroups;
      if (getgrouplist(pw.pw_name, pw.pw_gid, postgres_groups_.data(), &n) >= 0) {
        postgres_groups_.resize(static_cast<size_t>(n));
        break;
      }
      ngroups = n > ngroups ? n : ngroups * 2;
    }
  }

  std::string templ = "/tmp/pgslotd-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) ThrowErrno("mkdtemp(" + templ + ")", errno);
  dir_ = templ;
  if (chmod(dir_.c_str(), 0755) != 0) ThrowErrno("chmod(" + dir_ + ")", errno);
  if (run_as_postgres_ && chown(dir_.c_str(), postgres_uid_, postgres_gid_) != 0) {
    ThrowErrno("chown(" + dir_ + ")", errno);
  }
  StartWatchdog();
  // pg_ctl leaves the postmaster behind as an orphan. As a subreaper this
  // process inherits it, and can reap it right after stopping it; otherwise
  // its zombie would linger until init gets round to it.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) ThrowErrno("prctl(PR_SET_CHILD_SUBREAPER)", errno);

  RunPgProgramOrThrow("initdb", {"-D", data_dir(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                 "--locale=C", "--no-sync", "--no-instructions"});
  AppendConfig(
      "\n# pgslotd test harness\n"
      "listen_addresses = '127.0.0.1'\n"
      "unix_socket_directories = '" +
      dir_ +
      "'\n"
      "wal_level = logical\n"
      "max_replication_slots = 100\n"
      "max_wal_senders = 40\n"
      "fsync = on\n"
      "synchronous_commit = on\n"
      "shared_buffers = 64MB\n"
      "log_min_messages = warning\n"
      "logging_collector = off\n"
      "wal_sender_timeout = 60s\n"
      "max_slot_wal_keep_size = -1\n");
  AllowWal2json();

  // The port was free when picked but may be taken before the server binds
  // it; try a few.
  const std::vector<std::string> start_args = {"-D", data_dir(), "-l", log_path(),
                                               "-w", "-t",       "60", "start"};
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    port_ = PickFreePort();
    AppendConfig("port = " + std::to_string(port_) + "\n");
    unlink(log_path().c_str());
    std::string output;
    if (RunPgProgram("pg_ctl", start_args, &output) == 0) break;
    std::string log = ServerLogTail();
    if (attempt < kAttempts && log.find("could not bind") != std::string::npos) continue;
    throw std::runtime_error("pg_ctl start failed:\n" + output + "\n--- tail of " + log_path() +
                             " ---\n" + log);
  }
  running_ = true;
  StartBackgroundXacts();
}

void PgCluster::StartBackgroundXacts() {
  const char* env = std::getenv("PGSLOTD_TEST_BACKGROUND_XACTS");
  if (env == nullptr || std::string(env) != "1") return;
  // Errors (the server stopped or restarting, a database just dropped) are
  // ignored: the loop goes on.
  const std::string script =
      "psql=$1; shift\n"
      "while :; do\n"
      "  q='SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate'\n"
      "  for db in $(\"$psql\" \"$@\" -d postgres -Atc \"$q\" 2>/dev/null); do\n"
      "    \"$psql\" \"$@\" -d \"$db\" -qc 'ANALYZE pg_catalog.pg_am' >/dev/null 2>&1\n"
      "  done\n"
      "  sleep 0.02\n"
      "done\n";
  Subprocess::Options options;
  options.stdout_path = "/dev/null";
  options.stderr_path = "/dev/null";
  background_xacts_ = std::make_unique<Subprocess>();
  background_xacts_->Start(
      {"/bin/sh", "-c", script, "pgslotd-test-background-xacts", std::string(kBinDir) + "/psql",
       "-X", "-h", dir_, "-p", std::to_string(port_), "-U", "postgres"},
      options);
}

bool PgCluster::DescribeSetting(const std::string& name, std::string* boot_value) const {
  std::string described;
  if (RunPgProgram("postgres", {"--describe-config"}, &described) != 0) return false;
  const std::string prefix = name + "\t";
  size_t at = 0;
  while (described.compare(at, prefix.size(), prefix) != 0) {
    at = described.find('\n', at);
    if (at == std::string::npos) return false;
    ++at;
  }
  std::string line = described.substr(at, described.find('\n', at) - at);
  // name, context, group, type, boot value, ...
  std::vector<std::string> fields;
  for (size_t begin = 0;;) {
    size_t tab = line.find('\t', begin);
    fields.push_back(line.substr(begin, tab == std::string::npos ? tab : tab - begin));
    if (tab == std::string::npos) break;
    begin = tab + 1;
  }
  *boot_value = fields.size() > 4 ? fields[4] : "";
  return true;
}

bool PgCluster::HasOutputPluginAllowlist() const {
  std::string ignored;
  return DescribeSetting("output_plugin_libraries", &ignored);
}

void PgCluster::AllowWal2json() {
  // Some PostgreSQL builds (Debian's 15.19 and later among them) only let
  // users pick output plugins listed in output_plugin_libraries (default
  // "pgoutput, test_decoding"). Other builds have no such setting and would
  // refuse to start if we set it, so look for it first.
  std::string value;
  if (!DescribeSetting("output_plugin_libraries", &value)) return;
  if (value.find("wal2json") != std::string::npos) return;
  value += value.empty() ? "wal2json" : ", wal2json";
  AppendConfig("output_plugin_libraries = '" + value + "'\n");
}

pid_t PgCluster::PostmasterPid() const {
  std::string path = data_dir() + "/postmaster.pid";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 0 ? std::atoi(buf) : 0;
}

void PgCluster::StartWatchdog() {
  // /bin/sh waits for EOF on its stdin, which happens when every copy of the
  // write end is closed: by Shutdown(), or by the kernel when this process
  // dies in any way. After a normal Shutdown() the directory is gone and
  // there is nothing to do. Otherwise it ends every process whose working
  // directory is inside the cluster directory -- the postmaster and its
  // backends (cwd <dir>/data), and an initdb or pg_ctl that was running (cwd
  // <dir>, see RunPgProgram) and might still start a postmaster -- until none
  // is left, then removes the directory. Postgres processes get SIGQUIT
  // (immediate shutdown) first, anything else SIGKILL; after 1 s everything
  // gets SIGKILL.
  const std::string script =
      "while read -r _; do :; done\n"
      "d='" +
      dir_ +
      "'\n"
      "[ -d \"$d\" ] || exit 0\n"
      "i=0\n"
      "while [ $i -lt 300 ]; do\n"
      "  pids=$(find /proc -mindepth 2 -maxdepth 2 -name cwd \\( -lname \"$d\" -o \\\n"
      "      -lname \"$d/*\" -o -lname \"$d *\" \\) -printf '%h\\n' 2>/dev/null)\n"
      "  [ -n \"$pids\" ] || break\n"
      "  for p in $pids; do\n"
      "    c=\n"
      "    read -r c < \"$p/comm\" 2>/dev/null\n"
      "    if [ \"$c\" = postgres ] && [ $i -lt 10 ]; then sig=QUIT; else sig=KILL; fi\n"
      "    kill -s $sig \"${p#/proc/}\" 2>/dev/null\n"
      "  done\n"
      "  sleep 0.1\n"
      "  i=$((i+1))\n"
      "done\n"
      "rm -rf \"$d\"\n";
  std::vector<std::string> args = {"sh", "-c", script, "pgslotd-test-watchdog"};
  std::vector<char*> argv = CStrings(args);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) ThrowErrno("pipe2", errno);
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_fd < 0) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    ThrowErrno("open(/dev/null)", err);
  }
  pid_t pid = fork();
  if (pid == 0) {
    // Its own session: a Ctrl-C meant for the test binary must not kill the
    // watchdog before it has cleaned up.
    setsid();
    ResetSignalsInChild();
    if (chdir("/") != 0) _exit(126);
    if (dup2(fds[0], 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0) _exit(126);
    close_range(3, ~0U, 0);
    execve("/bin/sh", argv.data(), environ);
    _exit(127);
  }
  int fork_errno = errno;
  close(fds[0]);
  close(null_fd);
  if (pid < 0) {
    close(fds[1]);
    ThrowErrno("fork", fork_errno);
  }
  watchdog_pid_ = pid;
  watchdog_fd_ = fds[1];
}

int PgCluster::RunPgProgram(const std::string& program, const std::vector<std::string>& args,
                            std::string* output) const {
  // Everything the child needs is prepared before fork: in between fork and
  // execve only async-signal-safe calls are allowed.
  std::string path = std::string(kBinDir) + "/" + program;
  std::vector<std::string> arg_strings = {path};
  arg_strings.insert(arg_strings.end(), args.begin(), args.end());
  std::vector<char*> argv = CStrings(arg_strings);

  // Our environment minus PG* variables, which could point the tools at a
  // different cluster.
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    if (entry.rfind("PG", 0) == 0) continue;
    if (run_as_postgres_ && (entry.rfind("HOME=", 0) == 0 || entry.rfind("USER=", 0) == 0 ||
                             entry.rfind("LOGNAME=", 0) == 0)) {
      continue;
    }
    env_strings.push_back(entry);
  }
  if (run_as_postgres_) {
    env_strings.push_back("HOME=" + dir_);
    env_strings.push_back("USER=postgres");
    env_strings.push_back("LOGNAME=postgres");
  }
  std::vector<char*> envp = CStrings(env_strings);

  // Output goes to an anonymous in-memory file: no pipe to drain, nothing
  // left on disk.
  int out_fd = memfd_create("pgslotd-test-cmd", MFD_CLOEXEC);
  if (out_fd < 0) ThrowErrno("memfd_create", errno);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    int err = errno;
    close(out_fd);
    ThrowErrno("open(/dev/null)", err);
  }

  const bool as_postgres = run_as_postgres_;
  const uid_t uid = postgres_uid_;
  const gid_t gid = postgres_gid_;
  const std::vector<gid_t>& groups = postgres_groups_;
  const char* cwd = dir_.c_str();
  pid_t pid = fork();
  if (pid == 0) {
    ResetSignalsInChild();
    if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) _exit(126);
    close_range(3, ~0U, 0);
    if (as_postgres) {
      if (setgroups(groups.size(), groups.data()) != 0) ChildFail("setgroups failed\n");
      if (setgid(gid) != 0) ChildFail("setgid(postgres) failed\n");
      if (setuid(uid) != 0) ChildFail("setuid(postgres) failed\n");
    }
    if (chdir(cwd) != 0) ChildFail("chdir to the cluster directory failed\n");
    execve(argv[0], argv.data(), envp.data());
    ChildFail("execve failed\n");
  }
  int fork_errno = errno;
  close(null_fd);
  if (pid < 0) {
    close(out_fd);
    ThrowErrno("fork", fork_errno);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      int err = errno;
      close(out_fd);
      ThrowErrno("waitpid", err);
    }
  }

  output->clear();
  char buf[8192];
  ssize_t n;
  off_t offset = 0;
  while ((n = pread(out_fd, buf, sizeof(buf), offset)) > 0) {
    output->append(buf, static_cast<size_t>(n));
    offset += n;
  }
  close(out_fd);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void PgCluster::RunPgProgramOrThrow(const std::string& program,
                                    const std::vector<std::string>& args) {
  std::string output;
  int rc = RunPgProgram(program, args, &output);
  if (rc == 0) return;
  throw std::runtime_error(program + " " + Join(args) + " failed with exit status " +
                           std::to_string(rc) + ":\n" + output + "\n--- tail of " + log_path() +
                           " ---\n" + ServerLogTail());
}

void PgCluster::AppendConfig(const std::string& text) {
  const std::string path = data_dir() + "/postgresql.conf";
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) ThrowErrno("open(" + path + ")", errno);
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(text.size())) ThrowErrno("write(" + path + ")", n < 0 ? err : EIO);
}

void PgCluster::Shutdown() {
  if (dir_.empty() || getpid() != owner_pid_) return;  // a forked child owns nothing
  background_xacts_.reset();                           // killed and reaped
  std::string errors;
  bool stopped = true;
  if (PathExists(data_dir() + "/postmaster.pid")) {
    const pid_t postmaster = PostmasterPid();
    std::string output;
    int rc =
        RunPgProgram("pg_ctl", {"-D", data_dir(), "-w", "-t", "30", "-m", "fast", "stop"}, &output);
    if (rc != 0) {
      errors += "pg_ctl stop -m fast: " + output;
      rc = RunPgProgram("pg_ctl", {"-D", data_dir(), "-w", "-t", "30", "-m", "immediate", "stop"},
                        &output);
      if (rc != 0) errors += "pg_ctl stop -m immediate: " + output;
    }
    stopped = rc == 0;
    if (stopped) ReapPostmaster(postmaster);
  }
  running_ = false;
  if (stopped) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    if (ec) errors += "cannot remove " + dir_ + ": " + ec.message();
  }
  // If the server could not be stopped, the directory is still there and
  // the watchdog, now released, kills what runs in it and removes it.
  if (watchdog_fd_ >= 0) {
    close(watchdog_fd_);
    watchdog_fd_ = -1;
  }
  if (watchdog_pid_ > 0) {
    if (!ReapWithTimeout(watchdog_pid_, std::chrono::seconds(stopped ? 5 : 60))) {
      errors += "the watchdog process " + std::to_string(watchdog_pid_) + " did not exit";
    }
    watchdog_pid_ = 0;
  }
  dir_.clear();
  if (!errors.empty()) throw std::runtime_error(errors);
}

std::string PgCluster::ServerLogTail(size_t max_bytes) const {
  const std::string path = log_path();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "(cannot read " + path + ": " + std::strerror(errno) + ")";
  struct stat st;
  off_t start = 0;
  if (fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) > max_bytes) {
    start = st.st_size - static_cast<off_t>(max_bytes);
  }
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = pread(fd, buf, sizeof(buf), start)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    start += n;
  }
  close(fd);
  return out;
}

std::string PgCluster::Conninfo(const std::string& dbname) const {
  return "host=" + ConninfoValue(dir_) + " port=" + std::to_string(port_) +
         " user=postgres dbname=" + ConninfoValue(dbname);
}

std::string PgCluster::TcpConninfo(const std::string& dbname) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) +
         " user=postgres dbname=" + ConninfoValue(dbname);
}

std::string PgCluster::Scalar(const std::string& sql, const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  Result res = Execute(conn.get(), sql, db);
  if (PQntuples(res.get()) < 1 || PQnfields(res.get()) < 1) {
    throw std::runtime_error("Scalar: the statement returned no value (database \"" + db +
                             "\")\nstatement: " + sql);
  }
  return PQgetisnull(res.get(), 0, 0) ? "" : PQgetvalue(res.get(), 0, 0);
}

std::vector<std::vector<std::string>> PgCluster::Rows(const std::string& sql,
                                                      const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  return ResultRows(Execute(conn.get(), sql, db).get());
}

void PgCluster::Exec(const std::string& sql, const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  Execute(conn.get(), sql, db);
}

void PgCluster::CreateDatabase(const std::string& name) {
  Conn conn = Connect(Conninfo("postgres"));
  Result exists =
      Execute(conn.get(), "SELECT 1 FROM pg_database WHERE datname = " + Literal(conn.get(), name),
              "postgres");
  if (PQntuples(exists.get()) > 0) return;
  Execute(conn.get(), "CREATE DATABASE " + Identifier(conn.get(), name), "postgres");
}

std::vector<std::string> PgCluster::PeekChanges(
    const std::string& slot, const std::string& upto_lsn,
    const std::vector<std::pair<std::string, std::string>>& options, const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  std::string sql =
      "SELECT data FROM pg_logical_slot_peek_changes(" + Literal(conn.get(), slot) + ", " +
      (upto_lsn.empty() ? "NULL" : Literal(conn.get(), upto_lsn) + "::pg_lsn") + ", NULL";
  for (const auto& [name, value] : options) {
    sql += ", " + Literal(conn.get(), name) + ", " + Literal(conn.get(), value);
  }
  sql += ")";
  std::vector<std::string> changes;
  for (auto& row : ResultRows(Execute(conn.get(), sql, db).get())) {
    changes.push_back(std::move(row.at(0)));
  }
  return changes;
}

void PgCluster::CreateLogicalSlot(const std::string& name, const std::string& plugin,
                                  const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  Execute(conn.get(),
          "SELECT pg_create_logical_replication_slot(" + Literal(conn.get(), name) + ", " +
              Literal(conn.get(), plugin) + ")",
          db);
}

void PgCluster::CopyLogicalSlot(const std::string& from, const std::string& to,
                                const std::string& db) {
  Conn conn = Connect(Conninfo(db));
  Execute(conn.get(),
          "SELECT pg_copy_logical_replication_slot(" + Literal(conn.get(), from) + ", " +
              Literal(conn.get(), to) + ")",
          db);
}

void PgCluster::DropSlotIfExists(const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    // A logical slot can be dropped from any database.
    Conn conn = Connect(Conninfo("postgres"));
    const std::string slot = Literal(conn.get(), name);
    auto rows = ResultRows(
        Execute(conn.get(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = " + slot,
                "postgres")
            .get());
    if (rows.empty()) return;
    if (!rows[0][0].empty()) {
      // Waits up to 5 s for the backend to exit; a WARNING if it has already.
      Execute(conn.get(), "SELECT pg_terminate_backend(" + rows[0][0] + ", 5000)", "postgres");
    }
    try {
      Execute(conn.get(), "SELECT pg_drop_replication_slot(" + slot + ")", "postgres");
      return;
    } catch (const std::runtime_error&) {
      // Still active (a client reconnected, or the walsender has not let
      // go yet), or dropped meanwhile: look again, until the deadline.
      if (std::chrono::steady_clock::now() >= deadline) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string PgCluster::ConfirmedFlushLsn(const std::string& slot) {
  Conn conn = Connect(Conninfo("postgres"));
  auto rows =
      ResultRows(Execute(conn.get(),
                         "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = " +
                             Literal(conn.get(), slot),
                         "postgres")
                     .get());
  if (rows.empty()) throw std::runtime_error("there is no replication slot \"" + slot + "\"");
  return rows[0][0];
}

std::string PgCluster::CurrentWalLsn() { return Scalar("SELECT pg_current_wal_lsn()"); }

void PgCluster::Start() {
  RunPgProgramOrThrow("pg_ctl", {"-D", data_dir(), "-l", log_path(), "-w", "-t", "60", "start"});
  running_ = true;
}

void PgCluster::Stop(const std::string& mode) {
  const pid_t postmaster = PostmasterPid();
  RunPgProgramOrThrow("pg_ctl", {"-D", data_dir(), "-w", "-t", "60", "-m", mode, "stop"});
  running_ = false;
  ReapPostmaster(postmaster);
}

void PgCluster::Restart(const std::string& mode) {
  const pid_t postmaster = PostmasterPid();
  running_ = false;
  RunPgProgramOrThrow(
      "pg_ctl", {"-D", data_dir(), "-l", log_path(), "-w", "-t", "60", "-m", mode, "restart"});
  running_ = true;
  ReapPostmaster(postmaster);
}

void PgCluster::ReapPostmaster(pid_t pid) {
  // Only a postmaster we have inherited (see PR_SET_CHILD_SUBREAPER) can be
  // reaped; for any other pid waitpid fails at once with ECHILD.
  if (pid > 0) ReapWithTimeout(pid, std::chrono::seconds(10));
}

}  // namespace pgslotd::test
