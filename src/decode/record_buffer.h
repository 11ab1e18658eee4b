// Records: what a formatter hands a sink.
//
// A record is one output unit: a line of JSON, or one raw plugin message.
// Its bytes, '\n' included, lie back to back with the other records' in one
// byte stream (what a file, pipe or stdout writes as it is); its
// description says where it ends in that stream, the position it came
// from, the transaction it belongs to and, for json, the table and the key
// (what a sink that routes records, such as a Kafka topic and partition,
// needs).
//
// The formatter appends a record's bytes to bytes() and then calls
// EndRecord() with its description. The slot's sink writer hands records to
// the sink from the front (Consume) and drops them from the back after a
// failure (Truncate). Storage is reused: after warm-up neither appending nor
// consuming allocates.
//
// Offsets: RecordInfo::end counts the bytes ever appended to this buffer;
// offset() is the count at the front of bytes(), so a record's end within
// the bytes now held is `end - offset()`.
//
// Not thread-safe: owned by one slot worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pg/lsn.h"
#include "util/out_buffer.h"

namespace pgslotd {

enum class RecordKind : uint8_t {
  kRaw,       // a plugin message as it came (raw output)
  kChange,    // an insert, update or delete of one row
  kTruncate,  // a truncate of one or more tables
  kMessage,   // a logical decoding message (pg_logical_emit_message)
  kBegin,     // a transaction's begin line
  kCommit,    // a transaction's commit line
};

// The description of one record.
struct RecordInfo {
  uint64_t end = 0;              // see Offsets above
  Lsn lsn = kInvalidLsn;         // the message's position (dataStart)
  Lsn commit_lsn = kInvalidLsn;  // its transaction's commit; unknown: invalid
  uint32_t xid = 0;              // its transaction; 0: none or unknown
  uint32_t table = 0;            // TableName id (RecordBuffer::table); 0: none
  uint32_t key_length = 0;       // bytes of its key; 0: no key
  uint64_t key_end = 0;          // where its key ends among the key bytes
  RecordKind kind = RecordKind::kRaw;
  // No transaction is open after this record: a place where a sink that
  // groups whole transactions (a Kafka transaction) may end a group.
  bool unit_end = false;
};

// A table's name, for records that belong to one.
struct TableName {
  std::string schema;
  std::string table;
};

// One record handed to a sink: its description, bytes and key.
struct Record {
  const RecordInfo* info;
  std::string_view payload;  // without the trailing '\n'
  std::string_view key;      // the key columns as a JSON object; empty: none
  const TableName* table;    // null: none
};

class RecordBuffer {
 public:
  explicit RecordBuffer(size_t initial = 1 << 20) : bytes_(initial), keys_(kKeyBufferSize) {}

  // --- The formatter's side ---------------------------------------------
  // Where the bytes of the record being written go.
  OutBuffer* bytes() { return &bytes_; }
  // Whether the sink routes by key: only then does a formatter write keys
  // (to key_bytes()); the other sinks need none and pay nothing for them.
  bool wants_keys() const { return wants_keys_; }
  void set_wants_keys(bool wants) { wants_keys_ = wants; }
  // Where the key of the record being written goes.
  OutBuffer* key_bytes() { return &keys_; }
  // Ends the record whose bytes (and key) were appended since the last
  // EndRecord; `info`'s end, key_end and key_length are filled in here.
  void EndRecord(RecordInfo info) {
    info.end = consumed_ + bytes_.size();
    info.key_end = keys_consumed_ + keys_.size();
    info.key_length = static_cast<uint32_t>(info.key_end - last_key_end_);
    last_key_end_ = info.key_end;
    records_.push_back(info);
  }
  // The newest record ends a unit (see RecordInfo::unit_end), if it ends
  // at the end of the bytes held; otherwise nothing changes.
  void MarkUnitEnd() {
    if (records_.size() > head_ && records_.back().end == consumed_ + bytes_.size()) {
      records_.back().unit_end = true;
    }
  }
  // The id of `schema`.`table`, the same for the same name for the life of
  // the buffer (ids are never reused, so no record outlives its name).
  uint32_t InternTable(std::string_view schema, std::string_view table);
  const TableName* table(uint32_t id) const { return id == 0 ? nullptr : &tables_[id - 1]; }

  // --- The sink writer's side -------------------------------------------
  const char* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  size_t capacity() const { return bytes_.capacity(); }
  // The count of bytes consumed so far: the offset of data()[0].
  uint64_t offset() const { return consumed_; }
  // Records that end within the bytes held, oldest first.
  size_t record_count() const { return records_.size() - head_; }
  const RecordInfo& info(size_t i) const { return records_[head_ + i]; }
  // Record i as a sink sees it (it must start at or after offset()).
  Record record(size_t i) const;
  // Drops the first `n` bytes, and the records and keys that end within
  // them.
  void Consume(size_t n);
  // Keeps the first `n` bytes (a record boundary) and the records that end
  // within them; drops the rest, keys included.
  void Truncate(size_t n);
  void Clear() { Truncate(0); }
  // Gives up storage grown past `initial` bytes, when empty.
  void Shrink(size_t initial);
  // For tests: the descriptions held, consumed ones not yet dropped included.
  size_t descriptions_held() const { return records_.size(); }

 private:
  static constexpr size_t kKeyBufferSize = 4096;
  static constexpr size_t kCompactAfter = 1024;

  OutBuffer bytes_;
  OutBuffer keys_;
  bool wants_keys_ = false;
  uint64_t consumed_ = 0;       // bytes consumed from the front, ever
  uint64_t keys_consumed_ = 0;  // key bytes consumed from the front, ever
  uint64_t last_key_end_ = 0;   // key_end of the newest record
  std::vector<RecordInfo> records_;
  size_t head_ = 0;  // records_[0, head_) are consumed
  std::deque<TableName> tables_;
  std::unordered_map<std::string, uint32_t> table_ids_;
};

}  // namespace pgslotd
