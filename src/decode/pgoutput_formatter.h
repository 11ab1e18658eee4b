// The json format: decodes the messages of PostgreSQL's pgoutput plugin
// (protocol chapter "Logical Replication Message Formats", proto_version 1
// and 2, with or without streaming) into one JSON object per line per
// change. docs/output-formats.md describes the output users see.
//
// Messages handled: Begin, Commit, Origin, Relation, Type, Insert, Update,
// Delete, Truncate, Message, Stream Start, Stream Stop, Stream Commit and
// Stream Abort. Relation, Type and Origin produce no line; they update the
// relation cache (keyed by relation id, an entry replaced whenever the
// server sends the relation again) or the transaction's origin.
//
// Ordinary transactions: every change is appended to `out` as soon as its
// message arrives (its commit position and time come from Begin), so memory
// does not grow with the size of a transaction.
//
// Streamed transactions (proto_version 2, streaming on): between Stream
// Start and Stream Stop each change message carries the id of the
// (sub)transaction that made it. Its line is rendered at once, except for
// commit_lsn and commit_time, which only Stream Commit knows, and put in a
// Spool (see spool.h) under the top-level transaction id, with the
// subtransaction id and the offset where the commit fields go; the spooled
// bytes start with the record's description (position, table, kind) and
// end with its key. Stream Commit appends the surviving lines to `out` in
// order as records, with the commit fields filled in; Stream Abort drops the
// whole transaction or one subtransaction's lines.
//
// Errors: a message that is truncated, of unknown type, for an unknown
// relation, with a tuple whose column count does not match its relation, or
// out of place (a change outside a transaction, a Begin inside one, nested
// Stream Start) returns kRetryable with a message starting "pgoutput: ",
// and appends nothing to `out` for that message (one exception: when a spool
// file cannot be read back at Stream Commit, the lines before the failure
// are already in `out`; the worker reconnects without acknowledging them and
// the server sends the transaction again). Reading never goes past the
// payload. Bytes after the last field a message type defines are ignored
// (later protocol versions append fields). Values the server would never
// send (an int4 column holding "abc") are not errors: they are written as
// JSON strings, so every output line is valid JSON.
//
// Performance: after warm-up, formatting a change allocates nothing (tuple
// views, the relation cache's pre-escaped names and the line buffer are
// reused) and makes no system call unless it is spooled to disk. Looking
// for JSON document nulls visits only a relation's json and jsonb columns.
//
// Not thread-safe: owned by one slot worker.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "decode/change_observer.h"
#include "decode/formatter.h"
#include "decode/primary_keys.h"
#include "decode/record_buffer.h"
#include "decode/spool.h"
#include "pg/lsn.h"
#include "util/out_buffer.h"
#include "util/status.h"

namespace pgslotd {

struct JsonOptions {
  // Also write a line for each transaction's begin and commit.
  bool include_transactions = false;
  // Where streamed transactions are spooled; created (one level) if
  // missing. Empty: streamed transactions are held in memory only.
  std::string spool_dir;
  // Bytes of streamed changes held in memory, across all transactions,
  // before they go to spool files.
  uint64_t spool_memory = 4u << 20;
  // Part of spool file names ([a-z0-9_]*), so that each slot's files can be
  // told apart and stale ones cleared at start.
  std::string slot_name;
  // Where the primary keys of tables whose replica identity is not the
  // default are read (decode/primary_keys.h), when records want keys; not
  // owned. Null: only tables with the default replica identity get keys.
  PrimaryKeys* primary_keys = nullptr;
  // Told the keys of the watched tables' committed changes (a snapshot
  // pass, decode/change_observer.h); not owned. Null: none.
  ChangeObserver* observer = nullptr;
};

// Defined in formatter.cc.
std::unique_ptr<Formatter> MakePgoutputFormatter(const JsonOptions& options);

class PgoutputFormatter : public Formatter {
 public:
  // Clears stale spool files of this slot (ClearStaleSpools).
  explicit PgoutputFormatter(const JsonOptions& options);
  ~PgoutputFormatter() override;

  Status Format(std::string_view payload, Lsn lsn, RecordBuffer* out) override;
  // Drops the relation cache, any open or streamed transaction and all
  // spool files, then clears stale spool files.
  void Reset() override;
  bool HasMoreOutput() const override { return replaying_; }
  bool InTransaction() const override { return in_txn_; }
  bool EndedTransaction() const override { return ended_txn_; }
  Status Continue(RecordBuffer* out, size_t budget) override;

  // Removes spool_dir/pgslotd-<slot>-<pid>-<xid>.spool files of this slot
  // that no running formatter holds (left by a process that ended, or by
  // this one); see Spool::ClearStale.
  void ClearStaleSpools();

  // The streamed transactions begun and not yet committed or aborted.
  std::vector<uint32_t> OpenStreams() const {
    std::vector<uint32_t> xids;
    for (const auto& [xid, txn] : streams_) xids.push_back(xid);
    return xids;
  }
  // Tells `observer` (not owned; null: none) the watched tables' changes
  // from the next message on (JsonOptions::observer).
  void set_observer(ChangeObserver* observer);

  // --- Snapshots' read lines -------------------------------------------
  // A table as a snapshot reads it: its columns (names and type OIDs, as
  // pg_attribute has them, which is what pgoutput announces) in the order
  // the values of its rows come, and the names of its key's columns (each
  // among `columns`). Returns the id FormatRead and ReadKey take; ids stay
  // valid until ForgetReadTables() (Reset keeps them: a snapshot goes on
  // across sessions).
  struct ReadColumn {
    std::string name;
    uint32_t type_oid = 0;
  };
  uint32_t DescribeReadTable(std::string_view schema, std::string_view table,
                             const std::vector<ReadColumn>& columns,
                             const std::vector<std::string>& key_columns);
  void ForgetReadTables() { read_tables_.clear(); }
  // One value of a row read by a snapshot: its type's output text, as
  // libpq's text format gives it.
  struct ReadValue {
    bool null = false;
    std::string_view text;
  };
  // Appends `{"op":"read","lsn":..,"schema":..,"table":..,"new":{..}}` for
  // the row `values` (one per column) of read table `table`, encoded as an
  // insert of the same row would be, as one record (a kChange, with the
  // table and, when `out` wants keys, the key). `lsn` is the position the
  // line is written at (the chunk's watermark).
  void FormatRead(uint32_t table, const std::vector<ReadValue>& values, Lsn lsn, RecordBuffer* out);
  // The row's key as the observer's keys are written; empty if a key value
  // is NULL.
  std::string_view ReadKey(uint32_t table, const std::vector<ReadValue>& values);

  // For tests: the spool of streamed transactions.
  const Spool& spool() const { return spool_; }
  bool GetSpoolFigures(SpoolFigures* figures) const override {
    figures->memory_bytes = spool_.memory_used();
    figures->disk_bytes = spool_.disk_used();
    return true;
  }

 private:
  // How a column's text value becomes JSON, from its type OID.
  enum class ValueKind : uint8_t { kNumber, kBool, kJson, kString };

  struct Column {
    std::string name;
    std::string key;  // "\"<escaped name>\":"
    uint32_t type_oid = 0;
    ValueKind kind = ValueKind::kString;
    bool in_identity = false;  // flagged as part of the replica identity
  };

  struct Relation {
    std::string schema;
    std::string table;
    std::string display_name;  // schema.table, unescaped, for messages
    std::string fields;        // "\"schema\":\"...\",\"table\":\"...\""
    std::string qualified;     // "\"schema.table\"" escaped, for truncate
    std::vector<Column> columns;
    // Indexes of the json and jsonb columns, the only ones that can hold
    // the JSON document null: empty for most tables, so that looking for
    // it costs them nothing.
    std::vector<uint16_t> json_columns;
    // Indexes of the primary key's columns, in column order; empty for a
    // table without one (its records have no key).
    std::vector<uint16_t> key_columns;
    // Its name's id in the record buffer it was last written to.
    mutable const RecordBuffer* named_in = nullptr;
    mutable uint32_t table_id = 0;
    // Its watch by the observer, as of the observer's generation
    // watch_generation (0: not asked yet): watched or not, the watch's id
    // and its key's column indexes (empty: a key column is missing).
    mutable uint64_t watch_generation = 0;
    mutable bool watched = false;
    mutable uint32_t watch_id = 0;
    mutable std::vector<uint16_t> watch_key;
  };

  // A change of a watched table in a streamed transaction, told to the
  // observer at its Stream Commit.
  struct PendingChange {
    uint32_t subxid = 0;
    uint32_t watch_id = 0;
    uint32_t key_offset = 0;  // in PendingChanges::keys
    uint32_t key_length = 0;
    bool lacks_toast = false;
    bool truncate = false;
  };
  struct PendingChanges {
    std::vector<PendingChange> changes;
    std::string keys;
  };

  // One column of a TupleData part: kind 'n', 'u', 't' or 'b' and its bytes.
  struct Datum {
    char kind = 'n';
    std::string_view data;
  };

  // The state of one streamed (top-level) transaction between blocks.
  struct StreamTxn {
    Lsn first_lsn = 0;         // of its first Stream Start
    std::string origin_field;  // ",\"origin\":\"...\"" or empty
  };

  class Reader;
  class ReplayWriter;

  Status HandleBegin(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleCommit(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleOrigin(Reader* r);
  // How values of a type become JSON.
  static ValueKind KindOf(uint32_t type_oid);
  // Fills `rel`'s names (plain, and escaped for the lines).
  static void NameRelation(std::string_view nspname, std::string_view relname, Relation* rel);
  // Caches the relation; finds its key columns when `out` wants keys.
  Status HandleRelation(Reader* r, const RecordBuffer& out);
  Status HandleType(Reader* r);
  Status HandleInsert(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleUpdate(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleDelete(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleTruncate(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleMessage(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleStreamStart(Reader* r, Lsn lsn);
  Status HandleStreamStop();
  Status HandleStreamCommit(Reader* r, Lsn lsn, RecordBuffer* out);
  Status HandleStreamAbort(Reader* r);

  // Reads the streamed-transaction xid of a change message inside a stream
  // block (into *subxid), or checks that a transaction is open outside one.
  Status ReadChangeXid(Reader* r, const char* what, uint32_t* subxid);
  // The relation with `id`, or an error naming the message.
  Status FindRelation(uint32_t id, const char* what, const Relation** rel);
  // Parses a TupleData part into *tuple, checking it against `rel`.
  Status ReadTuple(Reader* r, const Relation& rel, const char* what, std::vector<Datum>* tuple);

  // Where the current change's line goes: `out`'s bytes, or the scratch
  // line of a streamed change (after room for its spooled description).
  OutBuffer* LineTarget(RecordBuffer* out);
  // The description of the current change's record (kind, position,
  // transaction, table).
  RecordInfo LineInfo(RecordKind kind, Lsn lsn, const Relation* rel, RecordBuffer* out);
  // Where the current change's key goes, or null when no key is wanted.
  OutBuffer* KeyTarget(RecordBuffer* out);
  // Writes the columns `key` of `tuple` (those of `fallback`, an old
  // tuple, where the new one leaves a value out) as a JSON object, in the
  // order of `key`; nothing when `key` is empty or the tuple lacks a key
  // value.
  void WriteKey(const Relation& rel, const std::vector<uint16_t>& key,
                const std::vector<Datum>& tuple, const std::vector<Datum>* fallback, OutBuffer* k);
  // Whether the observer watches `rel` (asking it again when its watches
  // changed).
  bool Watched(const Relation& rel);
  // Tells the observer (or, streamed, keeps for Stream Commit) that the
  // current transaction changed the row of `tuple` (`fallback` as for
  // WriteKey).
  void Observe(const Relation& rel, uint32_t subxid, const std::vector<Datum>& tuple,
               const std::vector<Datum>* fallback, bool lacks_toast);
  void ObserveTruncate(const Relation& rel, uint32_t subxid);
  // Tells the observer the changes kept for streamed transaction `xid`.
  void TellPending(uint32_t xid);

  // Writes `{"op":"<op>","lsn":..,"xid":..` and the commit and origin
  // fields (or, streamed, remembers where the commit fields go).
  void WriteChangeHead(std::string_view op, Lsn lsn, OutBuffer* o);
  // Ends a change line and its record; a streamed one goes to the spool
  // with its description and key.
  Status FinishLine(uint32_t subxid, const RecordInfo& info, OutBuffer* o, RecordBuffer* out);
  void WriteTuple(const Relation& rel, const std::vector<Datum>& tuple, bool key_only,
                  OutBuffer* o);
  void WriteValue(const Column& col, const Datum& d, OutBuffer* o);
  void WriteUnchangedToast(const Relation& rel, const std::vector<Datum>& tuple, OutBuffer* o);
  // Lists the names of the columns of `tuple` whose value is the JSON
  // document null (not SQL NULL, which is written `null` too) after `head`
  // (",\"json_null\":[" for a new tuple, ",\"old_json_null\":[" for an old
  // one), in column order; writes nothing when there are none.
  void WriteJsonNulls(const Relation& rel, const std::vector<Datum>& tuple, std::string_view head,
                      OutBuffer* o);
  // Whether `d` is the JSON document null, in text or binary form.
  static bool IsJsonNull(const Column& col, const Datum& d);
  // Fills *fields with ",\"commit_lsn\":\"..\",\"commit_time\":\"..\"".
  static void FormatCommitFields(Lsn commit_lsn, int64_t commit_time, std::string* fields);
  void WriteTransactionLine(RecordKind kind, Lsn lsn, uint32_t xid, Lsn commit_lsn,
                            const std::string& commit_fields, RecordBuffer* out);
  void ClearState();

  JsonOptions options_;
  std::unordered_map<uint32_t, Relation> relations_;
  std::vector<std::string> key_names_;  // HandleRelation's, reused

  // The ordinary transaction between Begin and Commit.
  bool in_txn_ = false;
  bool ended_txn_ = false;  // the output completed last ended a transaction
  uint32_t txn_xid_ = 0;
  Lsn txn_commit_lsn_ = kInvalidLsn;
  std::string commit_fields_;
  std::string origin_field_;

  // The stream block between Stream Start and Stream Stop.
  bool in_stream_ = false;
  uint32_t stream_xid_ = 0;
  StreamTxn* stream_txn_ = nullptr;
  std::unordered_map<uint32_t, StreamTxn> streams_;
  Spool spool_;
  std::string stream_commit_fields_;
  // A Stream Commit whose lines are still being replayed (HasMoreOutput/Continue).
  static constexpr size_t kReplayBudget = 1 << 20;
  bool replaying_ = false;
  uint32_t replay_xid_ = 0;
  Lsn replay_commit_lsn_ = kInvalidLsn;      // the Stream Commit's position
  Lsn replay_txn_commit_lsn_ = kInvalidLsn;  // the transaction's commit_lsn

  // Reused per message.
  OutBuffer line_{4096};
  OutBuffer line_key_{256};           // the key of a streamed change
  uint32_t split_ = Spool::kNoSplit;  // of the streamed line being written
  std::unordered_map<uint32_t, PendingChanges> pending_changes_;  // by streamed xid
  std::vector<Relation> read_tables_;                             // DescribeReadTable's
  OutBuffer observed_key_{256};
  std::vector<Datum> old_tuple_;
  std::vector<Datum> new_tuple_;
  std::string json_stack_;
};

}  // namespace pgslotd
