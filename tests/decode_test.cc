// The json format: pgoutput messages built by hand, byte by byte as the
// protocol chapter "Logical Replication Message Formats" describes them, and
// the exact lines the formatter writes for them.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "decode/json.h"
#include "decode/pgoutput_formatter.h"
#include "decode/primary_keys.h"
#include "pg/lsn.h"

namespace pgslotd {
namespace {

// ---- building messages ------------------------------------------------------

// One column of a TupleData part.
struct Val {
  char kind;
  std::string data;
};
Val T(std::string s) { return {'t', std::move(s)}; }
Val Null() { return {'n', ""}; }
Val Toast() { return {'u', ""}; }
Val Bin(std::string s) { return {'b', std::move(s)}; }

struct ColDef {
  std::string name;
  uint32_t type_oid;
  bool key = false;
};

// Writes a message's fields in network byte order.
class Msg {
 public:
  explicit Msg(char type) { s_.push_back(type); }
  Msg& I8(uint8_t v) {
    s_.push_back(static_cast<char>(v));
    return *this;
  }
  Msg& I16(uint16_t v) { return Int(v, 2); }
  Msg& I32(uint32_t v) { return Int(v, 4); }
  Msg& I64(uint64_t v) { return Int(v, 8); }
  Msg& Str(std::string_view v) {
    s_.append(v);
    s_.push_back('\0');
    return *this;
  }
  Msg& Raw(std::string_view v) {
    s_.append(v);
    return *this;
  }
  // The Int32 xid of a change inside a stream block (proto_version 2).
  Msg& Xid(std::optional<uint32_t> xid) {
    if (xid) I32(*xid);
    return *this;
  }
  Msg& Tuple(const std::vector<Val>& cols) {
    I16(static_cast<uint16_t>(cols.size()));
    for (const Val& v : cols) {
      I8(static_cast<uint8_t>(v.kind));
      if (v.kind == 't' || v.kind == 'b') {
        I32(static_cast<uint32_t>(v.data.size()));
        Raw(v.data);
      }
    }
    return *this;
  }
  std::string str() const { return s_; }

 private:
  Msg& Int(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) s_.push_back(static_cast<char>(v >> (8 * i)));
    return *this;
  }
  std::string s_;
};

using OptXid = std::optional<uint32_t>;

std::string Begin(uint64_t final_lsn, int64_t ts, uint32_t xid) {
  return Msg('B').I64(final_lsn).I64(static_cast<uint64_t>(ts)).I32(xid).str();
}
std::string Commit(uint64_t commit_lsn, uint64_t end_lsn, int64_t ts) {
  return Msg('C').I8(0).I64(commit_lsn).I64(end_lsn).I64(static_cast<uint64_t>(ts)).str();
}
std::string Origin(uint64_t lsn, std::string_view name) {
  return Msg('O').I64(lsn).Str(name).str();
}
std::string Relation(uint32_t id, std::string_view ns, std::string_view name,
                     const std::vector<ColDef>& cols, OptXid xid = {}) {
  Msg m('R');
  m.Xid(xid).I32(id).Str(ns).Str(name).I8('d').I16(static_cast<uint16_t>(cols.size()));
  for (const ColDef& c : cols) m.I8(c.key ? 1 : 0).Str(c.name).I32(c.type_oid).I32(0xFFFFFFFF);
  return m.str();
}
// A Relation message with replica identity `replident` ('d', 'f', 'i', 'n').
std::string RelationWithIdentity(char replident, uint32_t id, std::string_view name,
                                 const std::vector<ColDef>& cols) {
  Msg m('R');
  m.I32(id).Str("public").Str(name).I8(static_cast<uint8_t>(replident));
  m.I16(static_cast<uint16_t>(cols.size()));
  for (const ColDef& c : cols) m.I8(c.key ? 1 : 0).Str(c.name).I32(c.type_oid).I32(0xFFFFFFFF);
  return m.str();
}
std::string Type(uint32_t oid, std::string_view ns, std::string_view name, OptXid xid = {}) {
  return Msg('Y').Xid(xid).I32(oid).Str(ns).Str(name).str();
}
std::string Insert(uint32_t rel, const std::vector<Val>& row, OptXid xid = {}) {
  return Msg('I').Xid(xid).I32(rel).I8('N').Tuple(row).str();
}
// old_kind: 0 (no old tuple), 'K' or 'O'.
std::string Update(uint32_t rel, char old_kind, const std::vector<Val>& old,
                   const std::vector<Val>& row, OptXid xid = {}) {
  Msg m('U');
  m.Xid(xid).I32(rel);
  if (old_kind) m.I8(static_cast<uint8_t>(old_kind)).Tuple(old);
  return m.I8('N').Tuple(row).str();
}
std::string Delete(uint32_t rel, char kind, const std::vector<Val>& old, OptXid xid = {}) {
  return Msg('D').Xid(xid).I32(rel).I8(static_cast<uint8_t>(kind)).Tuple(old).str();
}
std::string Truncate(const std::vector<uint32_t>& rels, uint8_t options, OptXid xid = {}) {
  Msg m('T');
  m.Xid(xid).I32(static_cast<uint32_t>(rels.size())).I8(options);
  for (uint32_t r : rels) m.I32(r);
  return m.str();
}
std::string Message(bool transactional, std::string_view prefix, std::string_view content,
                    OptXid xid = {}) {
  return Msg('M')
      .Xid(xid)
      .I8(transactional ? 1 : 0)
      .I64(0x16B3700)
      .Str(prefix)
      .I32(static_cast<uint32_t>(content.size()))
      .Raw(content)
      .str();
}
std::string StreamStart(uint32_t xid, bool first) {
  return Msg('S').I32(xid).I8(first ? 1 : 0).str();
}
std::string StreamStop() { return Msg('E').str(); }
std::string StreamCommit(uint32_t xid, uint64_t commit_lsn, uint64_t end_lsn, int64_t ts) {
  return Msg('c').I32(xid).I8(0).I64(commit_lsn).I64(end_lsn).I64(static_cast<uint64_t>(ts)).str();
}
std::string StreamAbort(uint32_t xid, uint32_t subxid) {
  return Msg('A').I32(xid).I32(subxid).str();
}

// ---- fixture ----------------------------------------------------------------

constexpr int64_t kTs = 848907310123456;  // 2026-11-25T07:35:10.123456Z
constexpr char kTsText[] = "2026-11-25T07:35:10.123456Z";
constexpr uint64_t kFinal = 0x16B3800;
constexpr uint32_t kXid = 758;
constexpr uint32_t kOrders = 16384;
constexpr Lsn kLsn = 0x16B3748;

// The header every change of the standard transaction starts with.
std::string Head(std::string_view op, std::string_view lsn = "0/16B3748") {
  return std::string("{\"op\":\"") + std::string(op) + "\",\"lsn\":\"" + std::string(lsn) +
         "\",\"xid\":758,\"commit_lsn\":\"0/16B3800\",\"commit_time\":\"" + kTsText + "\"";
}

class DecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgslotd-decode-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.spool_dir = dir_ + "/spool";
    options_.slot_name = "s1";
  }
  void TearDown() override {
    formatter_.reset();
    std::filesystem::remove_all(dir_);
  }

  PgoutputFormatter& F() {
    if (!formatter_) formatter_ = std::make_unique<PgoutputFormatter>(options_);
    return *formatter_;
  }
  Status Try(const std::string& msg, Lsn lsn = kLsn) { return F().Format(msg, lsn, &out_); }
  void Feed(const std::string& msg, Lsn lsn = kLsn) {
    Status s = Try(msg, lsn);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  // Everything written so far, consumed.
  std::string Take() {
    std::string s(out_.data(), out_.size());
    out_.Clear();
    return s;
  }
  std::vector<std::string> Lines() {
    std::vector<std::string> lines;
    std::string all = Take();
    size_t start = 0;
    for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(all.substr(start, nl - start));
    }
    EXPECT_EQ(start, all.size()) << "output does not end with a newline";
    return lines;
  }
  std::vector<std::string> SpoolFiles() {
    std::vector<std::string> names;
    if (!std::filesystem::exists(options_.spool_dir)) return names;
    for (const auto& e : std::filesystem::directory_iterator(options_.spool_dir)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }
  // The standard table public.orders (id int4 key, item text) and an open
  // transaction 758.
  void BeginOrders() {
    Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
    Feed(Begin(kFinal, kTs, kXid));
  }
  void ExpectError(const std::string& msg, const std::string& expected) {
    size_t before = out_.size();
    Status s = Try(msg);
    EXPECT_EQ(s.code(), Status::Code::kRetryable) << expected;
    EXPECT_EQ(s.message(), expected);
    EXPECT_EQ(out_.size(), before) << "an error must append nothing: " << expected;
  }

  std::string dir_;
  JsonOptions options_;
  std::unique_ptr<PgoutputFormatter> formatter_;
  RecordBuffer out_{256};
};

// ---- changes ---------------------------------------------------------------

TEST_F(DecodeTest, InsertLineMatchesTheDocumentedExample) {
  BeginOrders();
  Feed(Insert(kOrders, {T("1"), T("book")}));
  EXPECT_EQ(Take(),
            "{\"op\":\"insert\",\"lsn\":\"0/16B3748\",\"xid\":758,\"commit_lsn\":\"0/16B3800\","
            "\"commit_time\":\"2026-11-25T07:35:10.123456Z\",\"schema\":\"public\",\"table\":"
            "\"orders\",\"new\":{\"id\":1,\"item\":\"book\"}}\n");
  Feed(Commit(kFinal, kFinal + 0x30, kTs));
  EXPECT_EQ(Take(), "");  // no begin/commit lines by default
}

TEST_F(DecodeTest, FramesTransactionsForExactlyOnceSinks) {
  Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
  EXPECT_FALSE(formatter_->InTransaction());
  EXPECT_FALSE(formatter_->EndedTransaction());
  Feed(Begin(kFinal, kTs, kXid));
  EXPECT_TRUE(formatter_->InTransaction());
  Feed(Insert(kOrders, {T("1"), T("book")}));
  EXPECT_TRUE(formatter_->InTransaction());
  EXPECT_FALSE(formatter_->EndedTransaction());
  Feed(Commit(kFinal, kFinal + 0x30, kTs));
  EXPECT_FALSE(formatter_->InTransaction());
  EXPECT_TRUE(formatter_->EndedTransaction());
  Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
  EXPECT_FALSE(formatter_->EndedTransaction());
  Feed(Begin(kFinal, kTs, kXid));
  formatter_->Reset();  // a new stream: nothing is open
  EXPECT_FALSE(formatter_->InTransaction());
}

TEST(RawFramingTest, FollowsEachPluginsTransactionMarkers) {
  RecordBuffer out(64);
  auto feed = [&out](RawFormatter* f, const std::string& line) {
    ASSERT_TRUE(f->Format(line, 1, &out).ok());
  };
  RawFormatter td(RawFramingFor("test_decoding", {}));
  feed(&td, "BEGIN 758");
  EXPECT_TRUE(td.InTransaction());
  feed(&td, "table public.t: INSERT: id[integer]:1");
  EXPECT_TRUE(td.InTransaction());
  feed(&td, "COMMIT 758 (at 2026-11-25 10:00:00+00)");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_TRUE(td.EndedTransaction());
  feed(&td, "message: transactional: 0 prefix: p, sz: 1 content:x");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_FALSE(td.EndedTransaction());
  feed(&td, "BEGIN");  // include-xids off
  EXPECT_TRUE(td.InTransaction());
  feed(&td, "COMMIT");
  EXPECT_TRUE(td.EndedTransaction());
  feed(&td, "BEGINNING is not a keyword");
  EXPECT_FALSE(td.InTransaction());
  feed(&td, "BEGIN 759");  // two-phase: the prepare ends the transaction's output
  feed(&td, "PREPARE TRANSACTION 'g1', txid 759");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_TRUE(td.EndedTransaction());
  feed(&td, "ROLLBACK PREPARED 'g1', txid 759");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_TRUE(td.EndedTransaction());
  feed(&td, "COMMIT PREPARED 'g2', txid 760");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_TRUE(td.EndedTransaction());
  // stream-changes: a block is framed like a transaction, the commit of a
  // streamed transaction is a unit by itself.
  feed(&td, "opening a streamed block for transaction TXN 761");
  EXPECT_TRUE(td.InTransaction());
  feed(&td, "streaming change for TXN 761");
  EXPECT_TRUE(td.InTransaction());
  EXPECT_FALSE(td.EndedTransaction());
  feed(&td, "closing a streamed block for transaction TXN 761");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_FALSE(td.EndedTransaction());
  feed(&td, "committing streamed transaction TXN 761");
  EXPECT_FALSE(td.InTransaction());
  EXPECT_TRUE(td.EndedTransaction());
  feed(&td, "BEGIN 762");
  feed(&td, "");  // an empty message changes nothing
  EXPECT_TRUE(td.InTransaction());
  EXPECT_FALSE(td.EndedTransaction());
  feed(&td, "COMMITTED is not a keyword");
  EXPECT_TRUE(td.InTransaction());

  RawFormatter v2(RawFramingFor("wal2json", {{"format-version", "2"}}));
  feed(&v2, R"({"action":"B","xid":758})");
  EXPECT_TRUE(v2.InTransaction());
  feed(&v2, R"({"action":"I","schema":"public","table":"t"})");
  EXPECT_TRUE(v2.InTransaction());
  feed(&v2, R"({"action")");  // too short to be anything
  EXPECT_TRUE(v2.InTransaction());
  feed(&v2, R"({"action":"Cx")");  // C at index 11, but not the action "C"
  EXPECT_TRUE(v2.InTransaction());
  feed(&v2, R"({"action":"C","xid":758})");
  EXPECT_FALSE(v2.InTransaction());
  EXPECT_TRUE(v2.EndedTransaction());

  RawFormatter v1(RawFramingFor("wal2json", {}));
  feed(&v1, R"({"xid":758,"change":[]})");
  EXPECT_FALSE(v1.InTransaction());
  EXPECT_TRUE(v1.EndedTransaction());
  feed(&v1, R"({"change":[{"kind":"message","transactional":false,"prefix":"p","content":"x"}]})");
  EXPECT_FALSE(v1.EndedTransaction());  // not a transaction: known by its own start
  EXPECT_EQ(RawFramingFor("wal2json", {{"write-in-chunks", "1"}}), RawFraming::kNone);
  EXPECT_EQ(RawFramingFor("pgoutput", {}), RawFraming::kPgoutput);
  EXPECT_EQ(RawFramingFor("decoderbufs", {}), RawFraming::kNone);

  RawFormatter other(RawFraming::kNone);
  feed(&other, "BEGIN 1");
  EXPECT_FALSE(other.InTransaction());
}

TEST_F(DecodeTest, BeginAndCommitLinesWithIncludeTransactions) {
  options_.include_transactions = true;
  Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
  Feed(Begin(kFinal, kTs, kXid), 0x16B3700);
  Feed(Insert(kOrders, {T("1"), T("book")}));
  Feed(Commit(kFinal, kFinal + 0x30, kTs), 0x16B3830);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], Head("begin", "0/16B3700") + "}");
  EXPECT_EQ(lines[1], Head("insert") +
                          ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":1,"
                          "\"item\":\"book\"}}");
  EXPECT_EQ(lines[2], Head("commit", "0/16B3830") + "}");
}

TEST_F(DecodeTest, UpdateWithoutOldRow) {
  BeginOrders();
  Feed(Update(kOrders, 0, {}, {T("1"), T("pen")}));
  EXPECT_EQ(Take(), Head("update") +
                        ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":1,\"item\":"
                        "\"pen\"}}\n");
}

TEST_F(DecodeTest, UpdateWithKeyOldRowListsOnlyKeyColumns) {
  BeginOrders();
  Feed(Update(kOrders, 'K', {T("1"), Null()}, {T("2"), T("pen")}));
  EXPECT_EQ(Take(), Head("update") +
                        ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":2,\"item\":"
                        "\"pen\"},\"old\":{\"id\":1}}\n");
}

TEST_F(DecodeTest, UpdateWithFullOldRow) {
  BeginOrders();
  Feed(Update(kOrders, 'O', {T("1"), Null()}, {T("1"), T("pen")}));
  EXPECT_EQ(Take(), Head("update") +
                        ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":1,\"item\":"
                        "\"pen\"},\"old\":{\"id\":1,\"item\":null}}\n");
}

TEST_F(DecodeTest, DeleteWithKeyAndWithFullOldRow) {
  BeginOrders();
  Feed(Delete(kOrders, 'K', {T("7"), Null()}));
  Feed(Delete(kOrders, 'O', {T("8"), T("cup")}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            Head("delete") + ",\"schema\":\"public\",\"table\":\"orders\",\"old\":{\"id\":7}}");
  EXPECT_EQ(lines[1], Head("delete") +
                          ",\"schema\":\"public\",\"table\":\"orders\",\"old\":{\"id\":8,\"item\":"
                          "\"cup\"}}");
}

TEST_F(DecodeTest, Truncate) {
  BeginOrders();
  Feed(Relation(16390, "sales", "lines", {{"id", 20, true}}));
  Feed(Truncate({kOrders, 16390}, 0));
  Feed(Truncate({16390}, 1));
  Feed(Truncate({kOrders}, 2));
  Feed(Truncate({kOrders}, 3));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], Head("truncate") +
                          ",\"tables\":[\"public.orders\",\"sales.lines\"],\"cascade\":false,"
                          "\"restart_identity\":false}");
  EXPECT_EQ(lines[1], Head("truncate") +
                          ",\"tables\":[\"sales.lines\"],\"cascade\":true,\"restart_identity\":"
                          "false}");
  EXPECT_EQ(lines[2], Head("truncate") +
                          ",\"tables\":[\"public.orders\"],\"cascade\":false,\"restart_identity\":"
                          "true}");
  EXPECT_EQ(lines[3], Head("truncate") +
                          ",\"tables\":[\"public.orders\"],\"cascade\":true,\"restart_identity\":"
                          "true}");
}

TEST_F(DecodeTest, TransactionalAndNonTransactionalMessages) {
  Feed(Message(false, "audit", "hello \"world\""), 0x100);
  EXPECT_EQ(Take(),
            "{\"op\":\"message\",\"lsn\":\"0/100\",\"transactional\":false,\"prefix\":\"audit\","
            "\"content\":\"hello \\\"world\\\"\"}\n");
  BeginOrders();
  Feed(Message(true, "app", "x\ny"));
  EXPECT_EQ(Take(),
            "{\"op\":\"message\",\"lsn\":\"0/16B3748\",\"xid\":758,\"transactional\":true,"
            "\"prefix\":\"app\",\"content\":\"x\\ny\"}\n");
}

TEST_F(DecodeTest, MessageContentThatIsNotUtf8IsWrittenAsLatin1) {
  Feed(Message(false, "bin", std::string("a\xff\x00\xe9", 4)), 0x100);
  EXPECT_EQ(Take(),
            "{\"op\":\"message\",\"lsn\":\"0/100\",\"transactional\":false,\"prefix\":\"bin\","
            "\"content\":\"a\\u00ff\\u0000\\u00e9\"}\n");
  // Valid UTF-8 passes through unchanged.
  Feed(Message(false, "utf8", "caf\xc3\xa9"), 0x100);
  EXPECT_EQ(Take(),
            "{\"op\":\"message\",\"lsn\":\"0/100\",\"transactional\":false,\"prefix\":\"utf8\","
            "\"content\":\"caf\xc3\xa9\"}\n");
}

// ---- values ----------------------------------------------------------------

// A one-column table of type `oid`, one insert of `v`; returns "new"'s value.
class ValueTest : public DecodeTest {
 protected:
  std::string ValueOf(uint32_t oid, const Val& v) {
    Feed(Relation(1, "public", "t", {{"c", oid}}));
    if (!in_txn_) Feed(Begin(kFinal, kTs, kXid));
    in_txn_ = true;
    Feed(Insert(1, {v}));
    std::string line = Take();
    std::string prefix = Head("insert") + ",\"schema\":\"public\",\"table\":\"t\",\"new\":{\"c\":";
    EXPECT_EQ(line.substr(0, prefix.size()), prefix);
    EXPECT_EQ(line.substr(line.size() - 3), "}}\n");
    if (line.size() < prefix.size() + 3) return "";
    return line.substr(prefix.size(), line.size() - prefix.size() - 3);
  }
  bool in_txn_ = false;
};

TEST_F(ValueTest, Integers) {
  EXPECT_EQ(ValueOf(21, T("-32768")), "-32768");
  EXPECT_EQ(ValueOf(23, T("2147483647")), "2147483647");
  EXPECT_EQ(ValueOf(20, T("-9223372036854775808")), "-9223372036854775808");
  EXPECT_EQ(ValueOf(26, T("4294967295")), "4294967295");
  EXPECT_EQ(ValueOf(23, T("0")), "0");
}

TEST_F(ValueTest, Floats) {
  EXPECT_EQ(ValueOf(700, T("1.5")), "1.5");
  EXPECT_EQ(ValueOf(701, T("-2.5e-07")), "-2.5e-07");
  EXPECT_EQ(ValueOf(701, T("1e+30")), "1e+30");
  EXPECT_EQ(ValueOf(701, T("-0")), "-0");
  EXPECT_EQ(ValueOf(700, T("NaN")), "\"NaN\"");
  EXPECT_EQ(ValueOf(701, T("Infinity")), "\"Infinity\"");
  EXPECT_EQ(ValueOf(701, T("-Infinity")), "\"-Infinity\"");
}

TEST_F(ValueTest, NumericIsAnExactString) {
  EXPECT_EQ(ValueOf(1700, T("12345678901234567890.123456789")),
            "\"12345678901234567890.123456789\"");
  EXPECT_EQ(ValueOf(1700, T("NaN")), "\"NaN\"");
}

TEST_F(ValueTest, Bool) {
  EXPECT_EQ(ValueOf(16, T("t")), "true");
  EXPECT_EQ(ValueOf(16, T("f")), "false");
}

TEST_F(ValueTest, JsonAndJsonbAreEmbedded) {
  EXPECT_EQ(ValueOf(114, T("{\"a\": [1, 2.5, \"x\\\"y\"], \"b\": null}")),
            "{\"a\": [1, 2.5, \"x\\\"y\"], \"b\": null}");
  EXPECT_EQ(ValueOf(3802, T("{\"k\": {\"n\": true}}")), "{\"k\": {\"n\": true}}");
  EXPECT_EQ(ValueOf(3802, T("\"just a string\"")), "\"just a string\"");
  EXPECT_EQ(ValueOf(114, T("42")), "42");
  // json keeps the whitespace it was given: line breaks become spaces.
  EXPECT_EQ(ValueOf(114, T("{\n  \"a\": 1\r\n}")), "{   \"a\": 1  }");
}

TEST_F(ValueTest, NullAndText) {
  EXPECT_EQ(ValueOf(23, Null()), "null");
  EXPECT_EQ(ValueOf(25, Null()), "null");
  EXPECT_EQ(ValueOf(25, T("")), "\"\"");
  EXPECT_EQ(ValueOf(1184, T("2026-11-25 07:35:10.123456+00")), "\"2026-11-25 07:35:10.123456+00\"");
  EXPECT_EQ(ValueOf(1043, T("varchar")), "\"varchar\"");
}

TEST_F(ValueTest, StringEscapes) {
  EXPECT_EQ(ValueOf(25, T("say \"hi\" \\ bye")), "\"say \\\"hi\\\" \\\\ bye\"");
  EXPECT_EQ(ValueOf(25, T("a\nb\tc\rd\be\ff")), "\"a\\nb\\tc\\rd\\be\\ff\"");
  EXPECT_EQ(ValueOf(25, T(std::string("\x01\x1f\x7f", 3))), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(ValueOf(25, T("/")), "\"/\"");
}

TEST_F(ValueTest, MultiByteUtf8PassesThrough) {
  EXPECT_EQ(ValueOf(25, T("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80")),
            "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
}

TEST_F(ValueTest, InvalidUtf8BecomesReplacementCharacters) {
  // A lone continuation byte, a truncated sequence, an overlong '/', a
  // UTF-16 surrogate: each byte that is not part of a valid sequence.
  EXPECT_EQ(ValueOf(25, T("a\x80z")), "\"a\\ufffdz\"");
  EXPECT_EQ(ValueOf(25, T("\xe2\x82")), "\"\\ufffd\\ufffd\"");
  EXPECT_EQ(ValueOf(25, T("\xc0\xaf")), "\"\\ufffd\\ufffd\"");
  EXPECT_EQ(ValueOf(25, T("\xed\xa0\x80")), "\"\\ufffd\\ufffd\\ufffd\"");
}

TEST_F(ValueTest, BinaryValuesAreHexStrings) {
  EXPECT_EQ(ValueOf(17, Bin(std::string("\x00\x01\xab\xff", 4))), "\"\\\\x0001abff\"");
  EXPECT_EQ(ValueOf(23, Bin(std::string("\x00\x00\x00\x07", 4))), "\"\\\\x00000007\"");
  EXPECT_EQ(ValueOf(17, Bin("")), "\"\\\\x\"");
}

TEST_F(ValueTest, ValuesThatDoNotFitTheirTypeBecomeStrings) {
  EXPECT_EQ(ValueOf(23, T("abc")), "\"abc\"");
  EXPECT_EQ(ValueOf(23, T("")), "\"\"");
  EXPECT_EQ(ValueOf(23, T("007")), "\"007\"");
  EXPECT_EQ(ValueOf(701, T("1.")), "\"1.\"");
  EXPECT_EQ(ValueOf(16, T("true")), "\"true\"");
  EXPECT_EQ(ValueOf(114, T("{\"a\":}")), "\"{\\\"a\\\":}\"");
  EXPECT_EQ(ValueOf(3802, T("[1,2")), "\"[1,2\"");
  EXPECT_EQ(ValueOf(114, T("1 2")), "\"1 2\"");
}

TEST_F(DecodeTest, UnchangedToastIsListedNotWrittenAsNull) {
  Feed(Relation(5, "public", "docs", {{"id", 23, true}, {"body", 25}, {"meta", 3802}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Update(5, 0, {}, {T("1"), Toast(), Toast()}));
  Feed(Update(5, 0, {}, {T("2"), Toast(), T("{}")}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], Head("update") +
                          ",\"schema\":\"public\",\"table\":\"docs\",\"new\":{\"id\":1},"
                          "\"unchanged_toast\":[\"body\",\"meta\"]}");
  EXPECT_EQ(lines[1],
            Head("update") +
                ",\"schema\":\"public\",\"table\":\"docs\",\"new\":{\"id\":2,\"meta\":{}},"
                "\"unchanged_toast\":[\"body\"]}");
}

// ---- the JSON document null and SQL NULL -----------------------------------

using namespace std::literals;

// public.docs: id int4 key, j json, jb jsonb, t text (a text "null" is a
// string, never a JSON null).
class JsonNullTest : public DecodeTest {
 protected:
  void BeginDocs() {
    Feed(Relation(6, "public", "docs", {{"id", 23, true}, {"j", 114}, {"jb", 3802}, {"t", 25}}));
    Feed(Begin(kFinal, kTs, kXid));
  }
  static constexpr char kDocs[] = ",\"schema\":\"public\",\"table\":\"docs\"";
};

TEST_F(JsonNullTest, InsertListsTheColumnsHoldingTheDocumentNull) {
  BeginDocs();
  Feed(Insert(6, {T("1"), T("null"), Null(), T("null")}));
  Feed(Insert(6, {T("2"), Null(), T("null"), Null()}));
  Feed(Insert(6, {T("3"), T(" null\n"), T("null"), T("x")}));  // json keeps its whitespace
  Feed(Insert(6, {T("4"), T("{\"a\": null}"), T("[null]"), Null()}));
  Feed(Insert(6, {T("5"), T("nul"), T("nulls"), Null()}));  // not JSON: strings
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], Head("insert") + kDocs +
                          ",\"new\":{\"id\":1,\"j\":null,\"jb\":null,\"t\":\"null\"},"
                          "\"json_null\":[\"j\"]}");
  EXPECT_EQ(lines[1], Head("insert") + kDocs +
                          ",\"new\":{\"id\":2,\"j\":null,\"jb\":null,\"t\":null},"
                          "\"json_null\":[\"jb\"]}");
  EXPECT_EQ(lines[2], Head("insert") + kDocs +
                          ",\"new\":{\"id\":3,\"j\": null ,\"jb\":null,\"t\":\"x\"},"
                          "\"json_null\":[\"j\",\"jb\"]}");
  EXPECT_EQ(lines[3], Head("insert") + kDocs +
                          ",\"new\":{\"id\":4,\"j\":{\"a\": null},\"jb\":[null],\"t\":null}}");
  EXPECT_EQ(lines[4], Head("insert") + kDocs +
                          ",\"new\":{\"id\":5,\"j\":\"nul\",\"jb\":\"nulls\",\"t\":null}}");
}

TEST_F(JsonNullTest, UpdateListsNewAndOldApartAfterUnchangedToast) {
  BeginDocs();
  // REPLICA IDENTITY FULL: the old row is whole.
  Feed(Update(6, 'O', {T("1"), T("null"), Null(), Null()}, {T("1"), Null(), T("null"), Null()}));
  Feed(Update(6, 'O', {T("2"), Null(), Null(), Null()}, {T("2"), T("null"), Toast(), T("t")}));
  Feed(Update(6, 'O', {T("3"), T("{}"), T("null"), Null()}, {T("3"), T("{}"), T("1"), Null()}));
  Feed(Update(6, 0, {}, {T("4"), T("[]"), T("{}"), Null()}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], Head("update") + kDocs +
                          ",\"new\":{\"id\":1,\"j\":null,\"jb\":null,\"t\":null},"
                          "\"json_null\":[\"jb\"],"
                          "\"old\":{\"id\":1,\"j\":null,\"jb\":null,\"t\":null},"
                          "\"old_json_null\":[\"j\"]}");
  EXPECT_EQ(lines[1], Head("update") + kDocs +
                          ",\"new\":{\"id\":2,\"j\":null,\"t\":\"t\"},"
                          "\"unchanged_toast\":[\"jb\"],\"json_null\":[\"j\"],"
                          "\"old\":{\"id\":2,\"j\":null,\"jb\":null,\"t\":null}}");
  EXPECT_EQ(lines[2], Head("update") + kDocs +
                          ",\"new\":{\"id\":3,\"j\":{},\"jb\":1,\"t\":null},"
                          "\"old\":{\"id\":3,\"j\":{},\"jb\":null,\"t\":null},"
                          "\"old_json_null\":[\"jb\"]}");
  EXPECT_EQ(lines[3],
            Head("update") + kDocs + ",\"new\":{\"id\":4,\"j\":[],\"jb\":{},\"t\":null}}");
}

TEST_F(JsonNullTest, DeleteListsTheOldRowsColumns) {
  BeginDocs();
  Feed(Delete(6, 'O', {T("1"), T("null"), T("null"), Null()}));
  Feed(Delete(6, 'O', {T("2"), Null(), Null(), Null()}));
  Feed(Delete(6, 'K', {T("3"), Null(), Null(), Null()}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], Head("delete") + kDocs +
                          ",\"old\":{\"id\":1,\"j\":null,\"jb\":null,\"t\":null},"
                          "\"old_json_null\":[\"j\",\"jb\"]}");
  EXPECT_EQ(lines[1],
            Head("delete") + kDocs + ",\"old\":{\"id\":2,\"j\":null,\"jb\":null,\"t\":null}}");
  EXPECT_EQ(lines[2], Head("delete") + kDocs + ",\"old\":{\"id\":3}}");
}

TEST_F(JsonNullTest, AJsonbKeyHoldingNullIsListedInAKeyOnlyOldRow) {
  Feed(Relation(7, "public", "by_doc", {{"k", 3802, true}, {"v", 25}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Update(7, 'K', {T("null"), Null()}, {T("{}"), T("v")}));
  Feed(Delete(7, 'K', {T("null"), Null()}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  std::string table = ",\"schema\":\"public\",\"table\":\"by_doc\"";
  EXPECT_EQ(lines[0], Head("update") + table +
                          ",\"new\":{\"k\":{},\"v\":\"v\"},\"old\":{\"k\":null},"
                          "\"old_json_null\":[\"k\"]}");
  EXPECT_EQ(lines[1], Head("delete") + table + ",\"old\":{\"k\":null},\"old_json_null\":[\"k\"]}");
}

TEST_F(JsonNullTest, BinaryValuesAreListedToo) {
  BeginDocs();
  // json's binary form is its text; jsonb's a version byte (1), then its text.
  Feed(Insert(6, {Bin("\0\0\0\1"s), Bin("null"), Bin("\1null"s), Bin("null")}));
  Feed(Insert(6, {Bin("\0\0\0\2"s), Null(), Null(), Null()}));
  Feed(Insert(6, {Bin("\0\0\0\3"s), Bin(" null"), Bin("\1{}"), Null()}));
  Feed(Insert(6, {Bin("\0\0\0\4"s), Bin("{}"), Bin("\2null"s), Null()}));  // unknown version
  Feed(Delete(6, 'O', {Bin("\0\0\0\1"s), Bin("null"), Bin("\1null"s), Null()}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0],
            Head("insert") + kDocs +
                ",\"new\":{\"id\":\"\\\\x00000001\",\"j\":\"\\\\x6e756c6c\",\"jb\":"
                "\"\\\\x016e756c6c\",\"t\":\"\\\\x6e756c6c\"},\"json_null\":[\"j\",\"jb\"]}");
  EXPECT_EQ(lines[1], Head("insert") + kDocs +
                          ",\"new\":{\"id\":\"\\\\x00000002\",\"j\":null,\"jb\":null,\"t\":null}}");
  EXPECT_EQ(lines[2], Head("insert") + kDocs +
                          ",\"new\":{\"id\":\"\\\\x00000003\",\"j\":\"\\\\x206e756c6c\",\"jb\":"
                          "\"\\\\x017b7d\",\"t\":null},\"json_null\":[\"j\"]}");
  EXPECT_EQ(lines[3], Head("insert") + kDocs +
                          ",\"new\":{\"id\":\"\\\\x00000004\",\"j\":\"\\\\x7b7d\",\"jb\":"
                          "\"\\\\x026e756c6c\",\"t\":null}}");
  EXPECT_EQ(lines[4], Head("delete") + kDocs +
                          ",\"old\":{\"id\":\"\\\\x00000001\",\"j\":\"\\\\x6e756c6c\",\"jb\":"
                          "\"\\\\x016e756c6c\",\"t\":null},\"old_json_null\":[\"j\",\"jb\"]}");
}

TEST_F(JsonNullTest, AStreamedChangeKeepsItsList) {
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Relation(6, "public", "docs", {{"id", 23, true}, {"j", 114}, {"jb", 3802}, {"t", 25}}, 900));
  Feed(Insert(6, {T("1"), T("null"), Null(), Null()}, 900), 0x1000010);
  Feed(StreamStop());
  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs), 0x2000000);
  std::string line = Take();
  EXPECT_NE(
      line.find(",\"new\":{\"id\":1,\"j\":null,\"jb\":null,\"t\":null},\"json_null\":[\"j\"]}\n"),
      std::string::npos)
      << line;
}

TEST_F(DecodeTest, NamesAreEscaped) {
  Feed(Relation(9, "My \"Schema\"", "t\\1", {{"col\n1", 25}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(9, {T("v")}));
  Feed(Truncate({9}, 0));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            Head("insert") +
                ",\"schema\":\"My \\\"Schema\\\"\",\"table\":\"t\\\\1\",\"new\":{\"col\\n1\":"
                "\"v\"}}");
  EXPECT_EQ(lines[1], Head("truncate") +
                          ",\"tables\":[\"My \\\"Schema\\\".t\\\\1\"],\"cascade\":false,"
                          "\"restart_identity\":false}");
}

// ---- relations, types, origins -----------------------------------------------

TEST_F(DecodeTest, RelationIsReplacedWhenSentAgain) {
  BeginOrders();
  Feed(Insert(kOrders, {T("1"), T("book")}));
  Feed(Commit(kFinal, kFinal, kTs));
  // ALTER TABLE orders ADD COLUMN qty int8; the server sends the relation again.
  Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}, {"qty", 20}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("2"), T("pen"), T("5")}));
  ExpectError(Insert(kOrders, {T("3"), T("cup")}),
              "pgoutput: tuple has 2 columns, relation public.orders has 3");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], Head("insert") +
                          ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":2,\"item\":"
                          "\"pen\",\"qty\":5}}");
  // A rename too.
  Feed(Relation(kOrders, "archive", "old_orders", {{"id", 23, true}}));
  Feed(Delete(kOrders, 'K', {T("2")}));
  EXPECT_EQ(Take(), Head("delete") +
                        ",\"schema\":\"archive\",\"table\":\"old_orders\",\"old\":{\"id\":2}}\n");
}

TEST_F(DecodeTest, TypeMessagesWriteNothing) {
  BeginOrders();
  Feed(Type(16500, "public", "mood"));
  EXPECT_EQ(Take(), "");
}

TEST_F(DecodeTest, OriginIsAddedToTheTransactionsChanges) {
  options_.include_transactions = true;
  Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Origin(0x5000, "node_a"));
  Feed(Insert(kOrders, {T("1"), T("book")}));
  Feed(Message(true, "p", "c"));
  Feed(Commit(kFinal, kFinal, kTs));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("2"), T("pen")}));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[1], Head("insert") +
                          ",\"origin\":\"node_a\",\"schema\":\"public\",\"table\":\"orders\","
                          "\"new\":{\"id\":1,\"item\":\"book\"}}");
  EXPECT_EQ(lines[2],
            "{\"op\":\"message\",\"lsn\":\"0/16B3748\",\"xid\":758,\"origin\":\"node_a\","
            "\"transactional\":true,\"prefix\":\"p\",\"content\":\"c\"}");
  // The next transaction has no origin.
  EXPECT_EQ(lines[5], Head("insert") +
                          ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":2,\"item\":"
                          "\"pen\"}}");
}

TEST_F(DecodeTest, ResetForgetsRelationsAndTheOpenTransaction) {
  BeginOrders();
  F().Reset();
  ExpectError(Insert(kOrders, {T("1"), T("book")}),
              "pgoutput: Insert message outside a transaction");
  Feed(Begin(kFinal, kTs, kXid));
  ExpectError(Insert(kOrders, {T("1"), T("book")}),
              "pgoutput: Insert message for unknown relation 16384");
}

// ---- streamed transactions ---------------------------------------------------

constexpr int64_t kTs2 = 762566399999999;  // 2024-02-29T23:59:59.999999Z

class StreamTest : public DecodeTest {
 protected:
  static std::string StreamedHead(std::string_view op, std::string_view lsn, uint32_t xid) {
    return std::string("{\"op\":\"") + std::string(op) + "\",\"lsn\":\"" + std::string(lsn) +
           "\",\"xid\":" + std::to_string(xid) +
           ",\"commit_lsn\":\"0/2000000\",\"commit_time\":\"2024-02-29T23:59:59.999999Z\"";
  }
  static std::string Row(uint32_t id) { return std::to_string(id); }
  const std::vector<ColDef> kCols = {{"id", 23, true}, {"note", 25}};
};

TEST_F(StreamTest, CommitWritesSpooledChangesInOrderAndAbortWritesNothing) {
  options_.spool_memory = 100;  // every few changes go to disk
  std::string pad(40, 'p');
  // xid 900: block 1.
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Relation(kOrders, "public", "orders", kCols, 900), 0x1000000);
  Feed(Insert(kOrders, {T("1"), T(pad)}, 900), 0x1000010);
  Feed(Insert(kOrders, {T("2"), T(pad)}, 900), 0x1000020);
  Feed(StreamStop());
  // xid 1000, interleaved: will abort.
  Feed(StreamStart(1000, true), 0x1000100);
  Feed(Insert(kOrders, {T("100"), T(pad)}, 1000), 0x1000110);
  Feed(Delete(kOrders, 'K', {T("100"), Null()}, 1000), 0x1000120);
  Feed(StreamStop());
  // An ordinary transaction between blocks goes out at once.
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("50"), T("now")}));
  Feed(Commit(kFinal, kFinal, kTs));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], Head("insert") +
                          ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":50,"
                          "\"note\":\"now\"}}");
  // xid 900: block 2.
  Feed(StreamStart(900, false), 0x1000200);
  Feed(Update(kOrders, 0, {}, {T("1"), T("changed")}, 900), 0x1000210);
  Feed(Truncate({kOrders}, 0, 900), 0x1000220);
  Feed(Message(true, "m", "in stream", 900), 0x1000230);
  Feed(StreamStop());
  EXPECT_EQ(Take(), "");
  EXPECT_TRUE(F().spool().Contains(900));
  EXPECT_TRUE(F().spool().Contains(1000));
  EXPECT_LE(F().spool().memory_used(), 100u);
  EXPECT_EQ(SpoolFiles().size(), 2u);

  Feed(StreamAbort(1000, 1000), 0x1000300);
  EXPECT_EQ(Take(), "");
  EXPECT_FALSE(F().spool().Contains(1000));
  ASSERT_EQ(SpoolFiles().size(), 1u);
  EXPECT_EQ(SpoolFiles()[0], "pgslotd-s1-" + std::to_string(::getpid()) + "-900.spool");

  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs2), 0x2000000);
  lines = Lines();
  ASSERT_EQ(lines.size(), 5u);
  std::string table = ",\"schema\":\"public\",\"table\":\"orders\"";
  EXPECT_EQ(lines[0], StreamedHead("insert", "0/1000010", 900) + table +
                          ",\"new\":{\"id\":1,\"note\":\"" + pad + "\"}}");
  EXPECT_EQ(lines[1], StreamedHead("insert", "0/1000020", 900) + table +
                          ",\"new\":{\"id\":2,\"note\":\"" + pad + "\"}}");
  EXPECT_EQ(lines[2], StreamedHead("update", "0/1000210", 900) + table +
                          ",\"new\":{\"id\":1,\"note\":\"changed\"}}");
  EXPECT_EQ(lines[3], StreamedHead("truncate", "0/1000220", 900) +
                          ",\"tables\":[\"public.orders\"],\"cascade\":false,\"restart_identity\":"
                          "false}");
  EXPECT_EQ(lines[4],
            "{\"op\":\"message\",\"lsn\":\"0/1000230\",\"xid\":900,\"transactional\":true,"
            "\"prefix\":\"m\",\"content\":\"in stream\"}");
  EXPECT_FALSE(F().spool().Contains(900));
  EXPECT_TRUE(SpoolFiles().empty());
  EXPECT_EQ(F().spool().memory_used(), 0u);
}

TEST_F(StreamTest, SubtransactionAbortDropsOnlyItsChanges) {
  for (uint64_t memory : {uint64_t{100}, uint64_t{1} << 20}) {  // on disk, in memory
    SCOPED_TRACE(memory);
    options_.spool_memory = memory;
    formatter_.reset();
    Feed(StreamStart(900, true), 0x1000000);
    Feed(Relation(kOrders, "public", "orders", kCols, 900));
    Feed(Insert(kOrders, {T("1"), T("top")}, 900), 0x1000010);
    Feed(Insert(kOrders, {T("2"), T("sub 901")}, 901), 0x1000020);
    Feed(Insert(kOrders, {T("3"), T("sub 902")}, 902), 0x1000030);
    Feed(StreamStop());
    Feed(StreamStart(900, false), 0x1000100);
    Feed(Insert(kOrders, {T("4"), T("sub 901 again")}, 901), 0x1000110);
    Feed(Insert(kOrders, {T("5"), T("top again")}, 900), 0x1000120);
    Feed(StreamStop());
    Feed(StreamAbort(900, 901), 0x1000200);  // ROLLBACK TO SAVEPOINT
    EXPECT_TRUE(F().spool().Contains(900));
    Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs2), 0x2000000);
    std::vector<std::string> lines = Lines();
    ASSERT_EQ(lines.size(), 3u);
    std::string table = ",\"schema\":\"public\",\"table\":\"orders\"";
    EXPECT_EQ(lines[0], StreamedHead("insert", "0/1000010", 900) + table +
                            ",\"new\":{\"id\":1,\"note\":\"top\"}}");
    EXPECT_EQ(lines[1], StreamedHead("insert", "0/1000030", 900) + table +
                            ",\"new\":{\"id\":3,\"note\":\"sub 902\"}}");
    EXPECT_EQ(lines[2], StreamedHead("insert", "0/1000120", 900) + table +
                            ",\"new\":{\"id\":5,\"note\":\"top again\"}}");
    EXPECT_TRUE(SpoolFiles().empty());
  }
}

TEST_F(StreamTest, IncludeTransactionsWrapsTheStreamedTransaction) {
  options_.include_transactions = true;
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Feed(Origin(0x42, "up"), 0x1000000);
  Feed(Insert(kOrders, {T("1"), T("a")}, 900), 0x1000010);
  Feed(StreamStop());
  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs2), 0x2000008);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], StreamedHead("begin", "0/1000000", 900) + "}");
  EXPECT_EQ(lines[1], StreamedHead("insert", "0/1000010", 900) +
                          ",\"origin\":\"up\",\"schema\":\"public\",\"table\":\"orders\",\"new\":{"
                          "\"id\":1,\"note\":\"a\"}}");
  EXPECT_EQ(lines[2], StreamedHead("commit", "0/2000008", 900) + "}");
}

TEST_F(StreamTest, NonTransactionalMessageInAStreamBlockGoesOutAtOnce) {
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Message(false, "now", "x", 900), 0x1000010);
  EXPECT_EQ(Take(),
            "{\"op\":\"message\",\"lsn\":\"0/1000010\",\"transactional\":false,\"prefix\":\"now\","
            "\"content\":\"x\"}\n");
  Feed(StreamStop());
  Feed(StreamAbort(900, 900));
  EXPECT_EQ(Take(), "");
}

TEST_F(StreamTest, ResetAndDestructionRemoveSpoolFiles) {
  options_.spool_memory = 10;
  Feed(StreamStart(900, true));
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Feed(Insert(kOrders, {T("1"), T("a")}, 900));
  EXPECT_EQ(SpoolFiles().size(), 1u);
  F().Reset();
  EXPECT_TRUE(SpoolFiles().empty());
  EXPECT_FALSE(F().spool().Contains(900));
  // After Reset we are outside any block again.
  ExpectError(StreamStop(), "pgoutput: Stream Stop message outside a streamed block");

  Feed(StreamStart(901, true));
  Feed(Relation(kOrders, "public", "orders", kCols, 901));
  Feed(Insert(kOrders, {T("1"), T("a")}, 901));
  EXPECT_EQ(SpoolFiles().size(), 1u);
  formatter_.reset();
  EXPECT_TRUE(SpoolFiles().empty());
}

TEST_F(StreamTest, SpoolFilesAreOwnerOnly) {
  options_.spool_memory = 10;
  Feed(StreamStart(900, true));
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Feed(Insert(kOrders, {T("1"), T("a")}, 900));
  ASSERT_EQ(SpoolFiles().size(), 1u);
  struct stat st;
  ASSERT_EQ(::stat((options_.spool_dir + "/" + SpoolFiles()[0]).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StreamTest, StaleSpoolFilesOfThisSlotAreClearedAtStartAndReset) {
  std::filesystem::create_directories(options_.spool_dir);
  auto make = [&](const std::string& n) {
    FILE* f = std::fopen((options_.spool_dir + "/" + n).c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  };
  // Files no process holds (see spool_test.cc for held ones).
  make("pgslotd-s1-999999999-5.spool");                           // removed
  make("pgslotd-s1-" + std::to_string(::getpid()) + "-6.spool");  // removed
  make("pgslotd-other-999999999-8.spool");                        // other slot: kept
  make("unrelated.txt");                                          // kept
  F();
  std::vector<std::string> left = SpoolFiles();
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"pgslotd-other-999999999-8.spool", "unrelated.txt"}));
  make("pgslotd-s1-123-9.spool");
  F().Reset();
  left = SpoolFiles();
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"pgslotd-other-999999999-8.spool", "unrelated.txt"}));
}

TEST_F(StreamTest, EmptySpoolDirKeepsEverythingInMemory) {
  options_.spool_dir.clear();
  options_.spool_memory = 10;
  Feed(StreamStart(900, true));
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Feed(Insert(kOrders, {T("1"), T("a")}, 900), 0x1000010);
  Feed(StreamStop());
  EXPECT_EQ(F().spool().files_open(), 0u);
  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs2));
  EXPECT_EQ(Take(), StreamedHead("insert", "0/1000010", 900) +
                        ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":1,\"note\":"
                        "\"a\"}}\n");
}

TEST_F(StreamTest, UnwritableSpoolDirIsRetryable) {
  std::string file = dir_ + "/plainfile";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  options_.spool_dir = file + "/spool";
  options_.spool_memory = 10;
  Feed(StreamStart(900, true));
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Status s = Try(Insert(kOrders, {T("1"), T("a")}, 900));
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_EQ(
      s.message().rfind("pgoutput: cannot create spool file " + file + "/spool/pgslotd-s1-", 0), 0u)
      << s.message();
}

TEST_F(StreamTest, CommitOfAnUnknownTransactionWritesNothing) {
  Feed(StreamCommit(4242, 0x2000000, 0x2000030, kTs2));
  EXPECT_EQ(Take(), "");
  Feed(StreamAbort(4242, 4243));
  EXPECT_EQ(Take(), "");
}

// ---- malformed input ---------------------------------------------------------

TEST_F(DecodeTest, MalformedMessagesAreRetryableWithPreciseMessages) {
  ExpectError("", "pgoutput: empty message");
  ExpectError("Z", "pgoutput: unknown message type 0x5a");
  ExpectError(std::string(1, '\xff'), "pgoutput: unknown message type 0xff");
  ExpectError("B", "pgoutput: truncated Begin message");
  ExpectError(Begin(kFinal, kTs, kXid).substr(0, 20), "pgoutput: truncated Begin message");
  ExpectError(Commit(kFinal, kFinal, kTs), "pgoutput: Commit message outside a transaction");
  ExpectError(Origin(1, "x").substr(0, 9), "pgoutput: truncated Origin message");
  ExpectError(Relation(kOrders, "public", "orders", {{"id", 23}}).substr(0, 12),
              "pgoutput: truncated Relation message");
  std::string rel = Relation(kOrders, "public", "orders", {{"id", 23}, {"item", 25}});
  ExpectError(rel.substr(0, rel.size() - 1), "pgoutput: truncated Relation message");
  ExpectError(Type(1, "a", "b").substr(0, 7), "pgoutput: truncated Type message");
  ExpectError(Insert(kOrders, {T("1")}), "pgoutput: Insert message outside a transaction");
  ExpectError(Truncate({kOrders}, 0), "pgoutput: Truncate message outside a transaction");
  ExpectError(Message(true, "p", "c"), "pgoutput: transactional Message outside a transaction");
  ExpectError(StreamStop(), "pgoutput: Stream Stop message outside a streamed block");

  BeginOrders();
  ExpectError(Begin(kFinal, kTs, kXid), "pgoutput: Begin message inside a transaction");
  ExpectError(StreamStart(5, true), "pgoutput: Stream Start message inside a transaction");
  ExpectError(StreamCommit(5, 1, 2, 3), "pgoutput: Stream Commit message inside a transaction");
  ExpectError(StreamAbort(5, 5), "pgoutput: Stream Abort message inside a transaction");
  ExpectError(Insert(16385, {T("1"), T("x")}),
              "pgoutput: Insert message for unknown relation 16385");
  ExpectError(Update(16385, 0, {}, {T("1")}),
              "pgoutput: Update message for unknown relation 16385");
  ExpectError(Delete(16385, 'K', {T("1")}), "pgoutput: Delete message for unknown relation 16385");
  ExpectError(Truncate({kOrders, 16385}, 0),
              "pgoutput: Truncate message for unknown relation 16385");
  Feed(Relation(7, "public", "t", {{"a", 23}, {"b", 23}}));
  ExpectError(Insert(7, {T("1"), T("2"), T("3")}),
              "pgoutput: tuple has 3 columns, relation public.t has 2");
  ExpectError(Update(7, 'O', {T("1")}, {T("1"), T("2")}),
              "pgoutput: tuple has 1 columns, relation public.t has 2");
  ExpectError(Msg('I').I32(7).I8('X').Tuple({T("1"), T("2")}).str(),
              "pgoutput: unexpected tuple type 0x58 in Insert message");
  ExpectError(Msg('U').I32(7).I8('K').Tuple({T("1"), T("2")}).I8('Q').Tuple({T("1"), T("2")}).str(),
              "pgoutput: unexpected tuple type 0x51 in Update message");
  ExpectError(Msg('D').I32(7).I8('N').Tuple({T("1"), T("2")}).str(),
              "pgoutput: unexpected tuple type 0x4e in Delete message");
  ExpectError(Msg('I').I32(7).I8('N').I16(2).I8('t').I32(1).Raw("1").I8('x').str(),
              "pgoutput: unknown column kind 0x78 in Insert message");
  ExpectError(Insert(7, {T("1"), T("2")}).substr(0, 10), "pgoutput: truncated Insert message");
  // A length that runs past the end of the message.
  ExpectError(Msg('I').I32(7).I8('N').I16(2).I8('t').I32(0x7FFFFFFF).Raw("1").str(),
              "pgoutput: truncated Insert message");
  ExpectError(Msg('I').I32(7).I8('N').I16(2).I8('t').I32(0xFFFFFFFF).str(),
              "pgoutput: truncated Insert message");
  ExpectError(Update(7, 'K', {T("1"), Null()}, {T("1"), T("2")}).substr(0, 17),
              "pgoutput: truncated Update message");
  ExpectError(Delete(7, 'K', {T("1"), Null()}).substr(0, 9), "pgoutput: truncated Delete message");
  ExpectError(Msg('T').I32(1000000).I8(0).I32(7).str(), "pgoutput: truncated Truncate message");
  ExpectError(Message(true, "p", "content").substr(0, 20), "pgoutput: truncated Message message");
  ExpectError(Msg('M').I8(1).I64(0).Str("p").I32(100).Raw("short").str(),
              "pgoutput: truncated Message message");
  ExpectError(Msg('M').I8(1).I64(0).Raw("no terminator").str(),
              "pgoutput: truncated Message message");
  Feed(Commit(kFinal, kFinal, kTs));

  ExpectError(StreamStart(5, true).substr(0, 4), "pgoutput: truncated Stream Start message");
  ExpectError(StreamCommit(5, 1, 2, 3).substr(0, 12), "pgoutput: truncated Stream Commit message");
  ExpectError(StreamAbort(5, 6).substr(0, 6), "pgoutput: truncated Stream Abort message");
  Feed(StreamStart(5, true));
  ExpectError(StreamStart(6, true), "pgoutput: Stream Start message inside a streamed block");
  ExpectError(Begin(kFinal, kTs, kXid), "pgoutput: Begin message inside a streamed block");
  ExpectError(Commit(kFinal, kFinal, kTs), "pgoutput: Commit message inside a streamed block");
  ExpectError(StreamCommit(5, 1, 2, 3), "pgoutput: Stream Commit message inside a streamed block");
  ExpectError(StreamAbort(5, 5), "pgoutput: Stream Abort message inside a streamed block");
  // Inside a block a change needs its xid.
  ExpectError(Msg('I').Raw(std::string(2, '\0')).str(), "pgoutput: truncated Insert message");
  ExpectError(Relation(8, "s", "t", {}, 5).substr(0, 3), "pgoutput: truncated Relation message");
  Feed(Relation(8, "s", "t", {{"a", 23}}, 5));
  ExpectError(Insert(8, {T("1"), T("2")}, 5), "pgoutput: tuple has 2 columns, relation s.t has 1");
  Feed(StreamStop());
}

TEST_F(DecodeTest, ABadRelationMessageLeavesTheCachedOneInPlace) {
  BeginOrders();
  std::string rel = Relation(kOrders, "x", "y", {{"a", 23}, {"b", 23}, {"c", 23}});
  ExpectError(rel.substr(0, rel.size() - 3), "pgoutput: truncated Relation message");
  Feed(Insert(kOrders, {T("1"), T("book")}));
  EXPECT_EQ(Take(), Head("insert") +
                        ",\"schema\":\"public\",\"table\":\"orders\",\"new\":{\"id\":1,\"item\":"
                        "\"book\"}}\n");
}

// Every prefix of every valid message is either accepted or rejected as
// kRetryable, and a rejected one writes nothing.
TEST_F(DecodeTest, EveryTruncationIsHandled) {
  std::vector<std::string> msgs = {
      Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}),
      Type(1, "public", "mood"),
      Origin(5, "o"),
      Insert(kOrders, {T("1"), Null()}),
      Update(kOrders, 'K', {T("1"), Null()}, {T("2"), Toast()}),
      Update(kOrders, 'O', {T("1"), Bin("xy")}, {T("2"), T("z")}),
      Delete(kOrders, 'O', {T("1"), T("x")}),
      Truncate({kOrders, kOrders}, 3),
      Message(true, "p", "content"),
      Message(false, "p", "content"),
  };
  for (const std::string& m : msgs) {
    for (size_t len = 0; len < m.size(); ++len) {
      SCOPED_TRACE(testing::Message() << "message " << m[0] << " cut to " << len);
      formatter_.reset();
      out_.Clear();
      Feed(Relation(kOrders, "public", "orders", {{"id", 23, true}, {"item", 25}}));
      Feed(Begin(kFinal, kTs, kXid));
      Status s = Try(m.substr(0, len));
      if (!s.ok()) {
        EXPECT_EQ(s.code(), Status::Code::kRetryable);
        EXPECT_EQ(out_.size(), 0u);
      }
    }
  }
}

// ---- helpers -----------------------------------------------------------------

TEST(JsonTest, TimestampsAreRfc3339Utc) {
  struct Case {
    int64_t micros;
    const char* text;
  } cases[] = {
      {0, "2000-01-01T00:00:00.000000Z"},
      {-1, "1999-12-31T23:59:59.999999Z"},
      {kTs, "2026-11-25T07:35:10.123456Z"},
      {762566399999999, "2024-02-29T23:59:59.999999Z"},
      {3160857600000001, "2100-03-01T00:00:00.000001Z"},
      {-946684800000000, "1970-01-01T00:00:00.000000Z"},
      {252455615999999999, "9999-12-31T23:59:59.999999Z"},
      {-63082281600000000, "0001-01-01T00:00:00.000000Z"},
      {12627921600000000, "2400-02-29T12:00:00.000000Z"},
  };
  for (const Case& c : cases) {
    char buf[json::kTimestampBufferSize];
    EXPECT_EQ(std::string(buf, json::FormatTimestampTo(c.micros, buf)), c.text);
  }
  // Garbage from the wire still formats without overflow.
  char buf[json::kTimestampBufferSize];
  EXPECT_EQ(std::string(buf, json::FormatTimestampTo(INT64_MAX, buf)),
            "294277-01-09T04:00:54.775807Z");
  EXPECT_EQ(std::string(buf, json::FormatTimestampTo(INT64_MIN, buf)),
            "-290278-12-22T19:59:05.224192Z");
}

TEST(JsonTest, LsnTextMatchesFormatLsn) {
  for (Lsn lsn : {Lsn{0}, Lsn{0x16B3748}, Lsn{0x100000000}, Lsn{0xFFFFFFFFFFFFFFFF},
                  Lsn{0xABCDEF0012345678}}) {
    char buf[json::kLsnBufferSize];
    EXPECT_EQ(std::string(buf, json::FormatLsnTo(lsn, buf)), FormatLsn(lsn));
  }
}

TEST(JsonTest, DocumentValidation) {
  std::string stack;
  for (const char* ok : {"{}", "[]", " 1 ", "-0.5e+3", "\"\\u00e9\\n\"", "{\"a\":[{},[],null]}",
                         "[true,false,null]", "{\"a\" : 1 , \"b\":\"x\"}", "\"\xc3\xa9\""}) {
    EXPECT_TRUE(json::IsValidDocument(ok, &stack)) << ok;
  }
  for (const char* bad :
       {"",           " ",     "{",     "}",       "[1,]",      "{\"a\"}",
        "{\"a\":1,}", "01",    "1.",    ".5",      "+1",        "tru",
        "nulls",      "[1 2]", "{1:2}", "\"\\x\"", "\"\\u12\"", "\"a\nb\"",
        "\"\xff\"",   "[}",    "{]",    "1 2",     "NaN",       "\"unterminated"}) {
    EXPECT_FALSE(json::IsValidDocument(bad, &stack)) << bad;
  }
  // Deep nesting needs no recursion.
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  EXPECT_TRUE(json::IsValidDocument(deep, &stack));
  deep.pop_back();
  EXPECT_FALSE(json::IsValidDocument(deep, &stack));
}

TEST(JsonTest, NullDocumentIsTheDocumentNullAlone) {
  for (const char* yes : {"null", " null", "null ", "\t\r\n null \n"}) {
    EXPECT_TRUE(json::IsNullDocument(yes)) << yes;
  }
  for (const char* no : {"", " ", "nul", "nulls", "Null", "NULL", "\"null\"", "[null]",
                         "{\"a\":null}", "null null", "\fnull"}) {
    EXPECT_FALSE(json::IsNullDocument(no)) << no;
  }
  EXPECT_FALSE(json::IsNullDocument(std::string_view("\0null", 5)));
}

}  // namespace
}  // namespace pgslotd

namespace pgslotd {
namespace {

// A streamed transaction larger than one replay piece comes out a piece at
// a time: Format of its Stream Commit leaves the rest to come, Continue hands it over,
// and memory never holds the whole transaction.
TEST_F(StreamTest, LargeCommitIsReplayedInPiecesInOrder) {
  options_.spool_memory = 4096;
  options_.include_transactions = true;
  const int kRows = 20000;
  const std::string pad(80, 'x');
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  for (int i = 1; i <= kRows; ++i) {
    Feed(Insert(kOrders, {T(std::to_string(i)), T(pad)}, 900), 0x1000000 + i);
  }
  Feed(StreamStop());
  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs2), 0x2000000);
  ASSERT_TRUE(F().HasMoreOutput()) << "2 MB of lines in one piece";
  size_t first_piece = out_.size();
  EXPECT_LT(first_piece, 3u << 20);
  std::string all = Take();
  int calls = 0;
  while (F().HasMoreOutput()) {
    Status s = F().Continue(&out_, 256 * 1024);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_LT(out_.size(), 512u * 1024) << "a piece is about its budget";
    all += Take();
    ++calls;
  }
  EXPECT_GT(calls, 3);
  std::vector<std::string> lines;
  for (size_t start = 0, nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(all.substr(start, nl - start));
  }
  ASSERT_EQ(lines.size(), static_cast<size_t>(kRows) + 2);
  EXPECT_EQ(lines.front().rfind("{\"op\":\"begin\"", 0), 0u);
  EXPECT_EQ(lines.back().rfind("{\"op\":\"commit\"", 0), 0u);
  for (int i = 1; i <= kRows; ++i) {
    ASSERT_NE(lines[i].find("\"new\":{\"id\":" + std::to_string(i) + ","), std::string::npos)
        << i << ": " << lines[i];
  }
  EXPECT_TRUE(SpoolFiles().empty());
  // And the formatter goes on with the next transaction.
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("1"), T("after")}));
  EXPECT_NE(Take().find("after"), std::string::npos);
}

}  // namespace
}  // namespace pgslotd

namespace pgslotd {
namespace {

// ---- keys for sinks that route by them ----------------------------------------

// Primary keys as a catalog would answer, counting the lookups.
class FakePrimaryKeys : public PrimaryKeys {
 public:
  Status Lookup(uint32_t relid, std::vector<std::string>* columns) override {
    ++lookups;
    last_relid = relid;
    if (!fail.ok()) return fail;
    *columns = answer;
    return Status::Ok();
  }
  std::vector<std::string> answer;
  Status fail = Status::Ok();
  int lookups = 0;
  uint32_t last_relid = 0;
};

class DecodeKeysTest : public DecodeTest {
 protected:
  void SetUp() override {
    DecodeTest::SetUp();
    options_.primary_keys = &keys_;
    out_.set_wants_keys(true);
  }
  // The keys of the records written so far, consumed.
  std::vector<std::string> Keys() {
    std::vector<std::string> keys;
    for (size_t i = 0; i < out_.record_count(); ++i) keys.emplace_back(out_.record(i).key);
    Take();
    return keys;
  }
  FakePrimaryKeys keys_;
};

TEST_F(DecodeKeysTest, UnderTheDefaultReplicaIdentityTheFlaggedColumnsAreTheKeyWithoutALookup) {
  Feed(RelationWithIdentity('d', 20, "t", {{"id", 23, true}, {"v", 25}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(20, {T("1"), T("a")}));
  Feed(Update(20, 0, {}, {T("1"), T("b")}));
  Feed(Delete(20, 'K', {T("1"), Null()}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{R"({"id":1})", R"({"id":1})", R"({"id":1})"}));
  EXPECT_EQ(keys_.lookups, 0) << "the flags are the primary key: no catalog query";
}

TEST_F(DecodeKeysTest, UnderFullTheCatalogsPrimaryKeyIsTheKeyInColumnOrder) {
  keys_.answer = {"id", "region"};  // PRIMARY KEY (id, region)
  Feed(RelationWithIdentity('f', 21, "t",
                            {{"region", 25, true}, {"id", 23, true}, {"v", 25, true}}));
  EXPECT_EQ(keys_.lookups, 1);
  EXPECT_EQ(keys_.last_relid, 21u);
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(21, {T("eu"), T("1"), T("a")}));
  Feed(Update(21, 'O', {T("eu"), T("1"), T("a")}, {T("eu"), T("1"), T("b")}));
  Feed(Delete(21, 'O', {T("eu"), T("1"), T("b")}));
  const std::string key = R"({"region":"eu","id":1})";
  EXPECT_EQ(Keys(), (std::vector<std::string>{key, key, key}))
      << "every change of a row has the same key, never every column";
}

TEST_F(DecodeKeysTest, AKeyValueTheNewTupleLeavesOutIsTakenFromTheOldOne) {
  keys_.answer = {"doc"};
  Feed(RelationWithIdentity('f', 22, "t", {{"doc", 25, true}, {"v", 25, true}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Update(22, 'O', {T("long"), T("a")}, {Toast(), T("b")}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{R"({"doc":"long"})"}));
}

TEST_F(DecodeKeysTest, NoPrimaryKeyOrAKeyColumnLeftOutMeansNoKey) {
  Feed(RelationWithIdentity('f', 23, "nopk", {{"v", 25, true}}));
  keys_.answer = {"id", "gone"};  // a column list that leaves "gone" out
  Feed(RelationWithIdentity('n', 24, "partial", {{"id", 23}, {"v", 25}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(23, {T("x")}));
  Feed(Insert(24, {T("1"), T("x")}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{"", ""}));
}

TEST_F(DecodeKeysTest, AnOldTupleOfAnotherIndexHasNoKeyRatherThanANullOne) {
  // REPLICA IDENTITY USING INDEX on code: a delete names code only.
  keys_.answer = {"id"};
  Feed(RelationWithIdentity('i', 25, "t", {{"id", 23}, {"code", 25, true}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(25, {T("1"), T("c1")}));
  Feed(Delete(25, 'K', {Null(), T("c1")}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{R"({"id":1})", ""}));
}

TEST_F(DecodeKeysTest, AFailedLookupFailsTheMessageAndKeepsTheCachedRelation) {
  keys_.answer = {"id"};
  Feed(RelationWithIdentity('f', 26, "t", {{"id", 23, true}}));
  keys_.fail = Status::Retryable("connection lost");
  Status s = Try(RelationWithIdentity('f', 26, "t", {{"id", 23, true}, {"v", 25, true}}));
  EXPECT_EQ(s.code(), Status::Code::kRetryable);
  EXPECT_NE(s.message().find("looking up the primary key of public.t: connection lost"),
            std::string::npos)
      << s.message();
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(26, {T("7")}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{R"({"id":7})"})) << "the old entry, as it was";
}

TEST_F(DecodeKeysTest, NothingIsLookedUpWhenTheSinkTakesBytes) {
  out_.set_wants_keys(false);
  Feed(RelationWithIdentity('f', 27, "t", {{"id", 23, true}}));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(27, {T("1")}));
  EXPECT_EQ(keys_.lookups, 0);
  EXPECT_EQ(Keys(), (std::vector<std::string>{""}));
}

// ---- what a snapshot pass learns, and its read lines -------------------------

// Records what the formatter tells, as "<watch> <xid> <key>[ toast]" or
// "<watch> <xid> truncate".
class RecordingObserver : public ChangeObserver {
 public:
  uint64_t generation() const override { return generation_; }
  const Watch* WatchOf(std::string_view schema, std::string_view table) override {
    ++asked;
    auto it = watches_.find(std::string(schema) + "." + std::string(table));
    return it == watches_.end() ? nullptr : &it->second;
  }
  void OnChange(uint32_t watch_id, std::string_view key, uint32_t xid, bool lacks_toast) override {
    told.push_back(std::to_string(watch_id) + " " + std::to_string(xid) + " " + std::string(key) +
                   (lacks_toast ? " toast" : ""));
  }
  void OnTruncate(uint32_t watch_id, uint32_t xid) override {
    told.push_back(std::to_string(watch_id) + " " + std::to_string(xid) + " truncate");
  }
  void OnCommit(uint32_t xid) override { told.push_back("commit " + std::to_string(xid)); }
  void OnWatermark(std::string_view content, uint64_t lsn) override {
    told.push_back("watermark " + std::string(content) + " at " + std::to_string(lsn));
  }
  void Watch(const std::string& name, uint32_t id, std::vector<std::string> key) {
    watches_[name] = ChangeObserver::Watch{id, std::move(key)};
    ++generation_;
  }
  void Unwatch(const std::string& name) {
    watches_.erase(name);
    ++generation_;
  }

  std::vector<std::string> told;
  int asked = 0;

 private:
  uint64_t generation_ = 1;
  std::map<std::string, ChangeObserver::Watch> watches_;
};

class ObserverTest : public DecodeTest {
 protected:
  void SetUp() override {
    DecodeTest::SetUp();
    options_.observer = &observer_;
  }
  std::vector<std::string> Told() {
    std::vector<std::string> told = std::move(observer_.told);
    observer_.told.clear();
    return told;
  }
  RecordingObserver observer_;
  // public.orders: id int4 (replica identity), code text, note text.
  const std::vector<ColDef> kCols = {{"id", 23, true}, {"code", 25}, {"note", 25}};
};

TEST_F(ObserverTest, AnOrdinaryTransactionsKeysAreToldAtOnceByTheWatchedKey) {
  observer_.Watch("public.orders", 7, {"code", "id"});
  Feed(Relation(kOrders, "public", "orders", kCols));
  Feed(Relation(kOrders + 1, "public", "other", kCols));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("1"), T("a\"b"), T("x")}));
  Feed(Insert(kOrders + 1, {T("1"), T("z"), T("x")}));  // not watched
  Feed(Update(kOrders, 0, {}, {T("1"), T("a\"b"), Toast()}));
  // A key change tells the old key and the new one.
  Feed(Update(kOrders, 'O', {T("1"), T("a\"b"), T("x")}, {T("2"), T("c"), T("y")}));
  Feed(Delete(kOrders, 'K', {T("2"), Null(), Null()}));  // the old tuple lacks `code`
  Feed(Truncate({kOrders, kOrders + 1}, 0));
  EXPECT_EQ(Told(), (std::vector<std::string>{
                        "7 758 {\"code\":\"a\\\"b\",\"id\":1}",
                        "7 758 {\"code\":\"a\\\"b\",\"id\":1} toast",
                        "7 758 {\"code\":\"a\\\"b\",\"id\":1}",
                        "7 758 {\"code\":\"c\",\"id\":2}",
                        "7 758 ",
                        "7 758 truncate",
                    }));
  Feed(Commit(kFinal, kFinal, kTs));
  EXPECT_EQ(Told(), std::vector<std::string>{"commit 758"});
}

TEST_F(ObserverTest, WatermarksGoToTheObserverAndNeverToTheSink) {
  Feed(Message(false, "pgslotd.snapshot", "s1 00ff"), 0x4000000);
  EXPECT_EQ(Take(), "");
  EXPECT_EQ(Told(), std::vector<std::string>{"watermark s1 00ff at " + std::to_string(0x4000000)});
  // Another prefix, or a transactional message with this one, is the
  // user's: written as always, not told.
  Feed(Message(false, "pgslotd.snapshotx", "a"), 0x4000010);
  BeginOrders();
  Feed(Message(true, "pgslotd.snapshot", "b"), 0x4000020);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"prefix\":\"pgslotd.snapshotx\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("\"transactional\":true,\"prefix\":\"pgslotd.snapshot\""),
            std::string::npos)
      << lines[1];
  EXPECT_EQ(Told(), std::vector<std::string>{});
  // Without an observer it is dropped too.
  options_.observer = nullptr;
  formatter_.reset();
  Feed(Message(false, "pgslotd.snapshot", "s1 00ff"), 0x4000000);
  EXPECT_EQ(Take(), "");
}

TEST_F(ObserverTest, AWatchThatChangesIsAskedForAgain) {
  Feed(Relation(kOrders, "public", "orders", kCols));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("1"), T("a"), T("x")}));
  Feed(Insert(kOrders, {T("2"), T("a"), T("x")}));
  EXPECT_EQ(observer_.asked, 1) << "asked once per generation, not per change";
  observer_.Watch("public.orders", 3, {"id"});
  Feed(Insert(kOrders, {T("3"), T("a"), T("x")}));
  observer_.Unwatch("public.orders");
  Feed(Insert(kOrders, {T("4"), T("a"), T("x")}));
  Feed(Commit(kFinal, kFinal, kTs));
  EXPECT_EQ(Told(), (std::vector<std::string>{"3 758 {\"id\":3}", "commit 758"}));
}

TEST_F(ObserverTest, AStreamedTransactionsKeysAreToldAtItsCommitWithoutAbortedSubtransactions) {
  observer_.Watch("public.orders", 7, {"id"});
  Feed(StreamStart(900, true), 0x1000000);
  Feed(Relation(kOrders, "public", "orders", kCols, 900));
  Feed(Insert(kOrders, {T("1"), T("a"), T("x")}, 900), 0x1000010);
  Feed(Insert(kOrders, {T("2"), T("a"), T("x")}, 901), 0x1000020);
  Feed(Update(kOrders, 0, {}, {T("3"), T("a"), Toast()}, 902), 0x1000030);
  Feed(StreamStop());
  Feed(StreamStart(1000, true), 0x1000100);
  Feed(Insert(kOrders, {T("100"), T("a"), T("x")}, 1000), 0x1000110);
  Feed(StreamStop());
  EXPECT_EQ(Told(), std::vector<std::string>{}) << "nothing before the commit";
  Feed(StreamAbort(900, 901), 0x1000200);
  Feed(StreamAbort(1000, 1000), 0x1000210);
  Feed(StreamStart(900, false), 0x1000300);
  Feed(Truncate({kOrders}, 0, 900), 0x1000310);
  Feed(StreamStop());
  Feed(StreamCommit(900, 0x2000000, 0x2000030, kTs), 0x2000000);
  EXPECT_EQ(Told(), (std::vector<std::string>{"7 900 {\"id\":1}", "7 900 {\"id\":3} toast",
                                              "7 900 truncate", "commit 900"}));
  Feed(StreamStart(1000, false), 0x2000100);
  Feed(StreamStop());
  Feed(StreamCommit(1000, 0x2000200, 0x2000230, kTs), 0x2000200);
  EXPECT_EQ(Told(), std::vector<std::string>{"commit 1000"})
      << "an aborted transaction tells no change";
}

TEST_F(ObserverTest, AReadRowIsWrittenAsAnInsertOfItAndItsKeyMatchesTheStreams) {
  out_.set_wants_keys(true);
  observer_.Watch("public.orders", 7, {"code", "id"});
  uint32_t table = F().DescribeReadTable(
      "public", "orders", {{"id", 23}, {"code", 25}, {"ok", 16}, {"doc", 3802}, {"n", 1700}},
      {"code", "id"});
  std::vector<PgoutputFormatter::ReadValue> row = {
      {false, "1"}, {false, "a\"b"}, {false, "t"}, {false, "null"}, {true, ""}};
  EXPECT_EQ(F().ReadKey(table, row), "{\"code\":\"a\\\"b\",\"id\":1}");
  F().FormatRead(table, row, 0x3000000, &out_);
  ASSERT_EQ(out_.record_count(), 1u);
  EXPECT_EQ(out_.record(0).key, "{\"code\":\"a\\\"b\",\"id\":1}");
  EXPECT_EQ(out_.record(0).info->kind, RecordKind::kChange);
  EXPECT_EQ(out_.record(0).info->lsn, Lsn{0x3000000});
  ASSERT_NE(out_.record(0).table, nullptr);
  EXPECT_EQ(out_.record(0).table->table, "orders");
  EXPECT_EQ(Take(),
            "{\"op\":\"read\",\"lsn\":\"0/3000000\",\"schema\":\"public\",\"table\":\"orders\","
            "\"new\":{\"id\":1,\"code\":\"a\\\"b\",\"ok\":true,\"doc\":null,\"n\":null},"
            "\"json_null\":[\"doc\"]}\n");
  // The stream's key of the same row is the same bytes.
  Feed(Relation(kOrders, "public", "orders", kCols));
  Feed(Begin(kFinal, kTs, kXid));
  Feed(Insert(kOrders, {T("1"), T("a\"b"), T("x")}));
  EXPECT_EQ(Told(), (std::vector<std::string>{"7 758 {\"code\":\"a\\\"b\",\"id\":1}"}));
}

}  // namespace
}  // namespace pgslotd
