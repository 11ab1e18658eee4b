#include "snapshot/table_reader.h"

#include <poll.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "pg/quote.h"
#include "snapshot/chunk_query.h"

namespace pgslotd {

namespace {

// The server's text for a bool.
bool IsTrue(const char* v) { return v[0] == 't'; }

}  // namespace

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const std::string& v : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

bool ParseTextArray(std::string_view text, std::vector<std::string>* values) {
  values->clear();
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return false;
  size_t i = 1;
  const size_t end = text.size() - 1;
  while (i < end) {
    std::string value;
    bool quoted = text[i] == '"';
    if (quoted) {
      ++i;
      while (i < end && text[i] != '"') {
        if (text[i] == '\\') ++i;
        if (i >= end) return false;
        value.push_back(text[i++]);
      }
      if (i >= end) return false;
      ++i;  // the closing quote
    } else {
      while (i < end && text[i] != ',') value.push_back(text[i++]);
      if (value.empty()) return false;
    }
    if (quoted || value != "NULL") values->push_back(std::move(value));
    if (i < end) {
      if (text[i] != ',') return false;
      ++i;
      if (i == end) return false;  // a trailing comma
    }
  }
  return true;
}

Status TableReader::Connect(const std::vector<std::pair<std::string, std::string>>& params,
                            Clock::time_point deadline) {
  if (conn_.connected()) return Status::Ok();
  Status s = conn_.Connect(params, deadline);
  if (!s.ok()) conn_.Close();
  return s;
}

Result<PgResultPtr> TableReader::Run(const std::string& sql, const std::vector<std::string>& params,
                                     Clock::time_point deadline) {
  Result<PgResultPtr> r = conn_.QueryParams(sql, params, deadline);
  if (!r.ok()) Close();  // a failed or interrupted command: cancel it
  return r;
}

Result<std::vector<std::pair<std::string, std::string>>> TableReader::ListTables(
    const std::vector<std::string>& publications, Clock::time_point deadline) {
  Result<PgResultPtr> r =
      Run("SELECT DISTINCT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables "
          "WHERE pubname = ANY($1::text[]) ORDER BY 1, 2",
          {TextArrayLiteral(publications)}, deadline);
  if (!r.ok()) return r.status().Prefixed("listing the tables of the publications");
  std::vector<std::pair<std::string, std::string>> tables;
  PGresult* res = r.value().get();
  for (int i = 0; i < PQntuples(res); ++i) {
    tables.emplace_back(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
  }
  return tables;
}

Result<TableDescription> TableReader::Describe(const std::string& schema, const std::string& table,
                                               const std::vector<std::string>& publications,
                                               Clock::time_point deadline) {
  // One row per publication of the table. PostgreSQL 15 refuses different
  // column lists for one table, so every row's attnames are the same; a
  // publication without a row filter publishes every row.
  Result<PgResultPtr> r =
      Run("SELECT c.oid, c.relreplident, pt.attnames::text[]::text, pt.rowfilter, "
          "pt.rowfilter IS NULL, c.reltuples::bigint FROM pg_catalog.pg_publication_tables pt "
          "JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname "
          "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename "
          "WHERE pt.pubname = ANY($1::text[]) AND pt.schemaname = $2 AND pt.tablename = $3",
          {TextArrayLiteral(publications), schema, table}, deadline);
  std::string name = schema + "." + table;
  if (!r.ok()) return r.status().Prefixed("describing table " + name);
  PGresult* res = r.value().get();
  if (PQntuples(res) == 0) {
    return Status::SlotFatal("table " + name + " is in none of the slot's publications");
  }
  TableDescription d;
  d.schema = schema;
  d.table = table;
  d.oid = static_cast<uint32_t>(std::strtoul(PQgetvalue(res, 0, 0), nullptr, 10));
  d.replica_identity = PQgetvalue(res, 0, 1)[0];
  d.estimated_rows = std::max<int64_t>(-1, std::strtoll(PQgetvalue(res, 0, 5), nullptr, 10));
  bool every_row = false;
  for (int i = 0; i < PQntuples(res); ++i) {
    if (IsTrue(PQgetvalue(res, i, 4))) {
      every_row = true;
    } else {
      d.row_filters.emplace_back(PQgetvalue(res, i, 3));
    }
  }
  if (every_row) d.row_filters.clear();
  Status s = ReadColumns(&d, PQgetvalue(res, 0, 2), deadline);
  if (s.ok()) s = ReadKey(&d, deadline);
  if (!s.ok()) return s.Prefixed("describing table " + name);
  return d;
}

Status TableReader::ReadColumns(TableDescription* table, const std::string& attnames,
                                Clock::time_point deadline) {
  Result<PgResultPtr> r =
      Run("SELECT attname::text, atttypid FROM pg_catalog.pg_attribute WHERE attrelid = $1::oid "
          "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' "
          "AND attname = ANY($2::text[]) ORDER BY attnum",
          {std::to_string(table->oid), attnames}, deadline);
  if (!r.ok()) return r.status();
  PGresult* res = r.value().get();
  for (int i = 0; i < PQntuples(res); ++i) {
    TableColumn col;
    col.name = PQgetvalue(res, i, 0);
    col.type_oid = static_cast<uint32_t>(std::strtoul(PQgetvalue(res, i, 1), nullptr, 10));
    table->columns.push_back(std::move(col));
  }
  return Status::Ok();
}

Status TableReader::ReadKey(TableDescription* table, Clock::time_point deadline) {
  Result<PgResultPtr> r = Run(KeyColumnsQuery(), {std::to_string(table->oid)}, deadline);
  if (!r.ok()) return r.status();
  PGresult* res = r.value().get();
  for (int i = 0; i < PQntuples(res); ++i) {
    table->key_columns.emplace_back(PQgetvalue(res, i, 0));
    table->key_types.emplace_back(PQgetvalue(res, i, 1));
  }
  return Status::Ok();
}

Status TableReader::Pause(int ms) {
  struct pollfd p = {wakeup_fd_, POLLIN, 0};
  (void)::poll(&p, 1, ms);
  if (stop_->load(std::memory_order_acquire)) return Status::Interrupted();
  return Status::Ok();
}

Status TableReader::BeginPass(const std::vector<uint32_t>& recently_committed,
                              Clock::time_point deadline) {
  // The transactions that have committed but are still invisible to new
  // snapshots: in the snapshot's in-progress list when below xmax, and in
  // no list at all from xmax up to the next xid (xmax is the last completed
  // xid + 1). Taken once, so that the wait is for a fixed set, never for a
  // stream of new commits.
  Result<PgResultPtr> r =
      Run("WITH s AS (SELECT pg_catalog.pg_current_snapshot() AS s, "
          "pg_catalog.pg_current_xact_id() AS n) "
          "SELECT x::text FROM s, LATERAL (SELECT x FROM pg_catalog.pg_snapshot_xip(s.s) x "
          "UNION ALL SELECT g::text::xid8 FROM generate_series("
          "pg_catalog.pg_snapshot_xmax(s.s)::text::bigint, s.n::text::bigint - 1) g) v "
          "WHERE pg_catalog.pg_xact_status(x) = 'committed'",
          {}, deadline);
  if (!r.ok()) return r.status().Prefixed("waiting for committed transactions");
  std::vector<uint64_t> committed;
  for (int i = 0; i < PQntuples(r.value().get()); ++i) {
    committed.push_back(std::strtoull(PQgetvalue(r.value().get(), i, 0), nullptr, 10));
  }
  for (;;) {
    r = Run("SELECT pg_catalog.pg_current_snapshot()::text", {}, deadline);
    if (!r.ok()) return r.status().Prefixed("waiting for committed transactions");
    Result<PgSnapshot> snapshot = PgSnapshot::Parse(PQgetvalue(r.value().get(), 0, 0));
    if (!snapshot.ok()) return snapshot.status().Prefixed("waiting for committed transactions");
    const PgSnapshot& now = snapshot.value();
    bool waiting = std::any_of(committed.begin(), committed.end(),
                               [&](uint64_t x) { return !now.SeesFull(x); }) ||
                   std::any_of(recently_committed.begin(), recently_committed.end(),
                               [&](uint32_t x) { return !now.Sees(x); });
    if (!waiting) return Status::Ok();
    if (Clock::now() >= deadline) {
      return Status::Retryable(
          "waiting for committed transactions to become visible: timed out (a synchronous "
          "standby that does not confirm holds them)");
    }
    Status s = Pause(10);
    if (!s.ok()) return s;
  }
}

namespace {

// The chunk query of `table` as described.
ChunkQuery QueryOf(const TableDescription& table) {
  ChunkQuery q;
  q.schema = table.schema;
  q.table = table.table;
  for (const TableColumn& c : table.columns) q.columns.push_back(c.name);
  q.key_columns = table.key_columns;
  q.key_types = table.key_types;
  q.row_filters = table.row_filters;
  return q;
}

}  // namespace

Result<Chunk> TableReader::Read(const TableDescription& table,
                                const std::vector<std::string>& after_key, uint32_t limit,
                                const std::string& watermark, Clock::time_point deadline) {
  ChunkQuery q = QueryOf(table);
  q.limit = limit;
  return ReadChunk(table, q.Sql(!after_key.empty()), after_key, watermark, deadline);
}

Result<Chunk> TableReader::ReadKeys(const TableDescription& table,
                                    const std::vector<std::vector<std::string>>& keys,
                                    const std::string& watermark, Clock::time_point deadline) {
  std::vector<std::string> params;
  for (const std::vector<std::string>& key : keys) {
    params.insert(params.end(), key.begin(), key.end());
  }
  return ReadChunk(table, QueryOf(table).SqlForKeys(keys.size()), params, watermark, deadline);
}

Result<Chunk> TableReader::ReadChunk(const TableDescription& table, const std::string& sql,
                                     const std::vector<std::string>& params,
                                     const std::string& watermark, Clock::time_point deadline) {
  std::string what = "reading a chunk of table " + table.name();
  Chunk chunk;
  chunk.watermark = watermark;
  // The snapshot is taken by the transaction's first statement, and the
  // watermark written after the rows: every transaction the snapshot sees
  // committed before the watermark. The transaction takes an xid so that
  // its commit flushes the WAL, and the message reaches the stream at once.
  Result<PgResultPtr> r = Run("BEGIN ISOLATION LEVEL REPEATABLE READ", {}, deadline);
  // A table without a key is read whole (snapshot_keyless: read_whole),
  // locked against writes first: every transaction that wrote it has then
  // ended, so the snapshot sees them all, and none changes it until the
  // rows are read. The lock waits 2 s at most (writers queue behind a
  // waiting lock); a timeout (55P03) is tried again a second later.
  if (r.ok() && table.key_columns.empty()) {
    r = Run("SET LOCAL lock_timeout = '2s'", {}, deadline);
    if (r.ok()) {
      r = Run("LOCK TABLE ONLY " + QuoteIdent(table.schema) + "." + QuoteIdent(table.table) +
                  " IN SHARE MODE",
              {}, deadline);
    }
  }
  if (r.ok()) r = Run("SELECT pg_catalog.pg_current_snapshot()::text", {}, deadline);
  if (!r.ok()) return r.status().Prefixed(what);
  Result<PgSnapshot> snapshot = PgSnapshot::Parse(PQgetvalue(r.value().get(), 0, 0));
  if (!snapshot.ok()) {
    Close();
    return snapshot.status().Prefixed(what);
  }
  chunk.snapshot = snapshot.value();
  r = Run(sql, params, deadline);
  if (!r.ok()) return r.status().Prefixed(what);
  chunk.rows = std::move(r.value());
  r = Run("SET LOCAL synchronous_commit = local", {}, deadline);
  if (r.ok()) r = Run("SELECT pg_catalog.pg_current_xact_id()", {}, deadline);
  if (r.ok()) {
    r = Run("SELECT pg_catalog.pg_logical_emit_message(false, $1, $2)::text",
            {kWatermarkPrefix, chunk.watermark}, deadline);
  }
  if (r.ok()) {
    std::optional<Lsn> end = ParseLsn(PQgetvalue(r.value().get(), 0, 0));
    chunk.watermark_end = end.value_or(kInvalidLsn);
    r = Run("COMMIT", {}, deadline);
  }
  if (!r.ok()) return r.status().Prefixed("writing the watermark of a chunk of " + table.name());
  int n = chunk.row_count();
  if (n > 0) {
    int first_key = PQnfields(chunk.rows.get()) - static_cast<int>(table.key_columns.size());
    for (int c = first_key; c < PQnfields(chunk.rows.get()); ++c) {
      chunk.last_key.emplace_back(PQgetvalue(chunk.rows.get(), n - 1, c));
    }
  }
  return chunk;
}

}  // namespace pgslotd
