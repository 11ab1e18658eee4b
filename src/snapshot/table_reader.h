// Reads a table for a snapshot pass, a chunk at a time, on a plain
// connection of its own (docs/design-snapshots.md).
//
// Each chunk is one short REPEATABLE READ transaction: its snapshot
// (pg_current_snapshot()), the rows after the last key read, and then the
// chunk's watermark, a non-transactional logical decoding message that the
// slot's stream delivers after every transaction the snapshot sees. No
// snapshot is exported and no transaction outlives its chunk, so nothing
// holds back vacuum and a lost connection loses only the chunk in hand.
//
// Every wait polls the connection together with the owner's wakeup
// descriptor: a stop request interrupts it (kRetryable), and an interrupted
// or failed read cancels its command on the server before closing.
//
// Errors name the table. Not thread-safe: one reader thread owns it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "decode/change_observer.h"
#include "pg/lsn.h"
#include "pg/replication_conn.h"
#include "snapshot/pg_snapshot.h"
#include "util/status.h"

namespace pgslotd {

struct TableColumn {
  std::string name;
  uint32_t type_oid = 0;
};

// A table as the slot's publications publish it.
struct TableDescription {
  std::string schema;
  std::string table;
  uint32_t oid = 0;
  char replica_identity = 'd';  // pg_class.relreplident: d, n, f or i
  // The published columns (column lists applied; dropped and generated
  // columns left out), in attnum order, as pgoutput sends them.
  std::vector<TableColumn> columns;
  // The key the pass reads in order (snapshot/chunk_query.h); empty: none.
  std::vector<std::string> key_columns;
  std::vector<std::string> key_types;
  // The publications' row filters; empty: every row.
  std::vector<std::string> row_filters;
  // The planner's estimate of its rows (pg_class.reltuples, as of the last
  // VACUUM or ANALYZE), for --status; -1: unknown (never counted).
  int64_t estimated_rows = -1;
  // "schema.table", for messages.
  std::string name() const { return schema + "." + table; }
};

// One chunk read: its snapshot, its rows and the id of its watermark.
struct Chunk {
  PgSnapshot snapshot;
  // The rows in libpq's text format: the table's columns in order, then
  // the key's columns again.
  PgResultPtr rows;
  // The watermark message's content, as asked for, and where the server
  // wrote it (pg_logical_emit_message's answer: the end of its record, the
  // position the stream gives the message).
  std::string watermark;
  Lsn watermark_end = kInvalidLsn;
  // The key of the last row, as text in the key's order; empty when the
  // chunk has no rows.
  std::vector<std::string> last_key;
  int row_count() const { return rows ? PQntuples(rows.get()) : 0; }
};

class TableReader {
 public:
  using Clock = std::chrono::steady_clock;

  // `wakeup_fd` and `stop` as for ReplicationConn.
  TableReader(int wakeup_fd, const std::atomic<bool>* stop)
      : wakeup_fd_(wakeup_fd), stop_(stop), conn_(wakeup_fd, stop) {}

  // Connects with `params` (pg/conninfo.h BuildSnapshotParams) unless
  // connected.
  Status Connect(const std::vector<std::pair<std::string, std::string>>& params,
                 Clock::time_point deadline);
  // Cancels what runs and closes.
  void Close() { conn_.CancelAndClose(); }
  bool connected() const { return conn_.connected(); }

  // The tables of `publications` (schema, table), in name order.
  Result<std::vector<std::pair<std::string, std::string>>> ListTables(
      const std::vector<std::string>& publications, Clock::time_point deadline);

  // How `publications` publish schema.table. kSlotFatal if none publishes
  // it.
  Result<TableDescription> Describe(const std::string& schema, const std::string& table,
                                    const std::vector<std::string>& publications,
                                    Clock::time_point deadline);

  // Waits until every transaction that has committed is visible to new
  // snapshots: those the commit log says committed but which are still in
  // progress for a snapshot (listed, below its xmax, or not listed, from
  // xmax to the next xid), taken once at the start, and each of
  // `recently_committed` (the stream xids the worker saw commit last).
  // Call it after the worker has begun noting the table's changes and
  // before the pass's first Read: every transaction the worker processed
  // before then is then seen by every chunk's snapshot. Waits for those
  // committed transactions only, never for an open one, and never for one
  // that commits later.
  Status BeginPass(const std::vector<uint32_t>& recently_committed, Clock::time_point deadline);

  // Reads the next `limit` rows after `after_key` (text values in the key's
  // order; empty: from the start), then writes the watermark message with
  // content `watermark`. A table without a key is read whole.
  Result<Chunk> Read(const TableDescription& table, const std::vector<std::string>& after_key,
                     uint32_t limit, const std::string& watermark, Clock::time_point deadline);
  // The same for the rows with `keys` (each as Chunk::last_key is).
  Result<Chunk> ReadKeys(const TableDescription& table,
                         const std::vector<std::vector<std::string>>& keys,
                         const std::string& watermark, Clock::time_point deadline);

 private:
  Result<PgResultPtr> Run(const std::string& sql, const std::vector<std::string>& params,
                          Clock::time_point deadline);
  // The chunk transaction around `sql`: snapshot, rows, watermark.
  Result<Chunk> ReadChunk(const TableDescription& table, const std::string& sql,
                          const std::vector<std::string>& params, const std::string& watermark,
                          Clock::time_point deadline);
  Status ReadColumns(TableDescription* table, const std::string& attnames,
                     Clock::time_point deadline);
  Status ReadKey(TableDescription* table, Clock::time_point deadline);
  // Waits `ms` or until the wakeup descriptor fires with stop set.
  Status Pause(int ms);

  int wakeup_fd_;
  const std::atomic<bool>* stop_;
  ReplicationConn conn_;
};

// A text[] literal of `values` ({"a","b\"c"}), for an array parameter.
std::string TextArrayLiteral(const std::vector<std::string>& values);

// Parses a text[] value as the server prints it ({a,"b c",NULL}); NULL
// elements are left out. False if it is not one.
bool ParseTextArray(std::string_view text, std::vector<std::string>* values);

}  // namespace pgslotd
