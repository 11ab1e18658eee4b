// A snapshot pass against a real server, with no worker: the reader reads
// chunks and writes their watermarks on its own connection, the slot's
// pgoutput messages (pg_logical_slot_get_binary_changes) go through the
// json formatter, which tells the pass, and the pass writes each chunk once
// its watermark has come. The test changes the table between the steps and
// checks what a consumer checks: applying every line in order gives exactly
// the table's rows.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "decode/pgoutput_formatter.h"
#include "decode/record_buffer.h"
#include "json_parse.h"
#include "pg/conninfo.h"
#include "pg_cluster.h"
#include "snapshot/reader_thread.h"
#include "snapshot/snapshot_driver.h"
#include "snapshot/snapshot_pass.h"
#include "snapshot/table_reader.h"
#include "util/fd.h"

namespace pgslotd::test {
namespace {

constexpr char kDb[] = "snapshot_pass_it";

std::string Unhex(const std::string& bytea) {  // "\x0a1b..." as bytes
  std::string out;
  for (size_t i = 2; i + 1 < bytea.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(bytea.substr(i, 2), nullptr, 16)));
  }
  return out;
}

uint64_t ParseLsnText(const std::string& text) {
  size_t slash = text.find('/');
  return (std::stoull(text.substr(0, slash), nullptr, 16) << 32) |
         std::stoull(text.substr(slash + 1), nullptr, 16);
}

// A value as the comparisons show it: a long one by its length and ends.
std::string Short(const std::string& v) {
  if (v.size() <= 40) return v;
  return v.substr(0, 8) + "..." + v.substr(v.size() - 8) + " (" + std::to_string(v.size()) + ")";
}

class SnapshotPassItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    pg_->CreateDatabase(kDb);
    options_.observer = &pass_;
    formatter_ = std::make_unique<PgoutputFormatter>(options_);
  }
  void TearDown() override {
    reader_.Close();
    pg_->DropSlotIfExists(slot_);
  }

  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }

  void ConnectReader() {
    std::vector<std::pair<std::string, std::string>> params;
    std::string err;
    ASSERT_TRUE(BuildSnapshotParams(pg_->Conninfo(kDb), "s1", &params, &err)) << err;
    Status s = reader_.Connect(params, Deadline());
    ASSERT_TRUE(s.ok()) << s.message();
  }
  // The slot's pgoutput messages since the last call (position, bytes as
  // bytea text), consumed.
  std::vector<std::vector<std::string>> Changes() {
    return pg_->Rows("SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes('" + slot_ +
                         "', NULL, NULL, 'proto_version', '1', 'publication_names', "
                         "'snap_pub', 'messages', 'true')",
                     kDb);
  }
  static TableReader::Clock::time_point Deadline() {
    return TableReader::Clock::now() + std::chrono::seconds(60);
  }

  // Feeds the slot's messages so far to the formatter, then writes the
  // chunk if it is due: after its watermark, and after the changes the test
  // made since it was read (a chunk may be written anywhere after its
  // watermark; written later, it must leave out what they changed).
  void Stream() {
    for (const auto& row : Changes()) {
      Status s = formatter_->Format(Unhex(row[1]), ParseLsnText(row[0]), &out_);
      ASSERT_TRUE(s.ok()) << s.message();
    }
    ASSERT_TRUE(pass_.ChunkDue());
    pass_.WriteDue(&out_);
  }

  // Reads the next chunk the pass asks for.
  void ReadNext(const TableDescription& table) {
    Result<ChunkRequest> request = pass_.NextRequest();
    ASSERT_TRUE(request.ok());
    const ChunkRequest& r = request.value();
    Result<Chunk> chunk = r.keys.empty()
                              ? reader_.Read(table, r.after_key, 4, r.watermark, Deadline())
                              : reader_.ReadKeys(table, r.keys, r.watermark, Deadline());
    ASSERT_TRUE(chunk.ok()) << chunk.status().message();
    pass_.Answered(std::move(chunk.value()));
  }

  // The rows a consumer has after applying every line in order, by id:
  // column name to value text (a JSON string's text, a number's digits).
  std::map<std::string, std::map<std::string, std::string>> Apply() {
    std::map<std::string, std::map<std::string, std::string>> rows;
    std::string all(out_.data(), out_.size());
    size_t start = 0;
    for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
      Json line = JsonParser::Parse(all.substr(start, nl - start));
      lines_.push_back(line["op"].text);
      const std::string& op = line["op"].text;
      if (op == "snapshot") continue;
      if (op == "delete") {
        rows.erase(line["old"]["id"].text);
        continue;
      }
      std::map<std::string, std::string> before;
      if (op == "update" && line.Has("old")) {
        before = rows[line["old"]["id"].text];
        rows.erase(line["old"]["id"].text);
      }
      const Json& n = line["new"];
      auto& row = rows[n["id"].text];
      if (op == "update" && !line.Has("old")) before = row;
      row = before;
      for (const auto& [name, value] : n.members) row[name] = Short(value.text);
    }
    return rows;
  }

  std::map<std::string, std::map<std::string, std::string>> TableRows() {
    std::map<std::string, std::map<std::string, std::string>> rows;
    for (const auto& r : pg_->Rows("SELECT id::text, note, big FROM snap_items", kDb)) {
      rows[r[0]] = {{"id", r[0]}, {"note", r[1]}, {"big", Short(r[2])}};
    }
    return rows;
  }

  PgCluster* pg_ = nullptr;
  std::string slot_ = "snapshot_pass_it";
  WakeupFd wakeup_;
  std::atomic<bool> stop_{false};
  TableReader reader_{wakeup_.fd(), &stop_};
  JsonOptions options_;
  std::unique_ptr<PgoutputFormatter> formatter_;
  SnapshotPass pass_{"s1", 4};
  RecordBuffer out_{1 << 16};
  std::vector<std::string> lines_;
};

TEST_F(SnapshotPassItTest, LinesAppliedInOrderGiveTheTablesRowsWhileItChanges) {
  Sql("DROP TABLE IF EXISTS snap_items; DROP PUBLICATION IF EXISTS snap_pub");
  Sql("CREATE TABLE snap_items (id int PRIMARY KEY, note text NOT NULL, big text NOT NULL)");
  Sql("ALTER TABLE snap_items ALTER big SET STORAGE EXTERNAL");  // TOASTed, not compressed
  Sql("INSERT INTO snap_items SELECT i, 'n' || i, repeat('b' || i, 2000) "
      "FROM generate_series(1, 10) i");
  Sql("CREATE PUBLICATION snap_pub FOR TABLE snap_items");
  pg_->CreateLogicalSlot(slot_, "pgoutput", kDb);
  ConnectReader();
  Result<TableDescription> table =
      reader_.Describe("public", "snap_items", {"snap_pub"}, Deadline());
  ASSERT_TRUE(table.ok()) << table.status().message();
  ASSERT_EQ(table.value().key_columns, std::vector<std::string>{"id"});
  pass_.StartTable(table.value(), {}, formatter_.get());
  Status s = reader_.BeginPass(pass_.RecentlyCommitted(), Deadline());
  ASSERT_TRUE(s.ok()) << s.message();

  // Chunk 1 (rows 1-4) is read; before the stream reaches the point where
  // it is written, row 2 changes without its TOASTed value, row 3 goes,
  // and a row of chunk 2's range changes.
  ReadNext(table.value());
  Sql("UPDATE snap_items SET note = 'changed 2' WHERE id = 2");
  Sql("DELETE FROM snap_items WHERE id = 3");
  Sql("UPDATE snap_items SET note = 'changed 6', big = 'small' WHERE id = 6");
  Stream();
  // Chunk 2 (rows 5-8), and a key change from chunk 1's range into it.
  ReadNext(table.value());
  Sql("UPDATE snap_items SET id = 7 + 100, note = 'moved' WHERE id = 1");
  Sql("INSERT INTO snap_items VALUES (0, 'before all', 'x')");
  Stream();
  for (int turns = 0; !pass_.TableDone() && turns < 10; ++turns) {
    ReadNext(table.value());
    Sql("UPDATE snap_items SET note = note || '+', big = big || 'x' WHERE id = 8");
    Stream();
  }
  ASSERT_TRUE(pass_.TableDone());

  auto applied = Apply();
  EXPECT_EQ(applied, TableRows());
  // Row 2's change lacked its TOASTed value, and it was left out of chunk
  // 1: it was read again by key.
  int reads = 0;
  for (const std::string& op : lines_) reads += op == "read";
  EXPECT_GT(reads, 0);
  EXPECT_EQ(applied["2"]["big"], TableRows()["2"]["big"]);
}

// The whole snapshot of a slot's publications: the driver, the reader
// thread and its connection, the stream through the formatter, while the
// tables change between turns.
class SnapshotDriverItTest : public SnapshotPassItTest {
 protected:
  // Feeds the slot's messages so far, giving the driver a turn before each
  // one (as the read loop does), and one more at the end.
  void StreamWithTurns(SnapshotDriver* driver, PgoutputFormatter* formatter) {
    for (const auto& row : Changes()) {
      driver->Turn(formatter, &out_, !formatter->InTransaction(), SnapshotDriver::Clock::now());
      Status s = formatter->Format(Unhex(row[1]), ParseLsnText(row[0]), &out_);
      ASSERT_TRUE(s.ok()) << s.message();
    }
    driver->Turn(formatter, &out_, !formatter->InTransaction(), SnapshotDriver::Clock::now());
  }
};

TEST_F(SnapshotDriverItTest, EveryTableIsReadFramedByStartAndEndWhileTheyChange) {
  Sql("DROP TABLE IF EXISTS snap_items, snap_nokey; DROP PUBLICATION IF EXISTS snap_pub");
  Sql("CREATE TABLE snap_items (id int PRIMARY KEY, note text NOT NULL, big text NOT NULL)");
  Sql("CREATE TABLE snap_nokey (v int)");
  Sql("INSERT INTO snap_items SELECT i, 'n' || i, 'b' || i FROM generate_series(1, 50) i");
  Sql("INSERT INTO snap_nokey VALUES (1)");
  Sql("CREATE PUBLICATION snap_pub FOR TABLE snap_items, snap_nokey");
  pg_->CreateLogicalSlot(slot_, "pgoutput", kDb);

  WakeupFd worker;
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  ASSERT_TRUE(BuildSnapshotParams(pg_->Conninfo(kDb), "s1", &params, &err)) << err;
  SnapshotReaderThread reads(params, &worker);
  SnapshotDriver driver("s1", {"snap_pub"}, 7, &reads);
  JsonOptions options;
  options.observer = driver.observer();
  PgoutputFormatter formatter(options);
  driver.Request({});
  auto deadline = SnapshotDriver::Clock::now() + std::chrono::seconds(120);
  for (int turn = 0; driver.active(); ++turn) {
    ASSERT_LT(SnapshotDriver::Clock::now(), deadline) << "the snapshot did not end";
    struct pollfd p = {worker.fd(), POLLIN, 0};
    (void)::poll(&p, 1, 200);  // woken by an answer; the timeout only lets the test end
    worker.Drain();
    // Changes between turns: updates across the table, a delete, an insert.
    int id = 1 + (turn * 7) % 50;
    Sql("UPDATE snap_items SET note = note || '+' WHERE id = " + std::to_string(id));
    if (turn % 5 == 0) Sql("DELETE FROM snap_items WHERE id = " + std::to_string(50 - turn));
    if (turn % 3 == 0)
      Sql("INSERT INTO snap_items VALUES (" + std::to_string(1000 + turn) + ", 'new', 'x')");
    StreamWithTurns(&driver, &formatter);
  }
  reads.Stop();

  auto applied = Apply();
  EXPECT_EQ(applied, TableRows());
  // The frames, in order: items is read whole, the table without a key
  // fails with the reason.
  std::vector<std::string> frames;
  std::string all(out_.data(), out_.size());
  size_t start = 0;
  for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = all.substr(start, nl - start);
    if (line.rfind("{\"op\":\"snapshot\"", 0) == 0) frames.push_back(line);
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(
      frames[0],
      "{\"op\":\"snapshot\",\"event\":\"start\",\"schema\":\"public\",\"table\":\"snap_items\"}");
  EXPECT_EQ(
      frames[1].substr(0, frames[1].find("\"rows\":")),
      "{\"op\":\"snapshot\",\"event\":\"end\",\"schema\":\"public\",\"table\":\"snap_items\",");
  EXPECT_EQ(frames[2].rfind(
                "{\"op\":\"snapshot\",\"event\":\"failed\",\"schema\":\"public\",\"table\":\"snap_"
                "nokey\",\"rows\":0,\"error\":\"table public.snap_nokey has no primary key",
                0),
            0u)
      << frames[2];
  EXPECT_EQ(frames.size(), 3u);
}

}  // namespace
}  // namespace pgslotd::test
