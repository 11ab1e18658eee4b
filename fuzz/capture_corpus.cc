// Captures real pgoutput messages from a throwaway PostgreSQL 15 cluster and
// writes them as seeds for pgoutput_fuzzer (fuzz/corpus).
//
//   capture_corpus OUT_DIR [JSON_DIR]
//
// Starts a private cluster (tests/pg_cluster.h), creates three pgoutput
// slots and a publication for all tables, runs a workload that produces
// every message type (inserts, updates with key and full old rows, deletes,
// unchanged TOAST values, truncate with CASCADE and RESTART IDENTITY,
// transactional and non-transactional logical messages, an enum type, a
// schema change, a replication origin, and with logical_decoding_work_mem =
// 64kB large transactions that are streamed: two interleaved ones, one with
// a rolled-back savepoint, one aborted), then streams each slot:
//   v1      proto_version 1
//   stream  proto_version 2, streaming on
//   binary  proto_version 2, binary on
// Each XLogData payload is one message. Seeds are windows of that message
// sequence in the fuzzer's framing (2-byte big-endian length + message):
// one per transaction or stream block (preceded by the Relation messages
// known at that point; the first three blocks of each streamed transaction),
// one per streamed transaction with all its blocks,
// and one for each whole capture, each kept below 60 KB by leaving out
// change messages past the first few of a block.
//
// As a check of the formatter against a real server, the JSON lines of each
// capture are printed to stdout (abridged), and in full to
// JSON_DIR/<tag>.jsonl when JSON_DIR is given.
//
// Build (from the repository root), one command:
//   g++ -std=c++17 -O1 -I src -I tests -I /usr/include/postgresql
//     fuzz/capture_corpus.cc tests/pg_cluster.cc src/pg/replication_conn.cc
//     src/pg/protocol.cc src/pg/quote.cc src/pg/lsn.cc src/decode/json.cc
//     src/decode/spool.cc src/decode/record_buffer.cc src/decode/pgoutput_formatter.cc src/sink/*.cc
//     -lpq -pthread -o /tmp/capture_corpus
// then: /tmp/capture_corpus fuzz/corpus
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "decode/pgoutput_formatter.h"
#include "pg/protocol.h"
#include "pg/quote.h"
#include "pg/replication_conn.h"
#include "pg_cluster.h"

namespace pgslotd {
namespace {

using Clock = std::chrono::steady_clock;
using Options = std::vector<std::pair<std::string, std::string>>;

constexpr size_t kMaxSeed = 60 * 1024;
constexpr char kEndPrefix[] = "capture-end";

struct Captured {
  Lsn lsn;
  std::string payload;
};

// A libpq session of our own, for statements that must interleave.
class Session {
 public:
  explicit Session(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(conn_));
  }
  ~Session() { PQfinish(conn_); }
  void Exec(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    ExecStatusType st = PQresultStatus(res);
    std::string err = PQresultErrorMessage(res);
    PQclear(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      throw std::runtime_error(sql + ": " + err);
    }
  }

 private:
  PGconn* conn_;
};

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(what + ": " + s.message());
}

void RunWorkload(test::PgCluster* c) {
  c->Exec(R"(
    INSERT INTO items VALUES
      (1, E'apple "red"\n\ttab \\ slash', 3, 9000000000, 12345.678901234567890, 'NaN',
       'Infinity', true, '{"a": [1, 2.5, "x"],
 "b": null}', '{"b": {"c": [true, false]}}', '2026-11-25 07:35:10.123456+00',
       '\x00ff10', 'happy', 42),
      (2, 'päär ✓ 😀', -1, -5, 'NaN', '-Infinity', 1.5e-7, false, '[]', '"s"', '2000-01-01',
       NULL, 'sad', 0);
  )");
  c->Exec("UPDATE items SET qty = qty + 1 WHERE id = 1");
  c->Exec("UPDATE items SET id = 10 WHERE id = 2");  // a key change: old key row
  c->Exec("DELETE FROM items WHERE id = 10");
  c->Exec("INSERT INTO full_ident VALUES (1, 'a'), (2, NULL)");
  c->Exec("UPDATE full_ident SET v = 'b' WHERE id = 1");
  c->Exec("DELETE FROM full_ident WHERE id = 2");
  c->Exec("INSERT INTO toasty VALUES (1, repeat('0123456789', 800), 1)");
  c->Exec("UPDATE toasty SET n = 2 WHERE id = 1");  // body unchanged: 'u'
  c->Exec("SELECT pg_logical_emit_message(true, 'app', 'transactional content')");
  c->Exec("SELECT pg_logical_emit_message(false, 'audit', '\\xdeadbeef00'::bytea)");
  c->Exec(
      "BEGIN; INSERT INTO items (id, name) VALUES (3, 'in tx');"
      "SELECT pg_logical_emit_message(true, 'app', 'with a change'); COMMIT");
  c->Exec("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)");
  c->Exec("TRUNCATE parent, child RESTART IDENTITY CASCADE");
  c->Exec("TRUNCATE full_ident");
  c->Exec("ALTER TABLE items ADD COLUMN extra text");
  c->Exec("INSERT INTO items (id, name, extra) VALUES (4, 'after alter', 'new column')");
  c->Exec(
      "SELECT pg_replication_origin_session_setup('upstream');"
      "INSERT INTO items (id, name) VALUES (5, 'from upstream')");

  // Large transactions, streamed with streaming on (64kB of changes).
  Session a(c->Conninfo());
  Session b(c->Conninfo());
  a.Exec("BEGIN");
  a.Exec("INSERT INTO big (payload) SELECT repeat('a', 150) FROM generate_series(1, 800)");
  b.Exec("BEGIN");
  b.Exec("INSERT INTO big (payload) SELECT repeat('b', 150) FROM generate_series(1, 800)");
  a.Exec("SAVEPOINT s1");
  a.Exec("INSERT INTO big (payload) SELECT 'rolled back' FROM generate_series(1, 600)");
  a.Exec("ROLLBACK TO SAVEPOINT s1");
  a.Exec("SAVEPOINT s2");
  a.Exec("UPDATE big SET payload = 'kept' WHERE id % 50 = 0");
  a.Exec("RELEASE SAVEPOINT s2");
  b.Exec("DELETE FROM big WHERE id % 7 = 0");
  a.Exec("INSERT INTO big (payload) SELECT repeat('c', 150) FROM generate_series(1, 700)");
  b.Exec("COMMIT");
  a.Exec("COMMIT");
  a.Exec("BEGIN");
  a.Exec("INSERT INTO big (payload) SELECT repeat('z', 150) FROM generate_series(1, 900)");
  a.Exec("ROLLBACK");
  c->Exec(std::string("SELECT pg_logical_emit_message(false, '") + kEndPrefix + "', '')");
}

bool IsEndMarker(const std::string& payload) {
  return payload.size() > 10 && payload[0] == 'M' &&
         payload.compare(10, sizeof kEndPrefix, kEndPrefix, sizeof kEndPrefix) == 0;
}

std::vector<Captured> Capture(test::PgCluster* c, const std::string& slot, const Options& options) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  std::atomic<bool> stop{false};
  std::vector<Captured> out;
  {
    ReplicationConn conn(fds[0], &stop);
    auto deadline = Clock::now() + std::chrono::seconds(60);
    Check(conn.Connect({{"host", c->socket_dir()},
                        {"port", std::to_string(c->port())},
                        {"user", "postgres"},
                        {"dbname", "postgres"},
                        {"replication", "database"}},
                       deadline),
          "connect");
    Check(conn.StartCopy(BuildStartReplication(slot, 0, options), deadline), "start");
    bool done = false;
    while (!done) {
      if (Clock::now() > deadline) throw std::runtime_error("capture timed out for " + slot);
      struct pollfd p = {conn.socket(), POLLIN, 0};
      ::poll(&p, 1, 200);
      Check(conn.ConsumeInput(), "read");
      for (;;) {
        char* buf = nullptr;
        int len = 0;
        Check(conn.GetCopyData(&buf, &len), "copy");
        if (len <= 0) break;
        ServerMessage m;
        Status s = ParseServerMessage(buf, static_cast<size_t>(len), &m);
        if (s.ok() && m.kind == ServerMessage::Kind::kXLogData) {
          std::string payload(m.payload);
          if (IsEndMarker(payload)) {
            done = true;
          } else {
            out.push_back({m.data_start, std::move(payload)});
          }
        } else if (s.ok() && m.reply_requested) {
          Check(conn.SendStatus(0, 0, false), "status");
        }
        PQfreemem(buf);
        Check(s, "parse");
      }
    }
    conn.Close();
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return out;
}

void PrintJson(const std::string& tag, const std::vector<Captured>& msgs,
               const std::string& json_dir) {
  std::ofstream full;
  if (!json_dir.empty()) full.open(json_dir + "/" + tag + ".jsonl", std::ios::binary);
  JsonOptions options;
  options.include_transactions = true;
  options.spool_memory = 4096;
  char tmpl[] = "/tmp/capture-spool-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  options.spool_dir = tmpl;
  {
    PgoutputFormatter f(options);
    RecordBuffer out(1 << 16);
    size_t lines = 0;
    std::map<char, size_t> types;
    for (const Captured& m : msgs) ++types[m.payload.empty() ? '?' : m.payload[0]];
    std::cout << "== " << tag << ": " << msgs.size() << " messages:";
    for (const auto& [type, count] : types) std::cout << " " << type << "=" << count;
    std::cout << "\n";
    for (const Captured& m : msgs) {
      Status s = f.Format(m.payload, m.lsn, &out);
      if (!s.ok()) throw std::runtime_error(tag + ": formatter: " + s.message());
      std::string text(out.data(), out.size());
      out.Clear();
      if (full.is_open()) full << text;
      // Long runs of the big table are summarized.
      size_t start = 0;
      for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string line = text.substr(start, nl - start);
        if (++lines <= 40 || line.find("\"table\":\"big\"") == std::string::npos) {
          std::cout << (line.size() > 400 ? line.substr(0, 400) + "..." : line) << "\n";
        }
      }
    }
    std::cout << "== " << tag << ": " << lines << " lines\n";
  }
  ::rmdir(tmpl);
}

// ---- seeds -------------------------------------------------------------------

uint32_t XidAt1(const std::string& m) {
  if (m.size() < 5) return 0;
  uint32_t v = 0;
  for (int i = 1; i < 5; ++i) v = (v << 8) | static_cast<uint8_t>(m[i]);
  return v;
}

bool IsChange(char t) { return t == 'I' || t == 'U' || t == 'D'; }

class SeedWriter {
 public:
  explicit SeedWriter(std::string dir) : dir_(std::move(dir)) {}

  // Frames `msgs`, leaving out change messages past `max_changes` per block
  // and any that would pass kMaxSeed.
  void Write(const std::string& name, const std::vector<const std::string*>& msgs,
             size_t max_changes) {
    std::string seed;
    size_t changes = 0;
    for (const std::string* m : msgs) {
      char t = m->empty() ? 0 : (*m)[0];
      if (t == 'B' || t == 'S') changes = 0;
      if (IsChange(t) && (++changes > max_changes || seed.size() + m->size() + 2 > kMaxSeed)) {
        continue;
      }
      if (m->size() > 0xFFFF || seed.size() + m->size() + 2 > kMaxSeed) continue;
      seed.push_back(static_cast<char>(m->size() >> 8));
      seed.push_back(static_cast<char>(m->size() & 0xFF));
      seed += *m;
    }
    if (seed.empty() || !seen_.insert(seed).second) return;
    std::ofstream f(dir_ + "/" + name, std::ios::binary);
    f.write(seed.data(), static_cast<std::streamsize>(seed.size()));
    if (!f) throw std::runtime_error("cannot write " + name);
    ++count_;
  }
  size_t count() const { return count_; }

 private:
  std::string dir_;
  std::set<std::string> seen_;
  size_t count_ = 0;
};

void WriteSeeds(const std::string& tag, const std::vector<Captured>& msgs, SeedWriter* w) {
  // Relation messages outside a stream block, by relation id; those from
  // inside one have their xid removed so they stand alone.
  std::map<uint32_t, std::string> relations;
  std::map<uint32_t, std::vector<const std::string*>> by_stream;  // xid -> blocks, abort, commit
  std::vector<const std::string*> all;
  std::vector<const std::string*> unit;
  bool in_stream = false;
  uint32_t stream_xid = 0;
  int n = 0;
  std::map<uint32_t, int> blocks_written;  // per streamed xid
  auto flush_unit = [&](const char* kind) {
    if (unit.empty()) return;
    bool streamed = unit.front()->front() == 'S';
    // Blocks of one transaction look alike: a few are enough.
    if (!streamed || ++blocks_written[XidAt1(*unit.front())] <= 3) {
      std::vector<const std::string*> seed;
      for (const auto& r : relations) seed.push_back(&r.second);
      seed.insert(seed.end(), unit.begin(), unit.end());
      char name[64];
      std::snprintf(name, sizeof name, "%s-%02d-%s", tag.c_str(), n++, kind);
      w->Write(name, seed, 4);
    }
    for (const std::string* m : unit) {
      if (m->empty() || (*m)[0] != 'R') continue;
      std::string r = *m;
      if (streamed) r.erase(1, 4);  // the xid
      relations[XidAt1(r)] = r;     // by relation id
    }
    unit.clear();
  };
  for (const Captured& c : msgs) {
    const std::string* m = &c.payload;
    char t = m->empty() ? 0 : (*m)[0];
    all.push_back(m);
    if (t == 'S') {
      flush_unit("misc");
      in_stream = true;
      stream_xid = XidAt1(*m);
    }
    if (t == 'B') flush_unit("misc");
    unit.push_back(m);
    if (in_stream) by_stream[stream_xid].push_back(m);
    if (t == 'c' || t == 'A') by_stream[XidAt1(*m)].push_back(m);
    if (t == 'C') flush_unit("txn");
    if (t == 'E') {
      in_stream = false;
      flush_unit("block");
    }
    if (t == 'c' || t == 'A') flush_unit(t == 'c' ? "stream-commit" : "stream-abort");
  }
  flush_unit("misc");
  for (const auto& [xid, stream] : by_stream) {
    char name[64];
    std::snprintf(name, sizeof name, "%s-streamed-%u", tag.c_str(), xid);
    w->Write(name, stream, 3);
  }
  w->Write(tag + "-all", all, 2);
}

int Main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::cerr << "usage: " << argv[0] << " OUT_DIR [JSON_DIR]\n";
    return 2;
  }
  std::string json_dir = argc == 3 ? argv[2] : "";
  std::unique_ptr<test::PgCluster> c = test::PgCluster::StartNew();
  c->Exec("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'");
  c->Exec("SELECT pg_reload_conf()");
  c->Exec(R"(
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE items (id int PRIMARY KEY, name text, qty int2, big int8, price numeric,
                        ratio float8, r4 float4, ok bool, doc json, docb jsonb,
                        at timestamptz, raw bytea, m mood, o oid);
    CREATE TABLE full_ident (id int, v text);
    ALTER TABLE full_ident REPLICA IDENTITY FULL;
    CREATE TABLE toasty (id int PRIMARY KEY, body text, n int);
    ALTER TABLE toasty ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE parent (id serial PRIMARY KEY);
    CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent);
    CREATE TABLE big (id serial PRIMARY KEY, payload text);
    CREATE PUBLICATION pub FOR ALL TABLES;
    SELECT pg_replication_origin_create('upstream');
  )");
  struct Slot {
    std::string tag;
    Options options;
  };
  std::vector<Slot> slots = {
      {"v1", {{"proto_version", "1"}, {"publication_names", "pub"}, {"messages", "true"}}},
      {"stream",
       {{"proto_version", "2"},
        {"publication_names", "pub"},
        {"messages", "true"},
        {"streaming", "on"}}},
      {"binary",
       {{"proto_version", "2"},
        {"publication_names", "pub"},
        {"messages", "true"},
        {"binary", "true"}}},
  };
  for (const Slot& s : slots) c->CreateLogicalSlot("cap_" + s.tag, "pgoutput");
  RunWorkload(c.get());

  SeedWriter writer(argv[1]);
  for (const Slot& s : slots) {
    std::vector<Captured> msgs = Capture(c.get(), "cap_" + s.tag, s.options);
    PrintJson(s.tag, msgs, json_dir);
    WriteSeeds(s.tag, msgs, &writer);
  }
  std::cerr << "wrote " << writer.count() << " seeds to " << argv[1] << "\n";
  return 0;
}

}  // namespace
}  // namespace pgslotd

int main(int argc, char** argv) {
  try {
    return pgslotd::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "capture_corpus: " << e.what() << "\n";
    return 1;
  }
}
