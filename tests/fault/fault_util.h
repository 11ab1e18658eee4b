// Shared pieces of the fault suite (tests/fault/*_test.cc): a fixture that
// can run on a private cluster, a multi-writer workload over libpq, parsing
// of test_decoding output into transactions, a real TCP proxy (socat) that
// can be killed or frozen, and a real FIFO reader process that can be killed.
//
// Header-only on purpose: tests/fault/CMakeLists.txt compiles only the
// *_test.cc files of this directory.
//
// API stability: other fault tests include this header. Add to it freely;
// do not change the meaning or the signature of what is here.
//
// Threads: only Workload runs threads of its own (its writers, each with its
// own libpq connection). Everything else is for the test's main thread, like
// the rest of the harness (Subprocess, PgCluster).
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "daemon_fixture.h"

namespace pgslotd::test::fault {

// test_decoding options every fault test streams with: transaction ids on
// BEGIN/COMMIT (what the transaction parsing below keys on) and no empty
// transactions.
inline const Options& XidOptions() {
  static const Options kOptions = {{"include-xids", "1"}, {"skip-empty-xacts", "1"}};
  return kOptions;
}

// The same options as a slot's YAML `options:` line (for SlotYaml's extra).
inline std::string XidOptionsYaml() {
  return "    options: {include-xids: \"1\", skip-empty-xacts: \"1\"}\n";
}

// How many times `needle` occurs in `haystack` (non-overlapping).
inline size_t CountOf(const std::string& haystack, const std::string& needle) {
  if (needle.empty()) return 0;
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The lines of `text` that contain any of `needles`, each with its '\n':
// a daemon log cut down to the events a failure message needs.
inline std::string LinesWith(const std::string& text, std::initializer_list<const char*> needles) {
  std::string out;
  for (const std::string& line : SplitLines(text)) {
    for (const char* n : needles) {
      if (line.find(n) != std::string::npos) {
        out += line + "\n";
        break;
      }
    }
  }
  return out;
}

// The seed of a test's random choices: $PGSLOTD_FAULT_SEED when set (to
// replay a run), else a fresh random one. It is printed, and recorded as the
// test's `seed` property, so a failing run can be replayed.
inline uint64_t FaultSeed() {
  uint64_t seed;
  if (const char* env = std::getenv("PGSLOTD_FAULT_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  std::cout << "[ fault    ] seed " << seed << " (replay with PGSLOTD_FAULT_SEED=" << seed << ")"
            << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

// The size of `path` in bytes, 0 when it does not exist.
inline uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// ---------------------------------------------------------------------------
// Fixture

// DaemonTest on either the shared cluster or a private one. A test that
// stops, crashes or reconfigures its server must use a private cluster:
//
//   class ServerRestartTest : public FaultTest {
//    protected:
//     ServerRestartTest() : FaultTest(Cluster::kPrivate) {}
//   };
//
// pg_ then points at the private cluster, which is stopped and removed after
// the test (after the test body's Subprocesses, so after the daemon).
class FaultTest : public DaemonTest {
 protected:
  enum class Cluster { kShared, kPrivate };
  explicit FaultTest(Cluster cluster = Cluster::kShared) : cluster_(cluster) {}

  void SetUp() override {
    if (cluster_ == Cluster::kShared) {
      DaemonTest::SetUp();
      return;
    }
    own_pg_ = PgCluster::StartNew();
    pg_ = own_pg_.get();
    dir_ = std::make_unique<TempDir>("pgslotd-fault");
  }

  // A configuration: `conninfo` as the top-level connection, status_interval
  // 1s, the test's temporary directory as state and runtime directory, then `extra`
  // (top-level keys, each line ending in '\n') and the `slots` entries
  // (SlotYaml(...) strings).
  std::string FaultConfig(const std::string& conninfo, const std::string& slots,
                          const std::string& extra = "") {
    return "connection: \"" + conninfo + "\"\nstatus_interval: 1s\n" + Dirs() + extra +
           "slots:\n" + slots;
  }

  // Sets wal_sender_timeout on a private cluster and waits until new
  // sessions see it; false if they do not within 10 s.
  bool SetWalSenderTimeout(const std::string& value) {
    pg_->Exec("ALTER SYSTEM SET wal_sender_timeout = '" + value + "'");
    pg_->Exec("SELECT pg_reload_conf()");
    return WaitFor([&] { return pg_->Scalar("SHOW wal_sender_timeout") == value; },
                   std::chrono::seconds(10));
  }

  // A file sink's YAML for SlotYaml.
  static std::string FileSinkYaml(const std::string& path) {
    return "{type: file, path: " + path + "}";
  }

  // Drops each slot if it exists and creates them anew (test_decoding) in
  // database `db`, so that they all start at exactly the same point (the
  // first is created, the others are copies of it: see FreshSlots).
  void FreshSlotsIn(const std::string& db, std::initializer_list<const char*> names) {
    FreshSlots(names, "test_decoding", db);
  }

  // Starts the daemon on `config` with its log on stderr (p->Stderr()).
  void StartDaemon(const std::string& config, Subprocess* p,
                   const std::vector<std::string>& more_args = {}) {
    std::vector<std::string> argv = {PgslotdBinary(), "--config", config, "--log-target", "stderr"};
    argv.insert(argv.end(), more_args.begin(), more_args.end());
    p->Start(argv);
  }

  // Runs the daemon with --end-lsn `end` to completion; returns its exit
  // code (a failure is reported with its log).
  int RunToEnd(const std::string& config, const std::string& end, Subprocess* p,
               std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    StartDaemon(config, p, {"--end-lsn", end});
    int rc = p->Wait(timeout);
    if (rc != 0)
      ADD_FAILURE() << "pgslotd --end-lsn " << end << " exited " << rc << ":\n" << p->Stderr();
    return rc;
  }

  // Ends a long-running daemon the way an operator would after a fault:
  // waits (up to `timeout`) until it has acknowledged `end` for `slot` by
  // itself, then stops it with SIGTERM and expects exit 0. Returns whether
  // all of that happened (failures are reported).
  // For each of `tables`, starts the daemon on `config` and kills it with
  // SIGKILL once `in_table(table)` says its output holds part of that
  // table (polled every `poll`, up to `timeout`): frozen with SIGSTOP
  // first and asked again, so that the kill lands in that table. Each
  // run's log is appended to *logs; `after_kill` runs after each kill.
  void KillInEachTable(const std::string& config, std::initializer_list<const char*> tables,
                       const std::function<bool(const std::string&)>& in_table,
                       std::chrono::milliseconds poll, std::chrono::milliseconds timeout,
                       std::string* logs, const std::function<void()>& after_kill = {}) {
    for (const char* table : tables) {
      Subprocess p;
      StartDaemon(config, &p);
      ASSERT_TRUE(WaitFor([&] { return in_table(table) || !p.Running(); }, timeout, poll))
          << p.Stderr();
      ASSERT_TRUE(p.Signal(SIGSTOP)) << p.Stderr();
      ASSERT_TRUE(in_table(table)) << "the output moved past " << table
                                   << " before pgslotd was frozen: the test proves nothing\n"
                                   << LinesWith(p.Stderr(), {"snapshot"});
      ASSERT_TRUE(p.Signal(SIGKILL));
      ASSERT_EQ(p.Wait(std::chrono::seconds(10)), 128 + SIGKILL);
      if (after_kill) after_kill();
      *logs += p.Stderr();
    }
  }

  bool CatchUpAndStop(Subprocess* p, const std::string& slot, const std::string& end,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (!WaitFor([&] { return !p->Running() || FlushAtLeast(slot, end); }, timeout) ||
        !p->Running()) {
      ADD_FAILURE() << "pgslotd did not catch up to " << end << " by itself (slot at "
                    << pg_->ConfirmedFlushLsn(slot) << ", running: " << p->Running() << "):\n"
                    << p->Stderr();
      return false;
    }
    p->Signal(SIGTERM);
    int rc = p->Wait(std::chrono::seconds(30));
    if (rc != 0) {
      ADD_FAILURE() << "pgslotd exited " << rc << " on SIGTERM:\n" << p->Stderr();
      return false;
    }
    return true;
  }

  Cluster cluster_;
  std::unique_ptr<PgCluster> own_pg_;
};

// ---------------------------------------------------------------------------
// Workload

// Writer threads that keep committing small transactions into one table
// until stopped, each over its own libpq connection. The mix, per writer:
// single-row inserts, multi-row inserts, transactions of several statements
// (insert, update, delete of the writer's own rows), the odd rollback (which
// decodes to nothing) and the odd bigger transaction (a few hundred rows).
// Values hold quotes and multi-byte text but never a newline, so every
// decoded change is one line.
//
// A writer whose connection fails (a server restart or crash) reconnects
// and goes on; whether its interrupted transaction committed does not
// matter to the tests, which compare against the server's own decoding.
class Workload {
 public:
  struct Options {
    std::string conninfo;  // libpq connection string, including dbname
    std::string table;     // created by CreateTable
    int writers = 4;
    uint64_t seed = 1;
    // Pause of each writer between two transactions: keeps the volume at
    // thousands of rows, not millions, whatever the machine's speed.
    std::chrono::milliseconds pause{5};
    // Safety limit per writer (0: none).
    uint64_t max_transactions = 20000;
  };

  // (Re)creates `table` in `db` with the columns the writers use.
  static void CreateTable(PgCluster* pg, const std::string& table, const std::string& db) {
    pg->Exec("DROP TABLE IF EXISTS " + table + "; CREATE TABLE " + table +
                 "(id bigserial PRIMARY KEY, writer int NOT NULL, n int NOT NULL, v text NOT NULL);"
                 " CREATE INDEX ON " +
                 table + "(writer, id)",
             db);
  }

  explicit Workload(Options options) : options_(std::move(options)) {}
  ~Workload() { Stop(); }
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  void Start() {
    for (int w = 0; w < options_.writers; ++w) threads_.emplace_back([this, w] { Writer(w); });
  }

  // Asks every writer to stop after its current transaction and joins them.
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  // Transactions whose COMMIT the server confirmed (rollbacks not counted).
  uint64_t committed() const { return committed_.load(); }
  // Connection attempts or transactions that failed (expected while the
  // server restarts; otherwise a sign of trouble).
  uint64_t failures() const { return failures_.load(); }

  // Waits until at least `n` more transactions than now have committed.
  bool WaitMore(uint64_t n, std::chrono::milliseconds timeout) {
    uint64_t target = committed() + n;
    return WaitFor([&] { return committed() >= target; }, timeout);
  }

  // The first error a writer saw, for failure messages.
  std::string first_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void NoteError(const std::string& what) {
    failures_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (first_error_.empty()) first_error_ = what;
  }

  // Sleeps up to `d`, returning early once Stop was called.
  void Nap(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(20), until - std::chrono::steady_clock::now()));
    }
  }

  std::string Transaction(int w, uint64_t k, std::mt19937_64& rng, bool* rollback) const {
    const std::string& t = options_.table;
    const std::string ws = std::to_string(w);
    const std::string ks = std::to_string(k);
    auto insert_one = [&](const std::string& tag) {
      return "INSERT INTO " + t + "(writer, n, v) VALUES (" + ws + ", " + ks + ", 'w" + ws + " " +
             ks + " " + tag + " it''s ✓')";
    };
    const std::string own = "(SELECT max(id) FROM " + t + " WHERE writer = " + ws + ")";
    const std::string oldest = "(SELECT min(id) FROM " + t + " WHERE writer = " + ws + ")";
    *rollback = false;
    int dice = static_cast<int>(rng() % 100);
    if (dice < 30) return insert_one("single");
    if (dice < 55) {
      int rows = 2 + static_cast<int>(rng() % 19);
      return "INSERT INTO " + t + "(writer, n, v) SELECT " + ws + ", " + ks + ", 'w" + ws + " " +
             ks + " multi ' || g FROM generate_series(1, " + std::to_string(rows) + ") g";
    }
    if (dice < 80) {
      return "BEGIN; " + insert_one("first") + "; UPDATE " + t + " SET v = v || ' +\"upd\"' " +
             "WHERE id = " + own + "; " + insert_one("second") + "; COMMIT";
    }
    if (dice < 90) {
      return "BEGIN; DELETE FROM " + t + " WHERE id = " + oldest + "; " + insert_one("after del") +
             "; COMMIT";
    }
    if (dice < 98) {
      *rollback = true;
      return "BEGIN; " + insert_one("rolled back") + "; ROLLBACK";
    }
    return "INSERT INTO " + t + "(writer, n, v) SELECT " + ws + ", " + ks + ", 'w" + ws + " " + ks +
           " big ' || g || ' ' || repeat('x', 80) FROM generate_series(1, 150) g";
  }

  void Writer(int w) {
    std::mt19937_64 rng(options_.seed * 1000003 + static_cast<uint64_t>(w));
    PGconn* conn = nullptr;
    for (uint64_t k = 1; !stop_.load(); ++k) {
      if (options_.max_transactions != 0 && k > options_.max_transactions) break;
      if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
        if (conn != nullptr) PQfinish(conn);
        conn = PQconnectdb(options_.conninfo.c_str());
        if (PQstatus(conn) != CONNECTION_OK) {
          NoteError(std::string("connect: ") + PQerrorMessage(conn));
          PQfinish(conn);
          conn = nullptr;
          Nap(std::chrono::milliseconds(50));
          continue;
        }
        // The server's notices ("terminating connection ...") are expected
        // here and would only clutter the test's output.
        PQsetNoticeProcessor(
            conn, [](void*, const char*) {}, nullptr);
      }
      bool rollback = false;
      std::string sql = Transaction(w, k, rng, &rollback);
      PGresult* res = PQexec(conn, sql.c_str());
      ExecStatusType st = PQresultStatus(res);
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (!rollback) committed_.fetch_add(1);
      } else {
        NoteError("writer " + std::to_string(w) + ": " + PQerrorMessage(conn));
        // Whatever state the session is in, start over on a new one.
        PQfinish(conn);
        conn = nullptr;
      }
      PQclear(res);
      Nap(options_.pause);
    }
    if (conn != nullptr) PQfinish(conn);
  }

  Options options_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> committed_{0};
  std::atomic<uint64_t> failures_{0};
  mutable std::mutex mu_;
  std::string first_error_;
};

// ---------------------------------------------------------------------------
// Transactions of test_decoding output (with include-xids)

// One transaction as it appears in the output: its lines from "BEGIN <xid>"
// to "COMMIT <xid>" included, each with its '\n'. `complete` is false for a
// transaction cut before its COMMIT.
struct Txn {
  std::string xid;
  std::string text;
  bool complete = false;
};

// The result of parsing output into transactions.
struct ParsedOutput {
  std::vector<Txn> txns;
  // Lines outside any transaction, or a COMMIT that does not close the open
  // transaction: output that should never be there.
  std::vector<std::string> stray;
  // A last line without its '\n' (a reader killed in the middle of a
  // line); it is not part of `txns`.
  std::string torn_tail;
};

// Parses `text` (raw test_decoding output, include-xids on). A BEGIN while a
// transaction is open ends the open one as incomplete; so does the end of
// `text`. Never throws: whatever is not a well-formed transaction is
// reported in `stray`.
inline ParsedOutput ParseTxns(const std::string& text) {
  ParsedOutput out;
  std::string body = text;
  if (!body.empty() && body.back() != '\n') {
    size_t nl = body.rfind('\n');
    size_t cut = nl == std::string::npos ? 0 : nl + 1;
    out.torn_tail = body.substr(cut);
    body.resize(cut);
  }
  bool open = false;
  Txn cur;
  for (const std::string& line : SplitLines(body)) {
    if (line.rfind("BEGIN ", 0) == 0) {
      if (open) out.txns.push_back(cur);
      cur = Txn{line.substr(6), line + "\n", false};
      open = true;
    } else if (line.rfind("COMMIT ", 0) == 0 && open && line.substr(7) == cur.xid) {
      cur.text += line + "\n";
      cur.complete = true;
      out.txns.push_back(cur);
      open = false;
    } else if (open && line.rfind("table ", 0) == 0) {
      cur.text += line + "\n";
    } else {
      out.stray.push_back(line);
    }
  }
  if (open) out.txns.push_back(cur);
  return out;
}

// A short account of how `got` differs from `want` (both test_decoding
// output with xids), for the message of a failed exact comparison: sizes,
// repeated, missing, incomplete and unknown transactions, and the first
// line that differs.
inline std::string DescribeDifference(const std::string& got, const std::string& want) {
  std::ostringstream o;
  ParsedOutput g = ParseTxns(got);
  ParsedOutput w = ParseTxns(want);
  std::map<std::string, const Txn*> ref;
  for (const Txn& t : w.txns) ref[t.xid] = &t;
  std::map<std::string, int> seen;
  size_t repeats = 0, partial = 0, unknown = 0, altered = 0;
  for (const Txn& t : g.txns) {
    if (!t.complete) {
      ++partial;
      continue;
    }
    if (++seen[t.xid] > 1) ++repeats;
    auto it = ref.find(t.xid);
    if (it == ref.end()) {
      ++unknown;
    } else if (it->second->text != t.text) {
      ++altered;
    }
  }
  size_t missing = 0;
  for (const Txn& t : w.txns) missing += seen.count(t.xid) == 0 ? 1 : 0;
  o << "got " << got.size() << " bytes / " << g.txns.size() << " transactions, want " << want.size()
    << " bytes / " << w.txns.size() << " transactions; repeated " << repeats << ", incomplete "
    << partial << ", missing " << missing << ", not in the reference " << unknown << ", altered "
    << altered << ", stray lines " << g.stray.size();
  std::vector<std::string> gl = SplitLines(got), wl = SplitLines(want);
  for (size_t i = 0; i < std::max(gl.size(), wl.size()); ++i) {
    std::string a = i < gl.size() ? gl[i] : "<end>";
    std::string b = i < wl.size() ? wl[i] : "<end>";
    if (a != b) {
      o << "; first difference at line " << i + 1 << ": got \"" << a.substr(0, 160) << "\", want \""
        << b.substr(0, 160) << "\"";
      break;
    }
  }
  return o.str();
}

// Exact comparison of a sink's bytes with the reference, with a readable
// account of the difference when they are not equal (never a multi-megabyte
// dump).
inline ::testing::AssertionResult SameOutput(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << DescribeDifference(got, want);
}

// The at-least-once rule for stream sinks (a pipe whose reader is killed and
// restarted). `sessions` holds what each reader took, in order; `reference`
// is the server's own decoding. Accepted, and nothing else:
//
//  1. Every line of every session lies inside a transaction: a session
//     starts on a "BEGIN" line (never in the middle of a line or of a
//     transaction's body). A session's last line may be torn (the reader
//     was killed in the middle of it).
//  2. A complete transaction is byte for byte the reference's transaction
//     with the same xid (nothing unknown, nothing altered).
//  3. An incomplete transaction (its session ended, or a BEGIN came, before
//     its COMMIT) is a prefix of the reference's transaction with that xid,
//     and that transaction appears complete later in the output.
//  4. The complete transactions, with repeats removed (keeping the first
//     occurrence of each xid), are exactly the reference's transactions, in
//     order: nothing lost, and nothing out of order.
inline ::testing::AssertionResult AtLeastOnce(const std::vector<std::string>& sessions,
                                              const std::string& reference) {
  ParsedOutput ref = ParseTxns(reference);
  if (!ref.stray.empty() || !ref.torn_tail.empty()) {
    return ::testing::AssertionFailure() << "the reference itself does not parse";
  }
  std::map<std::string, const Txn*> by_xid;
  for (const Txn& t : ref.txns) by_xid[t.xid] = &t;

  struct Seen {
    Txn txn;
    size_t session;
  };
  std::vector<Seen> all;
  for (size_t s = 0; s < sessions.size(); ++s) {
    ParsedOutput p = ParseTxns(sessions[s]);
    if (!p.stray.empty()) {
      return ::testing::AssertionFailure() << "reader " << s + 1 << " got " << p.stray.size()
                                           << " line(s) outside any transaction, the first: \""
                                           << p.stray[0].substr(0, 160) << "\"";
    }
    if (!p.torn_tail.empty()) {
      // The reader was killed in the middle of a line. Inside a transaction
      // the torn line must continue it as the reference does; after a
      // COMMIT (or before anything) it can only be the start of a BEGIN.
      bool ok;
      if (!p.txns.empty() && !p.txns.back().complete) {
        auto it = by_xid.find(p.txns.back().xid);
        ok = it != by_xid.end() && p.txns.back().text.size() <= it->second->text.size() &&
             it->second->text.compare(p.txns.back().text.size(), p.torn_tail.size(), p.torn_tail) ==
                 0;
      } else {
        const std::string begin = "BEGIN ";
        ok = p.torn_tail.rfind(begin, 0) == 0 ||
             begin.compare(0, p.torn_tail.size(), p.torn_tail) == 0;
      }
      if (!ok) {
        return ::testing::AssertionFailure()
               << "reader " << s + 1 << " ends in a torn line that fits no transaction: \""
               << p.torn_tail.substr(0, 160) << "\"";
      }
    }
    for (Txn& t : p.txns) all.push_back({std::move(t), s});
  }

  std::map<std::string, size_t> first_complete;
  std::vector<std::string> order;
  size_t repeats = 0, partials = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const Txn& t = all[i].txn;
    auto it = by_xid.find(t.xid);
    if (it == by_xid.end()) {
      return ::testing::AssertionFailure() << "reader " << all[i].session + 1 << " got xid "
                                           << t.xid << ", which is not in the reference";
    }
    const std::string& want = it->second->text;
    if (t.complete) {
      if (t.text != want) {
        return ::testing::AssertionFailure()
               << "reader " << all[i].session + 1 << " got transaction " << t.xid
               << " differently from the reference: " << DescribeDifference(t.text, want);
      }
      if (first_complete.count(t.xid) != 0) {
        ++repeats;
      } else {
        first_complete[t.xid] = i;
        order.push_back(t.xid);
      }
      continue;
    }
    ++partials;
    if (want.compare(0, t.text.size(), t.text) != 0) {
      return ::testing::AssertionFailure()
             << "reader " << all[i].session + 1 << " got an incomplete transaction " << t.xid
             << " that is not a prefix of the reference's: " << DescribeDifference(t.text, want);
    }
    bool whole_later = false;
    for (size_t j = i + 1; j < all.size() && !whole_later; ++j) {
      whole_later = all[j].txn.complete && all[j].txn.xid == t.xid;
    }
    if (!whole_later) {
      return ::testing::AssertionFailure()
             << "reader " << all[i].session + 1 << " got transaction " << t.xid
             << " incomplete, and it never came whole afterwards";
    }
  }
  for (size_t i = 0; i < std::max(order.size(), ref.txns.size()); ++i) {
    std::string got = i < order.size() ? order[i] : "<none>";
    std::string want = i < ref.txns.size() ? ref.txns[i].xid : "<none>";
    if (got != want) {
      return ::testing::AssertionFailure()
             << "transaction #" << i + 1 << " (repeats removed) is xid " << got
             << ", the reference's is " << want << " (" << order.size() << " distinct of "
             << ref.txns.size() << ")";
    }
  }
  return ::testing::AssertionSuccess() << ref.txns.size() << " transactions, " << repeats
                                       << " repeated whole, " << partials << " incomplete";
}

// ---------------------------------------------------------------------------
// Processes

// A TCP port on 127.0.0.1 that was free a moment ago.
inline int PickFreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("cannot pick a free port: ") + std::strerror(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, so
// the check itself opens no connection).
inline bool Listening(int port) {
  std::ifstream in("/proc/net/tcp");
  char want[32];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (local == want && state == "0A") return true;
  }
  return false;
}

// The pids whose parent is `parent` (from /proc/*/stat).
inline std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(in, stat);
    // pid (comm) state ppid ...; comm may hold spaces and parentheses.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

// Reaps `pid` if it is (or becomes, as an orphan of a child subreaper) our
// child, waiting up to `timeout`; gives up quietly otherwise.
inline void ReapIfOurs(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A real TCP proxy: `socat TCP-LISTEN:<port>,bind=127.0.0.1,reuseaddr,fork
// TCP:127.0.0.1:<target>`. socat forks one process per connection, so
// freezing or killing the proxy means the listener and every one of those
// (which is what Freeze and Kill do): killing only the listener would leave
// established connections flowing.
class TcpProxy {
 public:
  TcpProxy() = default;
  ~TcpProxy() { Kill(); }
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // Starts the proxy and waits until it listens. Throws if it does not
  // within 10 s.
  void Start(int port, int target_port) {
    Kill();
    port_ = port;
    listener_ = std::make_unique<Subprocess>();
    listener_->Start({"socat",
                      "TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr,fork",
                      "TCP:127.0.0.1:" + std::to_string(target_port)});
    if (!WaitFor([&] { return Listening(port) || !listener_->Running(); },
                 std::chrono::seconds(10)) ||
        !listener_->Running()) {
      throw std::runtime_error("socat did not start listening on port " + std::to_string(port) +
                               ": " + listener_->Stderr());
    }
  }

  int port() const { return port_; }
  bool running() { return listener_ != nullptr && listener_->Running(); }

  // SIGSTOP to the listener (first, so that it forks no more) and to every
  // connection process: connections stay open but nothing moves.
  void Freeze() { SignalAll(SIGSTOP); }
  // SIGCONT to all of them.
  void Thaw() { SignalAll(SIGCONT); }

  // SIGKILL to the listener and every connection process (frozen or not),
  // and reaps them: every connection through the proxy is cut and the port
  // is free again. Does nothing if the proxy is not running.
  void Kill() {
    if (listener_ == nullptr) return;
    if (listener_->Running()) {
      listener_->Signal(SIGSTOP);
      std::vector<pid_t> children = ChildrenOf(listener_->pid());
      for (pid_t c : children) ::kill(c, SIGKILL);
      listener_->Signal(SIGKILL);
      listener_->Wait(std::chrono::seconds(10));
      for (pid_t c : children) ReapIfOurs(c, std::chrono::seconds(5));
    }
    listener_.reset();
  }

  // The listener's stderr (socat's complaints), for failure messages.
  std::string Stderr() const { return listener_ ? listener_->Stderr() : ""; }

 private:
  void SignalAll(int sig) {
    if (listener_ == nullptr) return;
    listener_->Signal(sig);
    for (pid_t c : ChildrenOf(listener_->pid())) ::kill(c, sig);
  }

  int port_ = 0;
  std::unique_ptr<Subprocess> listener_;
};

// A real reader process of a FIFO: opens it for reading (blocking until a
// writer comes), moves everything into `out_path` with splice(2) until end
// of file, then exits 0. splice moves bytes from the pipe to the file in the
// kernel, so a SIGKILL at any moment never loses bytes the reader already
// took out of the pipe: the file holds exactly what this reader consumed.
// With `bytes_per_second` > 0 it reads no faster than that (a consumer
// slower than the stream's bursts, so that the pipe is full when it dies).
// The process is a plain fork of the test (no exec); it dies with the test
// (PR_SET_PDEATHSIG). Start it from the test's main thread.
class FifoReader {
 public:
  FifoReader(const std::string& fifo, const std::string& out_path, uint64_t bytes_per_second = 0)
      : out_path_(out_path) {
    const size_t chunk = bytes_per_second > 0 ? 4096 : 1 << 16;
    const long pause_ns =
        bytes_per_second > 0 ? static_cast<long>(4096 * 1000000000ULL / bytes_per_second) : 0;
    const char* fifo_c = fifo.c_str();
    const char* out_c = out_path_.c_str();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // Only async-signal-safe calls from here on.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::close_range(3, ~0U, 0);  // no descriptor of the test (sockets...) kept
      int out = ::open(out_c, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out < 0) ::_exit(2);
      int in = ::open(fifo_c, O_RDONLY | O_CLOEXEC);
      if (in < 0) ::_exit(3);
      for (;;) {
        ssize_t n = ::splice(in, nullptr, out, nullptr, chunk, SPLICE_F_MOVE);
        if (n == 0) ::_exit(0);
        if (n < 0 && errno != EINTR) ::_exit(4);
        if (n > 0 && pause_ns > 0) {
          struct timespec ts = {pause_ns / 1000000000L, pause_ns % 1000000000L};
          ::nanosleep(&ts, nullptr);
        }
      }
    }
    pid_ = pid;
  }
  ~FifoReader() { Kill(); }
  FifoReader(const FifoReader&) = delete;
  FifoReader& operator=(const FifoReader&) = delete;

  pid_t pid() const { return pid_; }

  // Whether it still runs (reaping it if it has just ended).
  bool Running() {
    Poll();
    return !reaped_;
  }

  // SIGKILL, and reap.
  void Kill() {
    if (reaped_) return;
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }

  // Waits up to `timeout` for it to end; its exit code, 128 + N if signal N
  // ended it, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout) {
    WaitFor([&] { return Poll(); }, timeout, std::chrono::milliseconds(10));
    return reaped_ ? code_ : -1;
  }

  // What it has taken so far.
  uint64_t bytes() const { return FileSize(out_path_); }
  std::string Output() const { return FileExists(out_path_) ? ReadFile(out_path_) : ""; }

 private:
  bool Poll() {
    if (reaped_) return true;
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else if (r < 0 && errno != EINTR) {
      reaped_ = true;  // not ours any more; nothing to wait for
    }
    return reaped_;
  }

  std::string out_path_;
  pid_t pid_ = 0;
  bool reaped_ = false;
  int code_ = -1;
};

}  // namespace pgslotd::test::fault
