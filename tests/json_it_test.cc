// format json (pgoutput decoded by pgslotd) against a real server: every
// value of a type-rich row compared with the server's own text for it, and
// every op, identity and streaming case the format documents.
#include <libpq-fe.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "daemon_fixture.h"
#include "json_parse.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

bool SameJson(const Json& a, const Json& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Json::Kind::kNull:
      return true;
    case Json::Kind::kBool:
      return a.boolean == b.boolean;
    case Json::Kind::kNumber:
      return std::stod(a.text) == std::stod(b.text);
    case Json::Kind::kString:
      return a.text == b.text;
    case Json::Kind::kArray:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!SameJson(a.items[i], b.items[i])) return false;
      }
      return true;
    case Json::Kind::kObject: {
      if (a.members.size() != b.members.size()) return false;
      for (const auto& [k, v] : a.members) {
        if (!b.Has(k) || !SameJson(v, b[k])) return false;
      }
      return true;
    }
  }
  return false;
}

class JsonFormatTest : public DaemonTest {
 protected:
  // A new table `name` (id serial primary key, v text) in a new publication
  // `name`_pub of its own.
  void FreshPublishedTable(const std::string& name) {
    pg_->Exec("DROP TABLE IF EXISTS " + name + "; DROP PUBLICATION IF EXISTS " + name +
              "_pub; CREATE TABLE " + name + "(id serial PRIMARY KEY, v text); " +
              "CREATE PUBLICATION " + name + "_pub FOR TABLE " + name);
  }

  // The columns of `kinds` and how the format maps each one.
  enum class As { kNumber, kFloat, kString, kBool, kJson };
  const std::vector<std::pair<std::string, As>> kColumns = {
      {"s", As::kNumber},  {"i", As::kNumber},  {"b", As::kNumber},   {"o", As::kNumber},
      {"r", As::kFloat},   {"d", As::kFloat},   {"n", As::kString},   {"t", As::kBool},
      {"j", As::kJson},    {"jb", As::kJson},   {"txt", As::kString}, {"by", As::kString},
      {"ts", As::kString}, {"dt", As::kString}, {"u", As::kString},   {"arr", As::kString},
      {"iv", As::kString}, {"m", As::kString},  {"p", As::kString},   {"big", As::kString},
  };

  // Checks one JSON value against the server's text for it.
  void ExpectValue(const std::string& column, As as, const Json& got, const std::string& text,
                   bool is_null) {
    SCOPED_TRACE("column " + column + ", server text: " + text);
    if (is_null) {
      EXPECT_EQ(got.kind, Json::Kind::kNull);
      return;
    }
    switch (as) {
      case As::kNumber:
        ASSERT_EQ(got.kind, Json::Kind::kNumber);
        EXPECT_EQ(got.text, text);
        break;
      case As::kFloat:
        if (text == "NaN" || text == "Infinity" || text == "-Infinity") {
          ASSERT_EQ(got.kind, Json::Kind::kString);
          EXPECT_EQ(got.text, text);
        } else {
          ASSERT_EQ(got.kind, Json::Kind::kNumber);
          EXPECT_EQ(got.text, text);
        }
        break;
      case As::kString:
        ASSERT_EQ(got.kind, Json::Kind::kString);
        EXPECT_EQ(got.text, text);
        break;
      case As::kBool:
        ASSERT_EQ(got.kind, Json::Kind::kBool);
        EXPECT_EQ(got.boolean, text == "true");
        break;
      case As::kJson:
        EXPECT_TRUE(SameJson(got, JsonParser::Parse(text)));
        break;
    }
  }

  // The server's text of every column of kinds row `id` (and NULL flags).
  std::map<std::string, std::pair<std::string, bool>> ServerRow(int id) {
    std::map<std::string, std::pair<std::string, bool>> row;
    for (const auto& [c, as] : kColumns) {
      (void)as;
      std::string isnull = pg_->Scalar(
          "SELECT (" + c + " IS NULL)::text FROM kinds WHERE id = " + std::to_string(id));
      std::string text = pg_->Scalar("SELECT coalesce(" + c +
                                     "::text, '') FROM kinds WHERE id = " + std::to_string(id));
      row[c] = {text, isnull == "true"};
    }
    return row;
  }
};

TEST_F(JsonFormatTest, EveryKindOpAndStreamedTransactionAsTheServerSeesIt) {
  pg_->Exec(R"(
    DROP PUBLICATION IF EXISTS js_pub;
    DROP TABLE IF EXISTS kinds, full_id, keyed, streamed;
    DROP TYPE IF EXISTS mood; DROP DOMAIN IF EXISTS posint;
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN posint AS int CHECK (VALUE > 0);
    CREATE TABLE kinds(id int PRIMARY KEY, s smallint, i int, b bigint, o oid, r real,
      d double precision, n numeric, t boolean, j json, jb jsonb, txt text, by bytea,
      ts timestamptz, dt date, u uuid, arr int[], iv interval, m mood, p posint, big text);
    ALTER TABLE kinds ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE TABLE full_id(id int PRIMARY KEY, v text);
    ALTER TABLE full_id REPLICA IDENTITY FULL;
    CREATE TABLE keyed(id int PRIMARY KEY, v text);
    CREATE TABLE streamed(id serial PRIMARY KEY, v text);
    CREATE PUBLICATION js_pub FOR TABLE kinds, full_id, keyed, streamed;
  )");
  pg_->Exec("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'");
  pg_->Exec("SELECT pg_reload_conf()");
  pg_->DropSlotIfExists("js_slot");
  pg_->CreateLogicalSlot("js_slot", "pgoutput");

  pg_->Exec(R"(INSERT INTO kinds VALUES (1, -32768, 2147483647, -9223372036854775808, 4000000000,
      1.5, 'NaN', 12345678901234567890.000000000001, true,
      '{"a": [1, 2.50, "x"], "b": null}', '{"k": {"n": 1e3}}',
      E'quote " back \\ slash\n tab\t bell\x07 ünïcødé ✓ 😀', '\x00ff10',
      '2026-11-25 07:35:10.123456+00', '2026-11-25', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '{1,NULL,3}', '1 day 02:03:04.5', 'happy', 42,
      (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)))");
  pg_->Exec("INSERT INTO kinds(id, r, d) VALUES (2, 'Infinity', '-Infinity')");
  pg_->Exec("INSERT INTO kinds(id) VALUES (3)");
  auto row1 = ServerRow(1);
  auto row2 = ServerRow(2);
  auto row3 = ServerRow(3);
  pg_->Exec("UPDATE kinds SET i = 7 WHERE id = 1");  // big stays: unchanged TOAST
  pg_->Exec(
      "INSERT INTO full_id VALUES (1, 'one'); UPDATE full_id SET v = 'uno' WHERE id = 1; "
      "DELETE FROM full_id WHERE id = 1");
  pg_->Exec(
      "INSERT INTO keyed VALUES (1, 'k'); UPDATE keyed SET id = 2 WHERE id = 1; "
      "DELETE FROM keyed WHERE id = 2");
  pg_->Exec("INSERT INTO keyed VALUES (5, 'to be truncated'); TRUNCATE keyed");
  pg_->Exec("SELECT pg_logical_emit_message(true, 'app', 'in a transaction')");
  pg_->Exec("SELECT pg_logical_emit_message(false, 'audit', 'outside any transaction')");
  pg_->Exec("BEGIN; INSERT INTO keyed VALUES (99, 'rolled back'); ROLLBACK;");
  // Larger than logical_decoding_work_mem: streamed while in progress.
  // Its JSON (about 6 MB spooled) is more than the spool keeps in memory (4 MiB), one
  // replay piece and the slot's
  // buffer_size: it reaches the sink a piece at a time.
  pg_->Exec("INSERT INTO streamed(v) SELECT 'stream ok ' || g FROM generate_series(1, 50000) g");
  pg_->Exec(
      "BEGIN; INSERT INTO streamed(v) SELECT 'stream abort ' || g FROM "
      "generate_series(1, 3000) g; ROLLBACK;");
  pg_->Exec(
      "BEGIN; INSERT INTO streamed(v) SELECT 'sub keep ' || g FROM generate_series(1, 1500) g;"
      "SAVEPOINT s1; INSERT INTO streamed(v) SELECT 'sub drop ' || g FROM "
      "generate_series(1, 1500) g; ROLLBACK TO s1; "
      "INSERT INTO streamed(v) SELECT 'sub after ' || g FROM generate_series(1, 1500) g; "
      "COMMIT;");
  std::string end = pg_->CurrentWalLsn();

  std::string out = dir_->File("js.jsonl");
  std::string cfg = WriteConfig(
      Header() +
      SlotYaml("js_slot", "{type: file, path: " + out + "}",
               "    format: json\n    buffer_size: 256KiB\n"
               "    options: {proto_version: \"2\", publication_names: \"js_pub\", messages: "
               "\"true\", streaming: \"on\"}\n",
               "pgoutput"));
  Subprocess p;
  ASSERT_EQ(RunUntil(cfg, end, &p), 0);
  EXPECT_EQ(pg_->ConfirmedFlushLsn("js_slot"), end);
  EXPECT_NE(pg_->Scalar("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = "
                        "'js_slot'"),
            "0")
      << "the server did not stream: the test would not test the spool";

  std::vector<Json> lines;
  for (const std::string& l : SplitLines(ReadFile(out))) {
    ASSERT_NO_THROW(lines.push_back(JsonParser::Parse(l))) << l;
  }
  auto of = [&](const std::string& op, const std::string& table) {
    std::vector<const Json*> r;
    for (const Json& j : lines) {
      if (j["op"].text == op && (table.empty() || (j.Has("table") && j["table"].text == table))) {
        r.push_back(&j);
      }
    }
    return r;
  };
  // Every line carries lsn; change lines carry xid, commit_lsn, commit_time.
  for (const Json& j : lines) {
    ASSERT_TRUE(j.Has("lsn"));
    if (j["op"].text == "message") continue;
    ASSERT_TRUE(j.Has("xid") && j.Has("commit_lsn") && j.Has("commit_time"));
    EXPECT_EQ(j["commit_time"].text.size(), std::string("2026-11-25T07:35:10.123456Z").size());
  }

  auto inserts = of("insert", "kinds");
  ASSERT_EQ(inserts.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    const Json& row = (*inserts[k])["new"];
    auto& server = k == 0 ? row1 : k == 1 ? row2 : row3;
    EXPECT_EQ(row["id"].text, std::to_string(k + 1));
    for (const auto& [c, as] : kColumns) {
      ASSERT_TRUE(row.Has(c)) << c;
      ExpectValue(c, as, row[c], server[c].first, server[c].second);
    }
  }
  auto updates = of("update", "kinds");
  ASSERT_EQ(updates.size(), 1u);
  const Json& up = *updates[0];
  EXPECT_EQ(up["new"]["i"].text, "7");
  EXPECT_FALSE(up["new"].Has("big")) << "an unchanged TOAST value is never written";
  ASSERT_TRUE(up.Has("unchanged_toast"));
  ASSERT_EQ(up["unchanged_toast"].items.size(), 1u);
  EXPECT_EQ(up["unchanged_toast"].items[0].text, "big");
  EXPECT_FALSE(up.Has("old"));

  auto full_up = of("update", "full_id");
  ASSERT_EQ(full_up.size(), 1u);
  EXPECT_EQ((*full_up[0])["old"]["v"].text, "one") << "REPLICA IDENTITY FULL sends the old row";
  EXPECT_EQ((*full_up[0])["new"]["v"].text, "uno");
  auto full_del = of("delete", "full_id");
  ASSERT_EQ(full_del.size(), 1u);
  EXPECT_EQ((*full_del[0])["old"]["v"].text, "uno");

  auto key_up = of("update", "keyed");
  ASSERT_EQ(key_up.size(), 1u);
  EXPECT_EQ((*key_up[0])["old"]["id"].text, "1") << "a key change sends the old key";
  EXPECT_EQ((*key_up[0])["new"]["id"].text, "2");
  auto key_del = of("delete", "keyed");
  ASSERT_EQ(key_del.size(), 1u);
  EXPECT_EQ((*key_del[0])["old"]["id"].text, "2");

  auto truncs = of("truncate", "");
  ASSERT_EQ(truncs.size(), 1u);
  ASSERT_EQ((*truncs[0])["tables"].items.size(), 1u);
  EXPECT_EQ((*truncs[0])["tables"].items[0].text, "public.keyed");
  EXPECT_FALSE((*truncs[0])["cascade"].boolean);
  EXPECT_FALSE((*truncs[0])["restart_identity"].boolean);

  auto msgs = of("message", "");
  ASSERT_EQ(msgs.size(), 2u);
  std::map<std::string, const Json*> by_prefix;
  for (const Json* m : msgs) by_prefix[(*m)["prefix"].text] = m;
  EXPECT_TRUE((*by_prefix["app"])["transactional"].boolean);
  EXPECT_TRUE(by_prefix["app"]->Has("xid"));
  EXPECT_EQ((*by_prefix["app"])["content"].text, "in a transaction");
  EXPECT_FALSE((*by_prefix["audit"])["transactional"].boolean);
  EXPECT_FALSE(by_prefix["audit"]->Has("xid"));
  EXPECT_EQ((*by_prefix["audit"])["content"].text, "outside any transaction");

  std::string all = ReadFile(out);
  EXPECT_EQ(all.find("rolled back"), std::string::npos);
  EXPECT_EQ(all.find("stream abort"), std::string::npos);
  EXPECT_EQ(all.find("sub drop"), std::string::npos);
  std::map<std::string, int> streamed;
  for (const Json* j : of("insert", "streamed")) {
    std::string v = (*j)["new"]["v"].text;
    streamed[v.substr(0, v.rfind(' '))]++;
  }
  EXPECT_EQ(streamed["stream ok"], 50000);
  EXPECT_EQ(streamed["sub keep"], 1500);
  EXPECT_EQ(streamed["sub after"], 1500);
  EXPECT_EQ(streamed.size(), 3u);
  // Streamed lines come in commit order, each transaction whole.
  auto ins = of("insert", "streamed");
  ASSERT_EQ(ins.size(), 53000u);
  for (int k = 0; k < 50000; ++k) {
    ASSERT_EQ((*ins[k])["new"]["v"].text, "stream ok " + std::to_string(k + 1));
  }
  EXPECT_EQ((*ins[50000])["new"]["v"].text, "sub keep 1");
  EXPECT_EQ((*ins[52999])["new"]["v"].text, "sub after 1500");
  // No spool file is left behind.
  Subprocess ls;
  ls.Start({"/bin/sh", "-c", "ls " + dir_->path() + "/spool 2>/dev/null | wc -l"});
  ASSERT_EQ(ls.Wait(seconds(10)), 0);
  EXPECT_EQ(ls.Stdout(), "0\n");
}

// How the server sees a json or jsonb value: "sql null", "json null" (the
// document null) or "document".
using RowState = std::map<std::string, std::string>;

// Checks one tuple of a change line ("new" or "old") and its list of the
// columns holding the document null ("json_null" or "old_json_null"): SQL
// NULL and the document null are both null in text mode (a hex string for
// the document in binary mode), and only the document null is listed, in
// column order, right after the tuple, and the list only when non-empty.
void ExpectJsonNulls(const Json& line, const std::string& tuple, const std::string& list,
                     const RowState& want, bool binary) {
  SCOPED_TRACE(tuple);
  std::vector<std::string> listed;
  for (const char* c : {"j", "jb"}) {
    SCOPED_TRACE(std::string("column ") + c + ", " + want.at(c));
    const Json& v = line[tuple][c];
    if (want.at(c) == "json null") listed.push_back(c);
    if (want.at(c) == "sql null") {
      EXPECT_EQ(v.kind, Json::Kind::kNull);
    } else if (binary) {
      EXPECT_EQ(v.kind, Json::Kind::kString);
    } else {
      EXPECT_EQ(v.kind == Json::Kind::kNull, want.at(c) == "json null");
    }
  }
  std::vector<std::string> got;
  if (line.Has(list)) {
    for (const Json& item : line[list].items) got.push_back(item.text);
    EXPECT_FALSE(got.empty()) << list << " only when some column is listed";
    std::vector<std::string> keys = line.Keys();
    size_t at = std::find(keys.begin(), keys.end(), list) - keys.begin();
    ASSERT_GT(at, 0u);
    EXPECT_TRUE(keys[at - 1] == tuple || keys[at - 1] == "unchanged_toast") << keys[at - 1];
  }
  EXPECT_EQ(got, listed);
}

TEST_F(JsonFormatTest, TheDocumentNullIsToldApartFromSqlNullAsTheServerDoes) {
  pg_->Exec(R"(
    DROP PUBLICATION IF EXISTS jn_pub;
    DROP TABLE IF EXISTS jn;
    CREATE TABLE jn(id int PRIMARY KEY, j json, jb jsonb);
    ALTER TABLE jn REPLICA IDENTITY FULL;
    CREATE PUBLICATION jn_pub FOR TABLE jn;
  )");
  FreshSlots({"jn_text", "jn_binary"}, "pgoutput");
  auto state = [&](int id) {
    auto r = pg_->Rows(
        "SELECT j IS NULL, coalesce(json_typeof(j) = 'null', false), jb IS NULL, "
        "coalesce(jsonb_typeof(jb) = 'null', false) FROM jn WHERE id = " +
        std::to_string(id));
    auto of = [](const std::string& is_null, const std::string& is_doc_null) {
      return is_null == "t" ? "sql null" : is_doc_null == "t" ? "json null" : "document";
    };
    return RowState{{"j", of(r.at(0).at(0), r.at(0).at(1))},
                    {"jb", of(r.at(0).at(2), r.at(0).at(3))}};
  };
  // Each change as the server saw its rows: op, id, new and old.
  struct Change {
    std::string op;
    int id;
    RowState new_row, old_row;
  };
  std::vector<Change> changes;
  pg_->Exec(R"(INSERT INTO jn VALUES (1, 'null', 'null'), (2, NULL, NULL),
      (3, '{"a": null}', '[null]'), (4, ' null ', NULL), (5, NULL, 'null'))");
  for (int id = 1; id <= 5; ++id) changes.push_back({"insert", id, state(id), {}});
  const std::vector<std::pair<int, std::string>> updates = {{1, "j = NULL, jb = '{}'"},
                                                            {2, "j = 'null', jb = 'null'"},
                                                            {3, "jb = 'null'"},
                                                            {4, "j = 'null'"}};
  for (const auto& [id, set] : updates) {
    RowState before = state(id);
    pg_->Exec("UPDATE jn SET " + set + " WHERE id = " + std::to_string(id));
    changes.push_back({"update", id, state(id), before});
  }
  for (int id = 1; id <= 5; ++id) {
    changes.push_back({"delete", id, {}, state(id)});
    pg_->Exec("DELETE FROM jn WHERE id = " + std::to_string(id));
  }
  std::string end = pg_->CurrentWalLsn();
  int doc_nulls = 0;
  int sql_nulls = 0;
  for (const Change& c : changes) {
    for (const RowState* row : {&c.new_row, &c.old_row}) {
      for (const auto& [col, st] : *row) {
        doc_nulls += st == "json null";
        sql_nulls += st == "sql null";
      }
    }
  }
  ASSERT_GE(doc_nulls, 8) << "the workload must hold both kinds of null";
  ASSERT_GE(sql_nulls, 8);

  const char* kOptions = "    options: {proto_version: \"1\", publication_names: \"jn_pub\"";
  std::string cfg = WriteConfig(
      Header() +
      SlotYaml("jn_text", "{type: file, path: " + dir_->File("text.jsonl") + "}",
               "    format: json\n" + std::string(kOptions) + "}\n", "pgoutput") +
      SlotYaml("jn_binary", "{type: file, path: " + dir_->File("binary.jsonl") + "}",
               "    format: json\n" + std::string(kOptions) + ", binary: \"true\"}\n", "pgoutput"));
  Subprocess p;
  ASSERT_EQ(RunUntil(cfg, end, &p), 0);

  for (bool binary : {false, true}) {
    SCOPED_TRACE(binary ? "binary" : "text");
    std::vector<std::string> lines =
        SplitLines(ReadFile(dir_->File(binary ? "binary.jsonl" : "text.jsonl")));
    ASSERT_EQ(lines.size(), changes.size());
    for (size_t k = 0; k < lines.size(); ++k) {
      SCOPED_TRACE(lines[k]);
      Json line;
      ASSERT_NO_THROW(line = JsonParser::Parse(lines[k]));
      const Change& c = changes[k];
      ASSERT_EQ(line["op"].text, c.op);
      const Json& row = line[c.op == "delete" ? "old" : "new"];
      char hex[16];
      std::snprintf(hex, sizeof hex, "\\x%08x", c.id);
      EXPECT_EQ(row["id"].text, binary ? std::string(hex) : std::to_string(c.id));
      if (c.op != "delete") ExpectJsonNulls(line, "new", "json_null", c.new_row, binary);
      if (c.op != "insert") ExpectJsonNulls(line, "old", "old_json_null", c.old_row, binary);
      EXPECT_FALSE(c.op == "delete" && line.Has("json_null"));
      EXPECT_FALSE(c.op == "insert" && line.Has("old_json_null"));
    }
  }
}

// A json slot whose options name only its publication: pgslotd asks the
// server for protocol 2 with streaming (PostgreSQL 15 here), so a transaction
// larger than logical_decoding_work_mem is streamed while in progress rather
// than spilled to disk by the walsender, and the lines written are the same
// as those of a slot that asks for protocol 1 (the server spills instead).
TEST_F(JsonFormatTest, ByDefaultLargeTransactionsAreStreamedNotSpilledWithTheSameLines) {
  FreshPublishedTable("dflt");
  pg_->Exec("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'");
  pg_->Exec("SELECT pg_reload_conf()");
  for (const char* slot : {"dflt_default", "dflt_v1"}) {
    pg_->DropSlotIfExists(slot);
    pg_->CreateLogicalSlot(slot, "pgoutput");
  }
  pg_->Exec("INSERT INTO dflt(v) SELECT 'large ' || g FROM generate_series(1, 20000) g");
  pg_->Exec("INSERT INTO dflt(v) VALUES ('small')");
  std::string end = pg_->CurrentWalLsn();

  std::string cfg = WriteConfig(
      Header() +
      SlotYaml("dflt_default", "{type: file, path: " + dir_->File("default.jsonl") + "}",
               "    format: json\n    options: {publication_names: dflt_pub}\n", "pgoutput") +
      SlotYaml("dflt_v1", "{type: file, path: " + dir_->File("v1.jsonl") + "}",
               "    format: json\n    options: {proto_version: 1, publication_names: dflt_pub}\n",
               "pgoutput"));
  Subprocess p;
  ASSERT_EQ(RunUntil(cfg, end, &p), 0) << p.Stderr();
  pg_->Exec("ALTER SYSTEM RESET logical_decoding_work_mem");
  pg_->Exec("SELECT pg_reload_conf()");

  auto stat = [&](const char* column, const char* slot) {
    return pg_->Scalar(std::string("SELECT ") + column +
                       " FROM pg_stat_replication_slots WHERE slot_name = '" + slot + "'");
  };
  EXPECT_NE(stat("stream_txns", "dflt_default"), "0");
  EXPECT_EQ(stat("spill_txns", "dflt_default"), "0");
  EXPECT_EQ(stat("stream_txns", "dflt_v1"), "0");
  EXPECT_NE(stat("spill_txns", "dflt_v1"), "0");
  EXPECT_NE(p.Stderr().find("slot dflt_default: streaming from"), std::string::npos);
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    std::string log = p.Stderr();
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("(plugin pgoutput protocol 2, streaming in-progress transactions; "
                  "connection "),
            1u)
      << p.Stderr();
  EXPECT_EQ(count("(plugin pgoutput protocol 1; connection "), 1u) << p.Stderr();

  std::string streamed = ReadFile(dir_->File("default.jsonl"));
  EXPECT_EQ(SplitLines(streamed).size(), 20001u);
  EXPECT_EQ(streamed, ReadFile(dir_->File("v1.jsonl")));
  EXPECT_EQ(pg_->ConfirmedFlushLsn("dflt_default"), end);
}

// A streamed transaction still open on the server: its changes wait in the
// spool, past the spool's memory into a file, and the metrics say how many
// bytes are on disk; once it commits they reach the sink and the spool is
// empty again.
TEST_F(JsonFormatTest, TheMetricsShowTheSpoolOfAnOpenStreamedTransaction) {
  FreshPublishedTable("spooled");
  pg_->DropSlotIfExists("spooled_slot");
  pg_->CreateLogicalSlot("spooled_slot", "pgoutput");
  std::string metrics = dir_->File("metrics.prom");
  std::string out = dir_->File("spooled.jsonl");
  std::string cfg =
      WriteConfig(Header("postgres", "monitor_interval: 100ms\nmetrics_file: " + metrics + "\n") +
                  SlotYaml("spooled_slot", "{type: file, path: " + out + "}",
                           "    format: json\n    options: {publication_names: spooled_pub}\n"
                           "    connection: \"options='-c logical_decoding_work_mem=64kB'\"\n",
                           "pgoutput"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  auto gauge = [&](const std::string& family) -> long long {
    std::string text = FileExists(metrics) ? ReadFile(metrics) : "";
    std::string key = family + "{slot=\"spooled_slot\"} ";
    size_t at = text.find(key);
    return at == std::string::npos ? -1 : std::atoll(text.c_str() + at + key.size());
  };
  ASSERT_TRUE(WaitFor([&] { return gauge("pgslotd_spool_disk_bytes") == 0; }, seconds(30)))
      << p.Stderr();

  // About 7 MB of JSON (40000 lines of about 170 bytes), more than what the spool keeps in memory.
  PGconn* open_txn = PQconnectdb(pg_->Conninfo().c_str());
  ASSERT_EQ(PQstatus(open_txn), CONNECTION_OK) << PQerrorMessage(open_txn);
  auto exec = [&](const char* sql) {
    PGresult* r = PQexec(open_txn, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK;
  };
  ASSERT_TRUE(exec("BEGIN"));
  ASSERT_TRUE(exec("INSERT INTO spooled(v) SELECT 'open ' || g FROM generate_series(1, 40000) g"));
  // Streamed to pgslotd while still open, and spooled past memory to disk.
  EXPECT_TRUE(WaitFor([&] { return gauge("pgslotd_spool_disk_bytes") > 0; }, seconds(60)))
      << p.Stderr();
  EXPECT_FALSE(FileExists(out) && !ReadFile(out).empty()) << "nothing is written before the commit";
  ASSERT_TRUE(exec("COMMIT"));
  PQfinish(open_txn);
  std::string end = pg_->CurrentWalLsn();

  EXPECT_TRUE(WaitFor(
      [&] {
        return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + end +
                           "' FROM pg_replication_slots WHERE slot_name = 'spooled_slot'") == "t";
      },
      seconds(60)));
  EXPECT_TRUE(WaitFor([&] { return gauge("pgslotd_spool_disk_bytes") == 0; }, seconds(30)));
  EXPECT_EQ(gauge("pgslotd_spool_memory_bytes"), 0);
  EXPECT_EQ(SplitLines(ReadFile(out)).size(), 40000u);
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(seconds(30)), 0) << p.Stderr();
}

}  // namespace
}  // namespace pgslotd::test
