// The snapshot pass's pieces against a real server: the key the catalog
// query finds, chunks read in key order with text parameters until the
// table is done, and pg_current_snapshot() as PgSnapshot reads it.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pg_cluster.h"
#include "snapshot/chunk_query.h"
#include "snapshot/pg_snapshot.h"

namespace pgslotd::test {
namespace {

// A database of this file's own keeps its tables from colliding.
constexpr char kDb[] = "snapshot_it";
// How a NULL value shows in the rows below.
constexpr char kNull[] = "<NULL>";

using Row = std::vector<std::string>;
using Rows = std::vector<Row>;
using ConnPtr = std::unique_ptr<PGconn, decltype(&PQfinish)>;

// A statement's rows as text (libpq's text format), with text parameters.
// Throws with the server's message if it fails.
Rows Query(PGconn* conn, const std::string& sql, const std::vector<std::string>& params = {}) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* res = PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
  std::unique_ptr<PGresult, decltype(&PQclear)> owned(res, PQclear);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    throw std::runtime_error(sql + ": " + PQresultErrorMessage(res));
  }
  Rows rows;
  for (int r = 0; r < PQntuples(res); ++r) {
    Row row;
    for (int c = 0; c < PQnfields(res); ++c) {
      row.emplace_back(PQgetisnull(res, r, c) ? kNull : PQgetvalue(res, r, c));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

class SnapshotItTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    pg_->CreateDatabase(kDb);
  }

  ConnPtr Connect() {
    ConnPtr conn(PQconnectdb(pg_->Conninfo(kDb).c_str()), PQfinish);
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      throw std::runtime_error(std::string("connect: ") + PQerrorMessage(conn.get()));
    }
    return conn;
  }

  // KeyColumnsQuery()'s rows for `table`, with its OID as the parameter.
  Rows KeyOf(const std::string& table) {
    ConnPtr conn = Connect();
    std::string oid = pg_->Scalar("SELECT '" + table + "'::regclass::oid", kDb);
    return Query(conn.get(), KeyColumnsQuery(), {oid});
  }

  PgCluster* pg_ = nullptr;
};

class ChunkQueryKeyItTest : public SnapshotItTest {};

TEST_F(ChunkQueryKeyItTest, ThePrimaryKeyInItsIndexOrder) {
  pg_->Exec(
      "DROP TABLE IF EXISTS pk_order; CREATE TABLE pk_order(payload text, num numeric(30,10), "
      "name text, u int NOT NULL UNIQUE, PRIMARY KEY (name, num))",
      kDb);
  // The primary key wins over a unique index with fewer columns.
  EXPECT_EQ(KeyOf("pk_order"), (Rows{{"name", "text"}, {"num", "numeric(30,10)"}}));
  // With replica identity NOTHING or FULL too: the key is still the key.
  pg_->Exec("ALTER TABLE pk_order REPLICA IDENTITY NOTHING", kDb);
  EXPECT_EQ(KeyOf("pk_order"), (Rows{{"name", "text"}, {"num", "numeric(30,10)"}}));
  pg_->Exec("ALTER TABLE pk_order REPLICA IDENTITY FULL", kDb);
  EXPECT_EQ(KeyOf("pk_order"), (Rows{{"name", "text"}, {"num", "numeric(30,10)"}}));
}

TEST_F(ChunkQueryKeyItTest, WithoutAPrimaryKeyTheSmallestUniqueIndexOverNotNullColumns) {
  pg_->Exec(
      "DROP TABLE IF EXISTS uq; CREATE TABLE uq(a int NOT NULL, b int NOT NULL, c bigint NOT "
      "NULL, d int, \"Mixed \"\"Case\"\"\" varchar(12) NOT NULL);"
      "CREATE UNIQUE INDEX uq_d ON uq(d);"  // one column, but nullable
      "CREATE UNIQUE INDEX uq_ab ON uq(a, b);"
      "CREATE UNIQUE INDEX uq_mixed ON uq(\"Mixed \"\"Case\"\"\");"
      "CREATE UNIQUE INDEX uq_c ON uq(c)",  // as few columns, a higher OID
      kDb);
  EXPECT_EQ(KeyOf("uq"), (Rows{{"Mixed \"Case\"", "character varying(12)"}}));
  pg_->Exec("DROP INDEX uq_mixed", kDb);
  EXPECT_EQ(KeyOf("uq"), (Rows{{"c", "bigint"}}));
  pg_->Exec("DROP INDEX uq_c", kDb);
  EXPECT_EQ(KeyOf("uq"), (Rows{{"a", "integer"}, {"b", "integer"}}));
}

TEST_F(ChunkQueryKeyItTest, PartialExpressionInvalidAndIncludedAreNotKeys) {
  pg_->Exec(
      "DROP TABLE IF EXISTS part; CREATE TABLE part(a int NOT NULL, b int NOT NULL, "
      "e int NOT NULL, f int);"
      "CREATE UNIQUE INDEX part_a ON part(a) WHERE a > 0;"
      "CREATE UNIQUE INDEX part_expr ON part((a + b));"
      "CREATE UNIQUE INDEX part_bf ON part(b) INCLUDE (f);"  // f is not part of the key
      "CREATE UNIQUE INDEX part_ab ON part(a, b);"
      "INSERT INTO part VALUES (1, 1, 5, NULL), (2, 2, 5, NULL)",
      kDb);
  EXPECT_EQ(KeyOf("part"), (Rows{{"b", "integer"}}));
  pg_->Exec("DROP INDEX part_bf", kDb);
  EXPECT_EQ(KeyOf("part"), (Rows{{"a", "integer"}, {"b", "integer"}}));
  // A concurrent build that failed leaves an invalid index behind.
  EXPECT_THROW(pg_->Exec("CREATE UNIQUE INDEX CONCURRENTLY part_e ON part(e)", kDb),
               std::runtime_error);
  ASSERT_EQ(
      pg_->Scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'part_e'::regclass", kDb),
      "f");
  EXPECT_EQ(KeyOf("part"), (Rows{{"a", "integer"}, {"b", "integer"}}));
}

TEST_F(ChunkQueryKeyItTest, AReplicaIdentityIndexWinsOverThePrimaryKey) {
  pg_->Exec(
      "DROP TABLE IF EXISTS ri; CREATE TABLE ri(id int PRIMARY KEY, b int NOT NULL, c text NOT "
      "NULL); CREATE UNIQUE INDEX ri_cb ON ri(c, b); ALTER TABLE ri REPLICA IDENTITY USING INDEX "
      "ri_cb",
      kDb);
  EXPECT_EQ(KeyOf("ri"), (Rows{{"c", "text"}, {"b", "integer"}}));
  pg_->Exec("ALTER TABLE ri REPLICA IDENTITY DEFAULT", kDb);
  EXPECT_EQ(KeyOf("ri"), (Rows{{"id", "integer"}}));
}

TEST_F(ChunkQueryKeyItTest, ATableWithoutAKeyHasNoRows) {
  pg_->Exec(
      "DROP TABLE IF EXISTS nokey; CREATE TABLE nokey(a int, b text NOT NULL);"
      "CREATE UNIQUE INDEX nokey_a ON nokey(a);"  // nullable
      "CREATE INDEX nokey_b ON nokey(b)",         // not unique
      kDb);
  EXPECT_TRUE(KeyOf("nokey").empty());
  EXPECT_TRUE(Query(Connect().get(), KeyColumnsQuery(), {"4294967295"}).empty());  // no table
}

class ChunkQueryItTest : public SnapshotItTest {
 protected:
  // A table keyed (name text, num numeric), the key's columns in the
  // opposite order to the table's, with names that need quoting, spaces,
  // Unicode and backslashes, numerics of many digits and some NULLs.
  void SetUp() override {
    SnapshotItTest::SetUp();
    pg_->Exec(
        "DROP TABLE IF EXISTS chunked; CREATE TABLE chunked(payload text, num numeric, "
        "flag boolean, name text, PRIMARY KEY (name, num));"
        "INSERT INTO chunked SELECT CASE WHEN g % 13 = 0 THEN NULL ELSE 'p' || g END, "
        "(g - 500) * 1234567890.0123456789012345678901 + g * 0.000000000000000000000001, "
        "g % 3 = 0, (ARRAY['it''s', ' space ', '\"quoted\"', 'naïve ünïcödé 雪', "
        "'back\\slash', '', 'a,b', '(x,y)', 'NULL', 'Zeta'])[g % 10 + 1] "
        "FROM generate_series(1, 1000) g",
        kDb);
    Rows key = KeyOf("chunked");
    ASSERT_EQ(key, (Rows{{"name", "text"}, {"num", "numeric"}}));
    q_.schema = "public";
    q_.table = "chunked";
    q_.columns = {"payload", "num", "flag", "name"};
    for (const Row& k : key) {
      q_.key_columns.push_back(k[0]);
      q_.key_types.push_back(k[1]);
    }
    q_.limit = 7;
  }

  // Every chunk in turn, each continuing after the last key of the one
  // before (the row's last two values), until one is empty.
  Rows ReadInChunks(size_t* chunks) {
    ConnPtr conn = Connect();
    Rows all = Query(conn.get(), q_.Sql(false));
    *chunks = 1;
    for (size_t got = all.size(); got > 0; ++*chunks) {
      EXPECT_LE(got, q_.limit);
      const Row& last = all.back();
      Rows next = Query(conn.get(), q_.Sql(true), {last[last.size() - 2], last.back()});
      got = next.size();
      all.insert(all.end(), next.begin(), next.end());
    }
    return all;
  }

  ChunkQuery q_;
};

TEST_F(ChunkQueryItTest, ChunksReadEveryRowOnceInKeyOrder) {
  size_t chunks = 0;
  Rows read = ReadInChunks(&chunks);
  Rows expected =
      Query(Connect().get(),
            "SELECT payload, num, flag, name, name, num FROM chunked ORDER BY name, num");
  ASSERT_EQ(expected.size(), 1000u);
  EXPECT_EQ(read, expected);
  EXPECT_EQ(chunks, 1000 / 7 + 2);  // 142 full, one of 6, and the empty one
  // The values are their types' output text, as pgoutput sends them: the
  // boolean's "t" or "f", every digit of the numerics (the keys went back
  // as text parameters without losing one, or rows would repeat or go
  // missing above).
  EXPECT_TRUE(read[0][2] == "t" || read[0][2] == "f") << read[0][2];
  EXPECT_EQ(pg_->Scalar("SELECT num FROM chunked WHERE payload = 'p1'", kDb),
            "-616049377116.160493771716049377159899");
  EXPECT_NE(
      std::find_if(read.begin(), read.end(),
                   [](const Row& r) { return r[1] == "-616049377116.160493771716049377159899"; }),
      read.end());
}

TEST_F(ChunkQueryItTest, RowFiltersOfSeveralPublicationsAreOred) {
  pg_->Exec(
      "DROP PUBLICATION IF EXISTS chunked_pos; DROP PUBLICATION IF EXISTS chunked_its;"
      "CREATE PUBLICATION chunked_pos FOR TABLE chunked WHERE (num > 0 AND flag);"
      "CREATE PUBLICATION chunked_its FOR TABLE chunked WHERE (name = 'it''s')",
      kDb);
  for (const Row& r : Query(Connect().get(),
                            "SELECT rowfilter FROM pg_publication_tables WHERE tablename = "
                            "'chunked' ORDER BY pubname")) {
    q_.row_filters.push_back(r[0]);
  }
  ASSERT_EQ(q_.row_filters.size(), 2u);
  size_t chunks = 0;
  Rows read = ReadInChunks(&chunks);
  Rows expected = Query(Connect().get(),
                        "SELECT payload, num, flag, name, name, num FROM chunked "
                        "WHERE (num > 0 AND flag) OR name = 'it''s' ORDER BY name, num");
  EXPECT_GT(expected.size(), 200u);
  EXPECT_LT(expected.size(), 400u);
  EXPECT_EQ(read, expected);
}

TEST_F(ChunkQueryItTest, SqlForKeysReadsExactlyThoseKeys) {
  Rows all = Query(Connect().get(),
                   "SELECT payload, num, flag, name, name, num FROM chunked ORDER BY 4, 2");
  // Three keys out of order, and one that no row has.
  std::vector<std::string> params;
  for (size_t i : {size_t{900}, size_t{3}, size_t{500}}) {
    params.push_back(all[i][3]);
    params.push_back(all[i][1]);
  }
  params.push_back("it's");
  params.push_back("1.5");
  Rows got = Query(Connect().get(), q_.SqlForKeys(4), params);
  EXPECT_EQ(got, (Rows{all[3], all[500], all[900]}));
}

class PgSnapshotItTest : public SnapshotItTest {
 protected:
  // Starts a transaction on `conn` that takes an xid and inserts `tag`;
  // returns the xid.
  uint64_t BeginWriting(PGconn* conn, const std::string& tag) {
    Query(conn, "BEGIN");
    uint64_t xid = std::stoull(Query(conn, "SELECT pg_current_xact_id()")[0][0]);
    Query(conn, "INSERT INTO vis VALUES ($1)", {tag});
    return xid;
  }

  // BEGIN ISOLATION LEVEL REPEATABLE READ and the snapshot it reads by.
  PgSnapshot TakeSnapshot(PGconn* conn) {
    Query(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    std::string text = Query(conn, "SELECT pg_current_snapshot()")[0][0];
    Result<PgSnapshot> s = PgSnapshot::Parse(text);
    if (!s.ok()) throw std::runtime_error(s.status().message());
    return s.value();
  }

  static bool Contains(const std::vector<uint64_t>& ids, uint64_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  }

  static uint32_t Low(uint64_t full) { return static_cast<uint32_t>(full & 0xFFFFFFFFu); }
};

// Each snapshot reads exactly the rows of the transactions it sees, and
// the server agrees (pg_visible_in_snapshot) for every one of them.
TEST_F(PgSnapshotItTest, SeesExactlyWhatARepeatableReadTransactionReads) {
  pg_->Exec("DROP TABLE IF EXISTS vis; CREATE TABLE vis(tag text)", kDb);
  ConnPtr before = Connect(), open = Connect(), between = Connect(), late = Connect(),
          after = Connect(), first_reader = Connect(), reader = Connect();
  uint64_t before_xid = BeginWriting(before.get(), "before");
  Query(before.get(), "COMMIT");
  uint64_t open_xid = BeginWriting(open.get(), "open");
  // When nothing completed after `open` began (no other work on the
  // server), xmax is the id after the last completed one: `open`'s own, and
  // `open` is not in the list. An id equal to xmax's low half can thus be a
  // transaction running at the snapshot.
  PgSnapshot first = TakeSnapshot(first_reader.get());
  EXPECT_GE(first.xmax(), open_xid);
  EXPECT_EQ(Contains(first.in_progress(), open_xid), first.xmax() > open_xid);
  EXPECT_FALSE(first.Sees(Low(open_xid)));
  EXPECT_TRUE(first.Sees(Low(before_xid)));

  uint64_t between_xid = BeginWriting(between.get(), "between");
  Query(between.get(), "COMMIT");
  PgSnapshot snap = TakeSnapshot(reader.get());
  // Other work on the server (autovacuum) may add ids; these always hold.
  EXPECT_LE(snap.xmin(), open_xid);
  EXPECT_GT(snap.xmax(), between_xid);
  EXPECT_TRUE(Contains(snap.in_progress(), open_xid));

  uint64_t late_xid = BeginWriting(late.get(), "late");  // after the snapshot
  uint64_t after_xid = BeginWriting(after.get(), "after");
  Query(after.get(), "COMMIT");
  Query(late.get(), "COMMIT");
  Query(open.get(), "COMMIT");

  EXPECT_EQ(Query(reader.get(), "SELECT tag FROM vis ORDER BY tag"),
            (Rows{{"before"}, {"between"}}));
  EXPECT_EQ(Query(first_reader.get(), "SELECT tag FROM vis ORDER BY tag"), (Rows{{"before"}}));
  EXPECT_TRUE(snap.Sees(Low(before_xid)));
  EXPECT_TRUE(snap.Sees(Low(between_xid)));
  EXPECT_FALSE(snap.Sees(Low(open_xid)));
  EXPECT_GE(late_xid, snap.xmax());
  EXPECT_FALSE(snap.Sees(Low(late_xid)));
  EXPECT_FALSE(snap.Sees(Low(after_xid)));
  for (PGconn* conn : {first_reader.get(), reader.get()}) {
    std::string text = Query(conn, "SELECT pg_current_snapshot()")[0][0];
    PgSnapshot s = PgSnapshot::Parse(text).value();
    for (uint64_t xid : {before_xid, open_xid, between_xid, late_xid, after_xid}) {
      EXPECT_EQ(s.Widen(Low(xid)), xid);
      std::string visible = Query(conn, "SELECT pg_visible_in_snapshot($1::xid8, $2)",
                                  {std::to_string(xid), text})[0][0];
      EXPECT_EQ(s.Sees(Low(xid)), visible == "t") << xid << " in " << text;
    }
    Query(conn, "COMMIT");
  }
}

}  // namespace
}  // namespace pgslotd::test
