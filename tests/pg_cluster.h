// A real, throwaway PostgreSQL 15 cluster for integration tests.
//
// The cluster lives in a fresh directory /tmp/pgslotd-test-XXXXXX:
//   <dir>/data        the data directory (initdb --no-sync, trust auth)
//   <dir>/server.log  the server's log (pg_ctl -l)
//   <dir>/.s.PGSQL.N  the Unix socket (unix_socket_directories = <dir>)
// It listens on 127.0.0.1 on a free port, with wal_level = logical and room
// for 100 replication slots and 40 WAL senders. fsync stays on: the server is
// kept realistic even though only our own durability is under test.
//
// When the tests run as root, initdb and pg_ctl run as the `postgres` OS
// user (the directory is chowned to it, mode 0755 so root-run code can read
// it too).
//
// The test process makes itself a child subreaper (PR_SET_CHILD_SUBREAPER)
// so that the postmaster, which pg_ctl leaves behind as an orphan, becomes its
// child and is reaped as soon as it stops (no lingering zombie). A side
// effect: other orphaned grandchildren of the test process are re-parented to
// it as well; waitpid() on specific pids, as Subprocess does, is unaffected.
//
// Clean-up: a cluster is stopped (pg_ctl stop -m fast) and its directory
// removed when the PgCluster is destroyed; the Shared() one at process exit.
// Each cluster also has a small watchdog process that notices when the test
// process is gone for any reason (crash, SIGKILL, Ctrl-C) and then shuts the
// server down (immediate mode) and removes the directory, so no postmaster
// outlives its test binary.
//
// Errors (a failed command, a failed SQL statement) are thrown as
// std::runtime_error with the server's message; start-up failures include the
// tail of server.log. GoogleTest reports an exception escaping a test body as
// a failure with that message.
//
// Background work, made constant on request: with
// PGSLOTD_TEST_BACKGROUND_XACTS=1 in the environment, every cluster also
// runs a loop (a shell with psql, ended with the cluster) that commits an
// ANALYZE of pg_catalog.pg_am in each of its databases, about every 20 ms:
// a catalog-only transaction, which test_decoding shows as an empty
// "BEGIN n"/"COMMIT n" unless skip-empty-xacts is on, as autovacuum's are
// at moments nobody picks. A test that passes so does not depend on when
// such transactions commit.
//
// Thread-safety: none. Call everything from the test's own thread. The SQL
// helpers open a short connection for each call, so a restart, a dropped
// database or a terminated backend never leaves a stale connection behind.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pgslotd::test {

class Subprocess;

class PgCluster {
 public:
  // The cluster shared by all tests of this process, started on the first
  // call (about 2 s) and stopped at process exit. If a test left it stopped
  // (Stop()), it is started again. If the first start fails, this and every
  // later call throw the same error.
  static PgCluster* Shared();

  // A private cluster, for tests that must stop or break their server
  // without disturbing others. Destroying it stops the server and removes
  // its directory.
  static std::unique_ptr<PgCluster> StartNew();

  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  int port() const { return port_; }
  // The directory holding everything; also where the Unix socket lives.
  const std::string& dir() const { return dir_; }
  const std::string& socket_dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string log_path() const { return dir_ + "/server.log"; }
  bool running() const { return running_; }

  // "host=<socket_dir> port=<port> user=postgres dbname=<dbname>"; values
  // that need it are quoted as libpq expects.
  std::string Conninfo(const std::string& dbname = "postgres") const;
  // The same over TCP: host=127.0.0.1.
  std::string TcpConninfo(const std::string& dbname = "postgres") const;
  // True when this server build lets replication roles use only the output
  // plugins listed in output_plugin_libraries (Debian's 15.19 and later).
  bool HasOutputPluginAllowlist() const;

  // The first column of the first row as text ("" for NULL). Throws if the
  // statement fails or returns no row.
  std::string Scalar(const std::string& sql, const std::string& db = "postgres");
  // All rows, each as its columns' text ("" for NULL). A statement that
  // returns no rows (e.g. an INSERT) gives an empty vector.
  std::vector<std::vector<std::string>> Rows(const std::string& sql,
                                             const std::string& db = "postgres");
  // Runs one or more statements (separated by ';', in one implicit
  // transaction unless they contain their own BEGIN/COMMIT).
  void Exec(const std::string& sql, const std::string& db = "postgres");
  // Creates database `name` unless it exists already.
  void CreateDatabase(const std::string& name);

  // Reference output of logical decoding, without consuming it:
  // pg_logical_slot_peek_changes(slot, upto_lsn, NULL, options...) in
  // database `db` (the slot's database). An empty `upto_lsn` means no limit.
  // Returns the `data` column of each row, in order.
  std::vector<std::string> PeekChanges(
      const std::string& slot, const std::string& upto_lsn = "",
      const std::vector<std::pair<std::string, std::string>>& options = {},
      const std::string& db = "postgres");
  // pg_create_logical_replication_slot(name, plugin) in database `db`.
  void CreateLogicalSlot(const std::string& name, const std::string& plugin = "test_decoding",
                         const std::string& db = "postgres");
  // pg_copy_logical_replication_slot(from, to) in database `db` (the
  // source's database): a new slot with the same plugin, restart_lsn and
  // confirmed_flush_lsn, so that both decode exactly the same range. Two
  // slots created one after the other do not: a transaction that commits
  // in between (autovacuum's, for one) is in the first and not the second.
  void CopyLogicalSlot(const std::string& from, const std::string& to,
                       const std::string& db = "postgres");
  // Drops slot `name` if it exists, first terminating a walsender that is
  // using it (and retrying for a few seconds while it lets go).
  void DropSlotIfExists(const std::string& name);
  // The slot's confirmed_flush_lsn as text, e.g. "0/1A2B3C8". Throws if
  // there is no such slot; "" if it has none (a physical slot).
  std::string ConfirmedFlushLsn(const std::string& slot);
  // pg_current_wal_lsn() as text.
  std::string CurrentWalLsn();

  // pg_ctl start/stop/restart with the same port and data. `mode` is
  // "smart", "fast" or "immediate".
  void Start();
  void Stop(const std::string& mode = "fast");
  void Restart(const std::string& mode = "fast");

  // The last `max_bytes` of server.log, for failure messages.
  std::string ServerLogTail(size_t max_bytes = 4000) const;

 private:
  PgCluster() = default;

  // Creates the directory, runs initdb, writes the configuration and starts
  // the server. On failure throws; the destructor cleans up what was made.
  void Init();
  void StartWatchdog();
  // Starts background_xacts_ if PGSLOTD_TEST_BACKGROUND_XACTS=1.
  void StartBackgroundXacts();
  // Adds wal2json to output_plugin_libraries on builds that have it.
  void AllowWal2json();
  // True when this server build knows setting `name`; *boot_value is then
  // its built-in default.
  bool DescribeSetting(const std::string& name, std::string* boot_value) const;
  // The pid in postmaster.pid, or 0.
  pid_t PostmasterPid() const;
  // Waits briefly for a stopped postmaster and reaps it if it is our child.
  static void ReapPostmaster(pid_t pid);
  // Runs a PostgreSQL program from the server's bin directory (as the
  // `postgres` user when we are root) and returns its exit status; its
  // combined stdout/stderr goes to *output.
  int RunPgProgram(const std::string& program, const std::vector<std::string>& args,
                   std::string* output) const;
  // Like RunPgProgram, but throws on a non-zero exit, with the output and
  // the tail of server.log.
  void RunPgProgramOrThrow(const std::string& program, const std::vector<std::string>& args);
  void AppendConfig(const std::string& text);
  // Stops the server if it runs (fast, then immediate) and removes the
  // directory; used by the destructor and at process exit.
  void Shutdown();

  pid_t owner_pid_ = 0;  // the process that created the cluster
  std::string dir_;
  int port_ = 0;
  bool running_ = false;
  bool run_as_postgres_ = false;
  uid_t postgres_uid_ = 0;
  gid_t postgres_gid_ = 0;
  std::vector<gid_t> postgres_groups_;
  std::unique_ptr<Subprocess> background_xacts_;
  pid_t watchdog_pid_ = 0;
  int watchdog_fd_ = -1;  // write end of the pipe the watchdog waits on
};

}  // namespace pgslotd::test
