// TableReader against a real server: how it describes a table as the
// publications publish it (column lists, row filters, replica identity),
// which tables it lists, that BeginPass waits for committed transactions
// alone, that a chunk's watermark reaches the slot's stream after its rows,
// and that a stop interrupts a chunk waiting for a lock and ends its
// command on the server.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pg/conninfo.h"
#include "pg_cluster.h"
#include "snapshot/table_reader.h"
#include "test_util.h"
#include "util/fd.h"

namespace pgslotd::test {
namespace {

// A database of this file's own keeps its tables from colliding.
constexpr char kDb[] = "table_reader_it";
// The application_name of the reader's connection (BuildSnapshotParams).
constexpr char kReaderApp[] = "pgslotd_s1_snapshot";

using ConnPtr = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using Names = std::vector<std::pair<std::string, std::string>>;

// Runs `sql` on `conn` and returns the first value of the first row ("" when
// there is none). Throws with the server's message if it fails.
std::string OnConn(PGconn* conn, const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn, sql.c_str()), PQclear);
  ExecStatusType st = PQresultStatus(res.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    throw std::runtime_error(sql + ": " + PQresultErrorMessage(res.get()));
  }
  if (PQntuples(res.get()) == 0 || PQnfields(res.get()) == 0) return "";
  return PQgetvalue(res.get(), 0, 0);
}

std::string Unhex(const std::string& bytea) {  // "\x0a1b..." as bytes
  std::string out;
  for (size_t i = 2; i + 1 < bytea.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(bytea.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// A pgoutput logical decoding message ('M'), its fields as sent.
struct Message {
  uint8_t flags = 0;
  uint64_t lsn = 0;
  std::string prefix;
  std::string content;
};

uint64_t BigEndian(const std::string& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

// Parses 'M', flags u8, lsn u64, prefix (NUL-terminated), length u32,
// content. False if `data` is not one, or its lengths do not add up.
bool ParseMessage(const std::string& data, Message* m) {
  if (data.size() < 1 + 1 + 8 || data[0] != 'M') return false;
  m->flags = static_cast<uint8_t>(data[1]);
  m->lsn = BigEndian(data, 2, 8);
  size_t nul = data.find('\0', 10);
  if (nul == std::string::npos || nul + 1 + 4 > data.size()) return false;
  m->prefix = data.substr(10, nul - 10);
  uint64_t len = BigEndian(data, nul + 1, 4);
  if (nul + 5 + len != data.size()) return false;
  m->content = data.substr(nul + 5);
  return true;
}

class TableReaderItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    pg_->CreateDatabase(kDb);
  }
  void TearDown() override {
    reader_.Close();
    if (!slot_.empty()) pg_->DropSlotIfExists(slot_);
    // What the test made, newest first.
    for (auto it = cleanup_.rbegin(); it != cleanup_.rend(); ++it) Sql(*it);
  }

  void Sql(const std::string& sql) { pg_->Exec(sql, kDb); }
  // Runs `create`, and `drop` when the test ends.
  void Make(const std::string& drop, const std::string& create) {
    Sql(drop);
    cleanup_.push_back(drop);
    Sql(create);
  }

  static TableReader::Clock::time_point Deadline(int seconds = 60) {
    return TableReader::Clock::now() + std::chrono::seconds(seconds);
  }

  void ConnectReader() {
    std::vector<std::pair<std::string, std::string>> params;
    std::string err;
    ASSERT_TRUE(BuildSnapshotParams(pg_->Conninfo(kDb), "s1", &params, &err)) << err;
    Status s = reader_.Connect(params, Deadline());
    ASSERT_TRUE(s.ok()) << s.message();
  }

  // A connection of the test's own, for transactions it keeps open.
  ConnPtr Connect() {
    ConnPtr conn(PQconnectdb(pg_->Conninfo(kDb).c_str()), PQfinish);
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      throw std::runtime_error(std::string("connect: ") + PQerrorMessage(conn.get()));
    }
    return conn;
  }

  // The described table's columns as the catalog has them: `names`' rows
  // of pg_attribute in attnum order.
  std::vector<std::pair<std::string, uint32_t>> CatalogColumns(const std::string& table,
                                                               const std::string& names) {
    std::vector<std::pair<std::string, uint32_t>> cols;
    for (const auto& r :
         pg_->Rows("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = '" + table +
                       "'::regclass AND attname IN (" + names + ") ORDER BY attnum",
                   kDb)) {
      cols.emplace_back(r[0], static_cast<uint32_t>(std::stoul(r[1])));
    }
    return cols;
  }

  static std::vector<std::pair<std::string, uint32_t>> Columns(const TableDescription& d) {
    std::vector<std::pair<std::string, uint32_t>> cols;
    for (const TableColumn& c : d.columns) cols.emplace_back(c.name, c.type_oid);
    return cols;
  }

  Result<TableDescription> Describe(const std::string& table,
                                    const std::vector<std::string>& publications) {
    return reader_.Describe("public", table, publications, Deadline());
  }

  // How many backends have the reader's application_name, and how many of
  // them wait for a lock.
  int ReaderBackends(bool waiting_for_lock) {
    return std::stoi(pg_->Scalar(
        std::string("SELECT count(*) FROM pg_stat_activity WHERE application_name = '") +
        kReaderApp + "'" + (waiting_for_lock ? " AND wait_event_type = 'Lock'" : "")));
  }

  PgCluster* pg_ = nullptr;
  std::string slot_;
  std::vector<std::string> cleanup_;
  WakeupFd wakeup_;
  std::atomic<bool> stop_{false};
  TableReader reader_{wakeup_.fd(), &stop_};
};

TEST_F(TableReaderItTest, DescribeGivesTheColumnListsColumnsInAttnumOrder) {
  Make("DROP TABLE IF EXISTS tr_cols",
       "CREATE TABLE tr_cols (gone int, a bigint NOT NULL, id int PRIMARY KEY, b text, "
       "g bigint GENERATED ALWAYS AS (a * 2) STORED, c numeric)");
  Sql("ALTER TABLE tr_cols DROP COLUMN gone");
  Make("DROP PUBLICATION IF EXISTS tr_cols_pub",
       "CREATE PUBLICATION tr_cols_pub FOR TABLE tr_cols (id, a)");
  ConnectReader();

  Result<TableDescription> d = Describe("tr_cols", {"tr_cols_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  // a comes before id in the table, whatever order the list names them in.
  auto expected = CatalogColumns("tr_cols", "'a', 'id'");
  ASSERT_EQ(expected.size(), 2u);
  EXPECT_EQ(expected[0].second, 20u);  // bigint
  EXPECT_EQ(expected[1].second, 23u);  // integer
  EXPECT_EQ(Columns(d.value()), expected);
  EXPECT_EQ(d.value().schema, "public");
  EXPECT_EQ(d.value().table, "tr_cols");
  EXPECT_EQ(std::to_string(d.value().oid), pg_->Scalar("SELECT 'tr_cols'::regclass::oid", kDb));
  EXPECT_EQ(d.value().key_columns, std::vector<std::string>{"id"});
  EXPECT_TRUE(d.value().row_filters.empty());
}

TEST_F(TableReaderItTest, DescribeGivesThePlannersEstimateOfTheRowsOnceItHasOne) {
  Make("DROP TABLE IF EXISTS tr_count", "CREATE TABLE tr_count (id int PRIMARY KEY)");
  Make("DROP PUBLICATION IF EXISTS tr_count_pub",
       "CREATE PUBLICATION tr_count_pub FOR TABLE tr_count");
  Sql("INSERT INTO tr_count SELECT generate_series(1, 1234)");
  ConnectReader();
  Result<TableDescription> d = Describe("tr_count", {"tr_count_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().estimated_rows, -1) << "never vacuumed or analyzed: unknown";
  Sql("ANALYZE tr_count");
  d = Describe("tr_count", {"tr_count_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().estimated_rows, 1234);
}

TEST_F(TableReaderItTest, DescribeWithoutAColumnListLeavesOutDroppedAndGeneratedColumns) {
  Make("DROP TABLE IF EXISTS tr_all",
       "CREATE TABLE tr_all (gone int, a bigint NOT NULL, id int PRIMARY KEY, b text, "
       "g bigint GENERATED ALWAYS AS (a * 2) STORED, c numeric)");
  Sql("ALTER TABLE tr_all DROP COLUMN gone");
  Make("DROP PUBLICATION IF EXISTS tr_all_pub", "CREATE PUBLICATION tr_all_pub FOR TABLE tr_all");
  ConnectReader();

  Result<TableDescription> d = Describe("tr_all", {"tr_all_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(Columns(d.value()), CatalogColumns("tr_all", "'a', 'id', 'b', 'c'"));
  EXPECT_EQ(d.value().columns.size(), 4u);
}

TEST_F(TableReaderItTest, DescribeGivesEveryPublicationsRowFilterUnlessOneHasNone) {
  Make("DROP TABLE IF EXISTS tr_filtered",
       "CREATE TABLE tr_filtered (id int PRIMARY KEY, a int, b text)");
  Make("DROP PUBLICATION IF EXISTS tr_f1",
       "CREATE PUBLICATION tr_f1 FOR TABLE tr_filtered WHERE (a > 5)");
  Make("DROP PUBLICATION IF EXISTS tr_f2",
       "CREATE PUBLICATION tr_f2 FOR TABLE tr_filtered WHERE (b = 'x')");
  Make("DROP PUBLICATION IF EXISTS tr_f3", "CREATE PUBLICATION tr_f3 FOR TABLE tr_filtered");
  ConnectReader();

  Result<TableDescription> d = Describe("tr_filtered", {"tr_f1", "tr_f2"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  std::vector<std::string> filters = d.value().row_filters;
  std::sort(filters.begin(), filters.end());
  EXPECT_EQ(filters, (std::vector<std::string>{"(a > 5)", "(b = 'x'::text)"}));

  // One of them publishes every row: so do they all together.
  d = Describe("tr_filtered", {"tr_f1", "tr_f2", "tr_f3"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_TRUE(d.value().row_filters.empty());
  EXPECT_EQ(d.value().columns.size(), 3u);
}

TEST_F(TableReaderItTest, DescribeATableInNoneOfThePublicationsIsFatalAndNamesIt) {
  Make("DROP TABLE IF EXISTS tr_published", "CREATE TABLE tr_published (id int PRIMARY KEY)");
  Make("DROP TABLE IF EXISTS tr_unpublished", "CREATE TABLE tr_unpublished (id int PRIMARY KEY)");
  Make("DROP PUBLICATION IF EXISTS tr_some", "CREATE PUBLICATION tr_some FOR TABLE tr_published");
  // Published, but not by the slot's publications.
  Make("DROP PUBLICATION IF EXISTS tr_other",
       "CREATE PUBLICATION tr_other FOR TABLE tr_unpublished");
  ConnectReader();

  Result<TableDescription> d = Describe("tr_unpublished", {"tr_some"});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kSlotFatal) << d.status().message();
  EXPECT_NE(d.status().message().find("public.tr_unpublished"), std::string::npos)
      << d.status().message();
  EXPECT_NE(d.status().message().find("in none of the slot's publications"), std::string::npos)
      << d.status().message();
  // The reader goes on: the published table is described.
  EXPECT_TRUE(Describe("tr_published", {"tr_some"}).ok());
}

TEST_F(TableReaderItTest, DescribeReportsTheReplicaIdentityAndKeysByItsIndex) {
  Make("DROP TABLE IF EXISTS tr_ident",
       "CREATE TABLE tr_ident (id int PRIMARY KEY, x int NOT NULL, y text NOT NULL, z text)");
  Sql("CREATE UNIQUE INDEX tr_ident_yx ON tr_ident (y, x)");
  Make("DROP PUBLICATION IF EXISTS tr_ident_pub",
       "CREATE PUBLICATION tr_ident_pub FOR TABLE tr_ident");
  ConnectReader();

  Result<TableDescription> d = Describe("tr_ident", {"tr_ident_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().replica_identity, 'd');
  EXPECT_EQ(d.value().key_columns, std::vector<std::string>{"id"});

  Sql("ALTER TABLE tr_ident REPLICA IDENTITY FULL");
  d = Describe("tr_ident", {"tr_ident_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().replica_identity, 'f');
  EXPECT_EQ(d.value().key_columns, std::vector<std::string>{"id"});

  Sql("ALTER TABLE tr_ident REPLICA IDENTITY USING INDEX tr_ident_yx");
  d = Describe("tr_ident", {"tr_ident_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d.value().replica_identity, 'i');
  EXPECT_EQ(d.value().key_columns, (std::vector<std::string>{"y", "x"}));
  EXPECT_EQ(d.value().key_types, (std::vector<std::string>{"text", "integer"}));
}

TEST_F(TableReaderItTest, ListTablesGivesEachPublishedTableOnceInNameOrder) {
  Make("DROP SCHEMA IF EXISTS tr_other_schema CASCADE", "CREATE SCHEMA tr_other_schema");
  Make("DROP TABLE IF EXISTS tr_list_b", "CREATE TABLE tr_list_b (id int PRIMARY KEY)");
  Make("DROP TABLE IF EXISTS tr_list_a", "CREATE TABLE tr_list_a (id int PRIMARY KEY)");
  Sql("CREATE TABLE tr_other_schema.tr_list_c (id int PRIMARY KEY)");
  Make("DROP TABLE IF EXISTS tr_list_unlisted", "CREATE TABLE tr_list_unlisted (id int)");
  Make("DROP PUBLICATION IF EXISTS tr_list_1",
       "CREATE PUBLICATION tr_list_1 FOR TABLE tr_list_b, tr_list_a");
  Make("DROP PUBLICATION IF EXISTS tr_list_2",
       "CREATE PUBLICATION tr_list_2 FOR TABLE tr_list_b, tr_other_schema.tr_list_c");
  Make("DROP PUBLICATION IF EXISTS tr_list_3",
       "CREATE PUBLICATION tr_list_3 FOR TABLE tr_list_unlisted");
  ConnectReader();

  auto tables = reader_.ListTables({"tr_list_1", "tr_list_2"}, Deadline());
  ASSERT_TRUE(tables.ok()) << tables.status().message();
  EXPECT_EQ(
      tables.value(),
      (Names{{"public", "tr_list_a"}, {"public", "tr_list_b"}, {"tr_other_schema", "tr_list_c"}}));
}

TEST_F(TableReaderItTest, BeginPassDoesNotWaitForAnOpenTransaction) {
  Make("DROP TABLE IF EXISTS tr_open", "CREATE TABLE tr_open (id int PRIMARY KEY)");
  ConnectReader();
  ConnPtr open = Connect();
  OnConn(open.get(), "BEGIN");
  OnConn(open.get(), "INSERT INTO tr_open VALUES (1)");
  std::string xid = OnConn(open.get(), "SELECT pg_current_xact_id()");
  ASSERT_FALSE(xid.empty());
  // It is in progress, and so in the snapshot's in-progress list.
  ASSERT_EQ(pg_->Scalar("SELECT pg_xact_status('" + xid + "'::xid8)", kDb), "in progress");

  Status s = reader_.BeginPass({}, Deadline(30));
  EXPECT_TRUE(s.ok()) << s.message();
  OnConn(open.get(), "COMMIT");
}

TEST_F(TableReaderItTest, BeginPassWaitsForARecentlyCommittedTransactionToBeSeen) {
  Make("DROP TABLE IF EXISTS tr_recent", "CREATE TABLE tr_recent (id int PRIMARY KEY)");
  ConnectReader();
  ConnPtr open = Connect();
  OnConn(open.get(), "BEGIN");
  OnConn(open.get(), "INSERT INTO tr_recent VALUES (1)");
  uint32_t xid =
      static_cast<uint32_t>(std::stoull(OnConn(open.get(), "SELECT pg_current_xact_id()")));

  // The worker saw it commit, but new snapshots do not see it yet: waits.
  Status s = reader_.BeginPass({xid}, TableReader::Clock::now() + std::chrono::seconds(1));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Status::Code::kRetryable) << s.message();
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s.message();

  OnConn(open.get(), "COMMIT");
  ConnectReader();  // in case the timeout cut a command short
  s = reader_.BeginPass({xid}, Deadline(30));
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_F(TableReaderItTest, ReadGivesTheRowsAfterTheKeyThenItsWatermarkInTheStream) {
  Make("DROP TABLE IF EXISTS tr_read",
       "CREATE TABLE tr_read (id int PRIMARY KEY, flag bool, amount numeric(10,2), "
       "at timestamptz, note text)");
  Sql("INSERT INTO tr_read SELECT i, i % 2 = 1, i + 0.5, "
      "'2024-01-02 03:04:05+00'::timestamptz + i * interval '1 day', 'n' || i "
      "FROM generate_series(1, 6) i");
  Make("DROP PUBLICATION IF EXISTS tr_read_pub",
       "CREATE PUBLICATION tr_read_pub FOR TABLE tr_read");
  slot_ = "table_reader_it";
  pg_->DropSlotIfExists(slot_);
  pg_->CreateLogicalSlot(slot_, "pgoutput", kDb);
  ConnectReader();
  Result<TableDescription> d = Describe("tr_read", {"tr_read_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_EQ(d.value().columns.size(), 5u);

  Result<Chunk> chunk = reader_.Read(d.value(), {"1"}, 2, "s1 abc", Deadline());
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  const Chunk& c = chunk.value();
  EXPECT_EQ(c.watermark, "s1 abc");
  ASSERT_EQ(c.row_count(), 2);
  // The table's columns, then the key again.
  ASSERT_EQ(PQnfields(c.rows.get()), 6);
  auto value = [&](int row, int col) { return std::string(PQgetvalue(c.rows.get(), row, col)); };
  EXPECT_EQ(value(0, 0), "2");
  EXPECT_EQ(value(1, 0), "3");
  EXPECT_EQ(value(1, 5), "3");
  EXPECT_EQ(c.last_key, std::vector<std::string>{"3"});
  // Each value as its type's output function writes it, as pgoutput does.
  EXPECT_EQ(value(0, 1), "f");
  EXPECT_EQ(value(1, 1), "t");
  EXPECT_EQ(value(0, 2), "2.50");
  EXPECT_EQ(value(1, 2), "3.50");
  EXPECT_EQ(value(1, 4), "n3");
  // DateStyle ISO, in the session's time zone, as a plain session shows it.
  std::string at = value(1, 3);
  EXPECT_EQ(at, pg_->Scalar("SELECT at FROM tr_read WHERE id = 3", kDb));
  EXPECT_EQ(pg_->Scalar("SHOW DateStyle", kDb).rfind("ISO", 0), 0u);
  ASSERT_GE(at.size(), 22u) << at;
  EXPECT_EQ(at.substr(0, 4), "2024") << at;
  EXPECT_EQ(at[4], '-');
  EXPECT_EQ(at[10], ' ');
  EXPECT_EQ(at[19] == '+' || at[19] == '-', true) << at;

  // The watermark is in the slot's stream, as pgoutput sends a message.
  auto rows = pg_->Rows("SELECT data FROM pg_logical_slot_peek_binary_changes('" + slot_ +
                            "', NULL, NULL, 'proto_version', '1', 'publication_names', "
                            "'tr_read_pub', 'messages', 'true')",
                        kDb);
  std::vector<Message> messages;
  for (const auto& row : rows) {
    std::string data = Unhex(row[0]);
    if (data.empty() || data[0] != 'M') continue;
    Message m;
    ASSERT_TRUE(ParseMessage(data, &m)) << row[0];
    messages.push_back(m);
  }
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].prefix, "pgslotd.snapshot");
  EXPECT_EQ(messages[0].content, "s1 abc");
  EXPECT_EQ(messages[0].flags, 0) << "a non-transactional message";

  // The next chunk continues after the last key; the limit is honoured to
  // the end.
  chunk = reader_.Read(d.value(), c.last_key, 2, "s1 def", Deadline());
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  ASSERT_EQ(chunk.value().row_count(), 2);
  EXPECT_EQ(PQgetvalue(chunk.value().rows.get(), 0, 0), std::string("4"));
  EXPECT_EQ(chunk.value().last_key, std::vector<std::string>{"5"});
  chunk = reader_.Read(d.value(), chunk.value().last_key, 2, "s1 ghi", Deadline());
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  ASSERT_EQ(chunk.value().row_count(), 1);
  EXPECT_EQ(chunk.value().last_key, std::vector<std::string>{"6"});
  chunk = reader_.Read(d.value(), chunk.value().last_key, 2, "s1 jkl", Deadline());
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  EXPECT_EQ(chunk.value().row_count(), 0);
  EXPECT_TRUE(chunk.value().last_key.empty());
}

TEST_F(TableReaderItTest, AStopInterruptsAChunkWaitingForALockAndCancelsItsQuery) {
  Make("DROP TABLE IF EXISTS tr_locked", "CREATE TABLE tr_locked (id int PRIMARY KEY)");
  Sql("INSERT INTO tr_locked VALUES (1), (2)");
  Make("DROP PUBLICATION IF EXISTS tr_locked_pub",
       "CREATE PUBLICATION tr_locked_pub FOR TABLE tr_locked");
  ConnectReader();
  Result<TableDescription> d = Describe("tr_locked", {"tr_locked_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();

  ConnPtr holder = Connect();
  OnConn(holder.get(), "BEGIN");
  OnConn(holder.get(), "LOCK TABLE tr_locked IN ACCESS EXCLUSIVE MODE");
  std::string holder_pid = OnConn(holder.get(), "SELECT pg_backend_pid()");

  Status read_status = Status::Ok();
  std::thread reader_thread([&] {
    Result<Chunk> chunk = reader_.Read(d.value(), {}, 10, "s1 locked", Deadline());
    read_status = chunk.status();
  });
  bool waited = WaitFor([&] { return ReaderBackends(true) == 1; }, std::chrono::seconds(30));
  stop_.store(true, std::memory_order_release);
  wakeup_.Notify();
  reader_thread.join();
  ASSERT_TRUE(waited) << "the reader's backend never waited for the lock";
  EXPECT_FALSE(read_status.ok());

  // The command was cancelled and the connection closed: the backend is
  // gone while the lock is still held.
  EXPECT_TRUE(WaitFor([&] { return ReaderBackends(false) == 0; }, std::chrono::seconds(30)))
      << ReaderBackends(false) << " backend(s) of the reader left";
  EXPECT_EQ(pg_->Scalar("SELECT state FROM pg_stat_activity WHERE pid = " + holder_pid),
            "idle in transaction");
  EXPECT_EQ(PQtransactionStatus(holder.get()), PQTRANS_INTRANS);
  OnConn(holder.get(), "ROLLBACK");
}

// A table without a key (snapshot_keyless: read_whole) is read locked
// against writes: a writer's open transaction holds the read off (2 s at
// most, then a retryable 55P03), and once it has committed the read sees
// its row.
TEST_F(TableReaderItTest, ATableWithoutAKeyIsReadLockedAgainstWritesWaitingTwoSecondsAtMost) {
  Make("DROP TABLE IF EXISTS tr_whole", "CREATE TABLE tr_whole (a int, b text)");
  Sql("INSERT INTO tr_whole VALUES (1, 'x'), (2, 'y'), (2, 'y')");
  Make("DROP PUBLICATION IF EXISTS tr_whole_pub",
       "CREATE PUBLICATION tr_whole_pub FOR TABLE tr_whole WITH (publish = 'insert')");
  ConnectReader();
  Result<TableDescription> d = Describe("tr_whole", {"tr_whole_pub"});
  ASSERT_TRUE(d.ok()) << d.status().message();
  ASSERT_TRUE(d.value().key_columns.empty());

  ConnPtr writer = Connect();
  OnConn(writer.get(), "BEGIN");
  OnConn(writer.get(), "INSERT INTO tr_whole VALUES (3, 'z')");
  Result<Chunk> held = reader_.Read(d.value(), {}, 10, "s1 whole", Deadline());
  ASSERT_FALSE(held.ok());
  EXPECT_EQ(held.status().code(), Status::Code::kRetryable) << held.status().message();
  EXPECT_NE(held.status().message().find("55P03"), std::string::npos) << held.status().message();
  OnConn(writer.get(), "COMMIT");

  ConnectReader();  // as the reader thread does for each request after a failure
  Result<Chunk> chunk = reader_.Read(d.value(), {}, 10, "s1 whole", Deadline());
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  EXPECT_EQ(chunk.value().row_count(), 4) << "every row, the duplicate and the writer's too";
  EXPECT_NE(chunk.value().watermark_end, kInvalidLsn);
}

}  // namespace
}  // namespace pgslotd::test
