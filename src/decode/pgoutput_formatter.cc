#include "decode/pgoutput_formatter.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "decode/json.h"

namespace pgslotd {

namespace {

// Type OIDs from pg_type.dat that get a JSON form other than a string.
constexpr uint32_t kBoolOid = 16;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kInt2Oid = 21;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kOidOid = 26;
constexpr uint32_t kJsonOid = 114;
constexpr uint32_t kFloat4Oid = 700;
constexpr uint32_t kFloat8Oid = 701;
constexpr uint32_t kJsonbOid = 3802;

// The lists of columns holding the JSON document null, of new and old.
constexpr std::string_view kJsonNullField = ",\"json_null\":[";
constexpr std::string_view kOldJsonNullField = ",\"old_json_null\":[";

// Truncate option bits.
constexpr uint8_t kTruncateCascade = 1;
constexpr uint8_t kTruncateRestartIdentity = 2;

void Put(OutBuffer* o, std::string_view s) { o->Append(s.data(), s.size()); }

void PutUnsigned(OutBuffer* o, uint64_t v) {
  char buf[24];
  o->Append(buf, json::FormatUnsigned(v, buf));
}

void PutLsn(OutBuffer* o, Lsn lsn) {
  char buf[json::kLsnBufferSize];
  o->Append(buf, json::FormatLsnTo(lsn, buf));
}

// Appends a column's name (its key without the ':') to a list: `head`
// before the first one, a comma before the others.
void PutListedName(std::string_view head, const std::string& key, bool* first, OutBuffer* o) {
  Put(o, *first ? head : ",");
  *first = false;
  o->Append(key.data(), key.size() - 1);
}

// A streamed change's spooled bytes: a description, the line, the key.
//   lsn u64 | table u32 | kind u32 | key length u32 | line | key
constexpr size_t kSpooledInfoSize = 20;

void PutSpooledInfo(const RecordInfo& info, uint32_t key_length, char* p) {
  uint32_t kind = static_cast<uint32_t>(info.kind);
  std::memcpy(p, &info.lsn, 8);
  std::memcpy(p + 8, &info.table, 4);
  std::memcpy(p + 12, &kind, 4);
  std::memcpy(p + 16, &key_length, 4);
}

// Reads a spooled entry's description back; false if it is too short.
bool GetSpooledInfo(std::string_view entry, RecordInfo* info, std::string_view* line,
                    std::string_view* key) {
  if (entry.size() < kSpooledInfoSize) return false;
  uint32_t kind;
  uint32_t key_length;
  std::memcpy(&info->lsn, entry.data(), 8);
  std::memcpy(&info->table, entry.data() + 8, 4);
  std::memcpy(&kind, entry.data() + 12, 4);
  std::memcpy(&key_length, entry.data() + 16, 4);
  if (key_length > entry.size() - kSpooledInfoSize) return false;
  info->kind = static_cast<RecordKind>(kind);
  *line = entry.substr(kSpooledInfoSize, entry.size() - kSpooledInfoSize - key_length);
  *key = entry.substr(entry.size() - key_length);
  return true;
}

std::string Hex2(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

// Whether a tuple leaves out an unchanged TOASTed value.
template <typename Tuple>
bool HasUnchangedValue(const Tuple& tuple) {
  for (const auto& d : tuple) {
    if (d.kind == 'u') return true;
  }
  return false;
}

Status Truncated(const char* what) {
  return Status::Retryable(std::string("pgoutput: truncated ") + what + " message");
}

}  // namespace

// Reads big-endian fields from a message, never past its end.
class PgoutputFormatter::Reader {
 public:
  explicit Reader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}

  bool U8(uint8_t* v) {
    if (end_ - p_ < 1) return false;
    *v = static_cast<uint8_t>(*p_++);
    return true;
  }
  bool U16(uint16_t* v) {
    uint64_t x;
    if (!Read(2, &x)) return false;
    *v = static_cast<uint16_t>(x);
    return true;
  }
  bool U32(uint32_t* v) {
    uint64_t x;
    if (!Read(4, &x)) return false;
    *v = static_cast<uint32_t>(x);
    return true;
  }
  bool U64(uint64_t* v) { return Read(8, v); }
  // A NUL-terminated string (the NUL is consumed, not returned).
  bool String(std::string_view* s) {
    if (p_ == end_) return false;
    const void* nul = std::memchr(p_, '\0', static_cast<size_t>(end_ - p_));
    if (!nul) return false;
    const char* z = static_cast<const char*>(nul);
    *s = std::string_view(p_, static_cast<size_t>(z - p_));
    p_ = z + 1;
    return true;
  }
  bool Bytes(size_t n, std::string_view* s) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    *s = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

 private:
  bool Read(int n, uint64_t* v) {
    if (end_ - p_ < n) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x = (x << 8) | static_cast<uint8_t>(p_[i]);
    p_ += n;
    *v = x;
    return true;
  }

  const char* p_;
  const char* end_;
};

// Writes replayed spool records to `out` as records, with the commit
// fields filled in.
class PgoutputFormatter::ReplayWriter : public Spool::Visitor {
 public:
  ReplayWriter(RecordBuffer* out, std::string_view commit_fields, uint32_t xid, Lsn commit_lsn)
      : out_(out), commit_fields_(commit_fields), xid_(xid), commit_lsn_(commit_lsn) {}
  void OnRecord(uint32_t split, std::string_view entry) override {
    RecordInfo info;
    std::string_view line;
    std::string_view key;
    if (!GetSpooledInfo(entry, &info, &line, &key)) return;  // never: we wrote it
    OutBuffer* o = out_->bytes();
    if (split == Spool::kNoSplit || split < kSpooledInfoSize ||
        split - kSpooledInfoSize > line.size()) {
      Put(o, line);
    } else {
      split -= kSpooledInfoSize;
      o->Append(line.data(), split);
      Put(o, commit_fields_);
      o->Append(line.data() + split, line.size() - split);
    }
    if (out_->wants_keys()) Put(out_->key_bytes(), key);
    info.xid = xid_;
    info.commit_lsn = commit_lsn_;
    out_->EndRecord(info);
  }

 private:
  RecordBuffer* out_;
  std::string_view commit_fields_;
  uint32_t xid_;
  Lsn commit_lsn_;
};

PgoutputFormatter::PgoutputFormatter(const JsonOptions& options)
    : options_(options), spool_(options.spool_dir, options.slot_name, options.spool_memory) {
  ClearStaleSpools();
}

PgoutputFormatter::~PgoutputFormatter() = default;

void PgoutputFormatter::ClearStaleSpools() { spool_.ClearStale(); }

void PgoutputFormatter::ClearState() {
  relations_.clear();
  in_txn_ = false;
  ended_txn_ = false;
  txn_xid_ = 0;
  commit_fields_.clear();
  origin_field_.clear();
  in_stream_ = false;
  stream_xid_ = 0;
  stream_txn_ = nullptr;
  streams_.clear();
  pending_changes_.clear();
  spool_.Clear();
  line_.Clear();
  replaying_ = false;
}

void PgoutputFormatter::Reset() {
  ClearState();
  ClearStaleSpools();
}

Status PgoutputFormatter::Format(std::string_view payload, Lsn lsn, RecordBuffer* out) {
  ended_txn_ = false;
  if (payload.empty()) return Status::Retryable("pgoutput: empty message");
  Reader r(payload.substr(1));
  switch (payload[0]) {
    case 'B':
      return HandleBegin(&r, lsn, out);
    case 'C':
      return HandleCommit(&r, lsn, out);
    case 'O':
      return HandleOrigin(&r);
    case 'R':
      return HandleRelation(&r, *out);
    case 'Y':
      return HandleType(&r);
    case 'I':
      return HandleInsert(&r, lsn, out);
    case 'U':
      return HandleUpdate(&r, lsn, out);
    case 'D':
      return HandleDelete(&r, lsn, out);
    case 'T':
      return HandleTruncate(&r, lsn, out);
    case 'M':
      return HandleMessage(&r, lsn, out);
    case 'S':
      return HandleStreamStart(&r, lsn);
    case 'E':
      return HandleStreamStop();
    case 'c':
      return HandleStreamCommit(&r, lsn, out);
    case 'A':
      return HandleStreamAbort(&r);
    default:
      return Status::Retryable("pgoutput: unknown message type " +
                               Hex2(static_cast<uint8_t>(payload[0])));
  }
}

void PgoutputFormatter::FormatCommitFields(Lsn commit_lsn, int64_t commit_time,
                                           std::string* fields) {
  char lsn[json::kLsnBufferSize];
  char time[json::kTimestampBufferSize];
  fields->assign(",\"commit_lsn\":\"");
  fields->append(lsn, json::FormatLsnTo(commit_lsn, lsn));
  fields->append("\",\"commit_time\":\"");
  fields->append(time, json::FormatTimestampTo(commit_time, time));
  fields->push_back('"');
}

void PgoutputFormatter::WriteTransactionLine(RecordKind kind, Lsn lsn, uint32_t xid, Lsn commit_lsn,
                                             const std::string& commit_fields, RecordBuffer* out) {
  OutBuffer* o = out->bytes();
  Put(o, kind == RecordKind::kBegin ? "{\"op\":\"begin" : "{\"op\":\"commit");
  Put(o, "\",\"lsn\":\"");
  PutLsn(o, lsn);
  Put(o, "\",\"xid\":");
  PutUnsigned(o, xid);
  Put(o, commit_fields);
  Put(o, "}\n");
  RecordInfo info;
  info.kind = kind;
  info.lsn = lsn;
  info.xid = xid;
  info.commit_lsn = commit_lsn;
  out->EndRecord(info);
}

Status PgoutputFormatter::HandleBegin(Reader* r, Lsn lsn, RecordBuffer* out) {
  if (in_stream_) return Status::Retryable("pgoutput: Begin message inside a streamed block");
  if (in_txn_) return Status::Retryable("pgoutput: Begin message inside a transaction");
  uint64_t final_lsn;
  uint64_t commit_time;
  uint32_t xid;
  if (!r->U64(&final_lsn) || !r->U64(&commit_time) || !r->U32(&xid)) return Truncated("Begin");
  in_txn_ = true;
  txn_xid_ = xid;
  txn_commit_lsn_ = final_lsn;
  FormatCommitFields(final_lsn, static_cast<int64_t>(commit_time), &commit_fields_);
  origin_field_.clear();
  if (options_.include_transactions) {
    WriteTransactionLine(RecordKind::kBegin, lsn, xid, txn_commit_lsn_, commit_fields_, out);
  }
  return Status::Ok();
}

Status PgoutputFormatter::HandleCommit(Reader* r, Lsn lsn, RecordBuffer* out) {
  if (in_stream_) return Status::Retryable("pgoutput: Commit message inside a streamed block");
  if (!in_txn_) return Status::Retryable("pgoutput: Commit message outside a transaction");
  uint8_t flags;
  uint64_t commit_lsn;
  uint64_t end_lsn;
  uint64_t commit_time;
  if (!r->U8(&flags) || !r->U64(&commit_lsn) || !r->U64(&end_lsn) || !r->U64(&commit_time)) {
    return Truncated("Commit");
  }
  if (options_.include_transactions) {
    WriteTransactionLine(RecordKind::kCommit, lsn, txn_xid_, txn_commit_lsn_, commit_fields_, out);
  }
  in_txn_ = false;
  ended_txn_ = true;
  origin_field_.clear();
  if (options_.observer) options_.observer->OnCommit(txn_xid_);
  return Status::Ok();
}

Status PgoutputFormatter::HandleOrigin(Reader* r) {
  uint64_t origin_lsn;
  std::string_view name;
  if (!r->U64(&origin_lsn) || !r->String(&name)) return Truncated("Origin");
  std::string* field = nullptr;
  if (in_stream_) {
    field = &stream_txn_->origin_field;
  } else if (in_txn_) {
    field = &origin_field_;
  } else {
    return Status::Ok();  // no transaction it could belong to
  }
  field->assign(",\"origin\":");
  json::StringOut so{field};
  json::AppendString(name, &so);
  return Status::Ok();
}

PgoutputFormatter::ValueKind PgoutputFormatter::KindOf(uint32_t type_oid) {
  switch (type_oid) {
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid:
    case kOidOid:
    case kFloat4Oid:
    case kFloat8Oid:
      return ValueKind::kNumber;
    case kBoolOid:
      return ValueKind::kBool;
    case kJsonOid:
    case kJsonbOid:
      return ValueKind::kJson;
    default:
      return ValueKind::kString;  // numeric (1700) too: exact, as text
  }
}

void PgoutputFormatter::NameRelation(std::string_view nspname, std::string_view relname,
                                     Relation* rel) {
  rel->schema.assign(nspname.data(), nspname.size());
  rel->table.assign(relname.data(), relname.size());
  rel->named_in = nullptr;
  rel->display_name.assign(nspname.data(), nspname.size());
  rel->display_name.push_back('.');
  rel->display_name.append(relname.data(), relname.size());
  rel->fields.assign("\"schema\":");
  json::StringOut fields{&rel->fields};
  json::AppendString(nspname, &fields);
  rel->fields.append(",\"table\":");
  json::AppendString(relname, &fields);
  rel->qualified.clear();
  json::StringOut qualified{&rel->qualified};
  json::AppendString(rel->display_name, &qualified);
}

Status PgoutputFormatter::HandleRelation(Reader* r, const RecordBuffer& out) {
  uint32_t xid;
  if (in_stream_ && !r->U32(&xid)) return Truncated("Relation");
  uint32_t id;
  std::string_view nspname;
  std::string_view relname;
  uint8_t replident;
  uint16_t ncols;
  if (!r->U32(&id) || !r->String(&nspname) || !r->String(&relname) || !r->U8(&replident) ||
      !r->U16(&ncols)) {
    return Truncated("Relation");
  }
  // Check every column before touching the cache, so a bad message leaves
  // the old entry as it was.
  Reader check = *r;
  for (uint16_t i = 0; i < ncols; ++i) {
    uint8_t flags;
    std::string_view name;
    uint32_t type_oid;
    uint32_t typmod;
    if (!check.U8(&flags) || !check.String(&name) || !check.U32(&type_oid) || !check.U32(&typmod)) {
      return Truncated("Relation");
    }
  }
  // The key's columns, when records want keys and the flags do not tell.
  bool look_up = out.wants_keys() && replident != 'd' && options_.primary_keys != nullptr;
  key_names_.clear();
  if (look_up) {
    Status s = options_.primary_keys->Lookup(id, &key_names_);
    if (!s.ok()) {
      return s.Prefixed("looking up the primary key of " + std::string(nspname) + "." +
                        std::string(relname));
    }
  }
  Relation& rel = relations_[id];
  NameRelation(nspname, relname, &rel);
  rel.watch_generation = 0;
  rel.columns.resize(ncols);
  rel.json_columns.clear();
  rel.key_columns.clear();
  for (Column& col : rel.columns) {
    uint8_t flags = 0;
    std::string_view name;
    uint32_t typmod;
    // Cannot fail: checked above.
    if (!r->U8(&flags) || !r->String(&name) || !r->U32(&col.type_oid) || !r->U32(&typmod)) {
      return Truncated("Relation");
    }
    col.name.assign(name.data(), name.size());
    col.key.clear();
    json::StringOut key{&col.key};
    json::AppendString(name, &key);
    col.key.push_back(':');
    col.in_identity = (flags & 1) != 0;
    auto index = static_cast<uint16_t>(&col - rel.columns.data());
    if (look_up ? std::find(key_names_.begin(), key_names_.end(), col.name) != key_names_.end()
                : replident == 'd' && col.in_identity) {
      rel.key_columns.push_back(index);
    }
    col.kind = KindOf(col.type_oid);
    if (col.kind == ValueKind::kJson) rel.json_columns.push_back(index);
  }
  // A key column the message leaves out (a publication's column list): no
  // key rather than part of one.
  if (rel.key_columns.size() < key_names_.size()) rel.key_columns.clear();
  return Status::Ok();
}

Status PgoutputFormatter::HandleType(Reader* r) {
  uint32_t xid;
  uint32_t oid;
  std::string_view nspname;
  std::string_view typname;
  if ((in_stream_ && !r->U32(&xid)) || !r->U32(&oid) || !r->String(&nspname) ||
      !r->String(&typname)) {
    return Truncated("Type");
  }
  return Status::Ok();
}

Status PgoutputFormatter::ReadChangeXid(Reader* r, const char* what, uint32_t* subxid) {
  if (in_stream_) {
    if (!r->U32(subxid)) return Truncated(what);
    return Status::Ok();
  }
  if (!in_txn_) {
    return Status::Retryable(std::string("pgoutput: ") + what + " message outside a transaction");
  }
  *subxid = txn_xid_;
  return Status::Ok();
}

Status PgoutputFormatter::FindRelation(uint32_t id, const char* what, const Relation** rel) {
  auto it = relations_.find(id);
  if (it == relations_.end()) {
    return Status::Retryable(std::string("pgoutput: ") + what + " message for unknown relation " +
                             std::to_string(id));
  }
  *rel = &it->second;
  return Status::Ok();
}

Status PgoutputFormatter::ReadTuple(Reader* r, const Relation& rel, const char* what,
                                    std::vector<Datum>* tuple) {
  uint16_t ncols;
  if (!r->U16(&ncols)) return Truncated(what);
  if (ncols != rel.columns.size()) {
    return Status::Retryable("pgoutput: tuple has " + std::to_string(ncols) +
                             " columns, relation " + rel.display_name + " has " +
                             std::to_string(rel.columns.size()));
  }
  tuple->resize(ncols);
  for (Datum& d : *tuple) {
    uint8_t kind;
    if (!r->U8(&kind)) return Truncated(what);
    d.kind = static_cast<char>(kind);
    d.data = std::string_view();
    switch (kind) {
      case 'n':
      case 'u':
        break;
      case 't':
      case 'b': {
        uint32_t len;
        if (!r->U32(&len) || !r->Bytes(len, &d.data)) return Truncated(what);
        break;
      }
      default:
        return Status::Retryable("pgoutput: unknown column kind " + Hex2(kind) + " in " + what +
                                 " message");
    }
  }
  return Status::Ok();
}

OutBuffer* PgoutputFormatter::LineTarget(RecordBuffer* out) {
  if (!in_stream_) return out->bytes();
  line_.Clear();
  char room[kSpooledInfoSize] = {};
  line_.Append(room, sizeof room);
  return &line_;
}

RecordInfo PgoutputFormatter::LineInfo(RecordKind kind, Lsn lsn, const Relation* rel,
                                       RecordBuffer* out) {
  RecordInfo info;
  info.kind = kind;
  info.lsn = lsn;
  info.xid = in_stream_ ? stream_xid_ : txn_xid_;
  if (!in_stream_) info.commit_lsn = txn_commit_lsn_;
  if (rel) {
    if (rel->named_in != out) {
      rel->table_id = out->InternTable(rel->schema, rel->table);
      rel->named_in = out;
    }
    info.table = rel->table_id;
  }
  return info;
}

OutBuffer* PgoutputFormatter::KeyTarget(RecordBuffer* out) {
  if (!out->wants_keys()) return nullptr;
  if (!in_stream_) return out->key_bytes();
  line_key_.Clear();
  return &line_key_;
}

void PgoutputFormatter::WriteKey(const Relation& rel, const std::vector<uint16_t>& key,
                                 const std::vector<Datum>& tuple,
                                 const std::vector<Datum>* fallback, OutBuffer* k) {
  // A key column is never NULL: one the tuple lacks (an old tuple of
  // another replica identity sends it as null) leaves the record without a
  // key rather than with a wrong one.
  for (uint16_t i : key) {
    const Datum* d = &tuple[i];
    if (d->kind == 'u' && fallback) d = &(*fallback)[i];
    if (d->kind == 'u' || d->kind == 'n') return;
  }
  bool first = true;
  for (uint16_t i : key) {
    const Datum* d = &tuple[i];
    if (d->kind == 'u' && fallback) d = &(*fallback)[i];
    k->Append(first ? '{' : ',');
    first = false;
    Put(k, rel.columns[i].key);
    WriteValue(rel.columns[i], *d, k);
  }
  if (!first) k->Append('}');
}

void PgoutputFormatter::WriteChangeHead(std::string_view op, Lsn lsn, OutBuffer* o) {
  Put(o, "{\"op\":\"");
  Put(o, op);
  Put(o, "\",\"lsn\":\"");
  PutLsn(o, lsn);
  Put(o, "\",\"xid\":");
  if (in_stream_) {
    PutUnsigned(o, stream_xid_);
    split_ = static_cast<uint32_t>(o->size());
    Put(o, stream_txn_->origin_field);
  } else {
    PutUnsigned(o, txn_xid_);
    Put(o, commit_fields_);
    Put(o, origin_field_);
  }
}

Status PgoutputFormatter::FinishLine(uint32_t subxid, const RecordInfo& info, OutBuffer* o,
                                     RecordBuffer* out) {
  Put(o, "}\n");
  if (o != &line_) {
    out->EndRecord(info);
    return Status::Ok();
  }
  uint32_t key_length = 0;
  if (out->wants_keys()) {
    key_length = static_cast<uint32_t>(line_key_.size());
    line_.Append(line_key_.data(), line_key_.size());
    line_key_.Clear();
  }
  PutSpooledInfo(info, key_length, line_.mutable_data());
  Status s = spool_.Append(stream_xid_, subxid, split_, std::string_view(o->data(), o->size()));
  line_.Clear();
  return s;
}

void PgoutputFormatter::WriteValue(const Column& col, const Datum& d, OutBuffer* o) {
  if (d.kind == 'n') {
    Put(o, "null");
    return;
  }
  if (d.kind == 'b') {
    json::AppendHexString(d.data, o);
    return;
  }
  switch (col.kind) {
    case ValueKind::kNumber:
      // NaN, Infinity and -Infinity are not JSON numbers: strings.
      if (json::IsNumber(d.data)) {
        Put(o, d.data);
        return;
      }
      break;
    case ValueKind::kBool:
      if (d.data == "t") {
        Put(o, "true");
        return;
      }
      if (d.data == "f") {
        Put(o, "false");
        return;
      }
      break;
    case ValueKind::kJson:
      if (json::IsValidDocument(d.data, &json_stack_)) {
        json::AppendDocument(d.data, o);
        return;
      }
      break;
    case ValueKind::kString:
      break;
  }
  json::AppendString(d.data, o);
}

void PgoutputFormatter::WriteTuple(const Relation& rel, const std::vector<Datum>& tuple,
                                   bool key_only, OutBuffer* o) {
  o->Append('{');
  bool first = true;
  for (size_t i = 0; i < tuple.size(); ++i) {
    const Datum& d = tuple[i];
    const Column& col = rel.columns[i];
    if (d.kind == 'u') continue;
    // A key-only old tuple sends the other columns as nulls: leave them out.
    if (key_only && !col.in_identity && d.kind == 'n') continue;
    if (!first) o->Append(',');
    first = false;
    Put(o, col.key);
    WriteValue(col, d, o);
  }
  o->Append('}');
}

void PgoutputFormatter::WriteUnchangedToast(const Relation& rel, const std::vector<Datum>& tuple,
                                            OutBuffer* o) {
  bool first = true;
  for (size_t i = 0; i < tuple.size(); ++i) {
    if (tuple[i].kind != 'u') continue;
    PutListedName(",\"unchanged_toast\":[", rel.columns[i].key, &first, o);
  }
  if (!first) o->Append(']');
}

bool PgoutputFormatter::IsJsonNull(const Column& col, const Datum& d) {
  if (d.kind != 't' && d.kind != 'b') return false;
  std::string_view doc = d.data;
  if (d.kind == 'b' && col.type_oid == kJsonbOid) {
    // jsonb's binary form: a version byte (1), then the text. json's is
    // the text alone.
    if (doc.empty() || doc[0] != 1) return false;
    doc.remove_prefix(1);
  }
  return json::IsNullDocument(doc);
}

void PgoutputFormatter::WriteJsonNulls(const Relation& rel, const std::vector<Datum>& tuple,
                                       std::string_view head, OutBuffer* o) {
  bool first = true;
  for (uint16_t i : rel.json_columns) {
    if (IsJsonNull(rel.columns[i], tuple[i])) PutListedName(head, rel.columns[i].key, &first, o);
  }
  if (!first) o->Append(']');
}

Status PgoutputFormatter::HandleInsert(Reader* r, Lsn lsn, RecordBuffer* out) {
  uint32_t subxid;
  uint32_t id;
  uint8_t marker;
  const Relation* rel;
  Status s = ReadChangeXid(r, "Insert", &subxid);
  if (!s.ok()) return s;
  if (!r->U32(&id)) return Truncated("Insert");
  s = FindRelation(id, "Insert", &rel);
  if (!s.ok()) return s;
  if (!r->U8(&marker)) return Truncated("Insert");
  if (marker != 'N') {
    return Status::Retryable("pgoutput: unexpected tuple type " + Hex2(marker) +
                             " in Insert message");
  }
  s = ReadTuple(r, *rel, "Insert", &new_tuple_);
  if (!s.ok()) return s;

  OutBuffer* o = LineTarget(out);
  WriteChangeHead("insert", lsn, o);
  o->Append(',');
  Put(o, rel->fields);
  Put(o, ",\"new\":");
  WriteTuple(*rel, new_tuple_, false, o);
  WriteUnchangedToast(*rel, new_tuple_, o);
  WriteJsonNulls(*rel, new_tuple_, kJsonNullField, o);
  if (OutBuffer* k = KeyTarget(out)) WriteKey(*rel, rel->key_columns, new_tuple_, nullptr, k);
  if (Watched(*rel)) Observe(*rel, subxid, new_tuple_, nullptr, false);
  return FinishLine(subxid, LineInfo(RecordKind::kChange, lsn, rel, out), o, out);
}

Status PgoutputFormatter::HandleUpdate(Reader* r, Lsn lsn, RecordBuffer* out) {
  uint32_t subxid;
  uint32_t id;
  uint8_t marker;
  const Relation* rel;
  Status s = ReadChangeXid(r, "Update", &subxid);
  if (!s.ok()) return s;
  if (!r->U32(&id)) return Truncated("Update");
  s = FindRelation(id, "Update", &rel);
  if (!s.ok()) return s;
  if (!r->U8(&marker)) return Truncated("Update");
  bool has_old = false;
  bool old_key_only = false;
  if (marker == 'K' || marker == 'O') {
    has_old = true;
    old_key_only = marker == 'K';
    s = ReadTuple(r, *rel, "Update", &old_tuple_);
    if (!s.ok()) return s;
    if (!r->U8(&marker)) return Truncated("Update");
  }
  if (marker != 'N') {
    return Status::Retryable("pgoutput: unexpected tuple type " + Hex2(marker) +
                             " in Update message");
  }
  s = ReadTuple(r, *rel, "Update", &new_tuple_);
  if (!s.ok()) return s;

  OutBuffer* o = LineTarget(out);
  WriteChangeHead("update", lsn, o);
  o->Append(',');
  Put(o, rel->fields);
  Put(o, ",\"new\":");
  WriteTuple(*rel, new_tuple_, false, o);
  WriteUnchangedToast(*rel, new_tuple_, o);
  WriteJsonNulls(*rel, new_tuple_, kJsonNullField, o);
  if (has_old) {
    Put(o, ",\"old\":");
    WriteTuple(*rel, old_tuple_, old_key_only, o);
    WriteJsonNulls(*rel, old_tuple_, kOldJsonNullField, o);
  }
  const std::vector<Datum>* fallback = has_old ? &old_tuple_ : nullptr;
  if (OutBuffer* k = KeyTarget(out)) WriteKey(*rel, rel->key_columns, new_tuple_, fallback, k);
  if (Watched(*rel)) {
    bool lacks_toast = HasUnchangedValue(new_tuple_);
    // The row's key before (when the old tuple tells it) and after.
    if (has_old) Observe(*rel, subxid, old_tuple_, nullptr, lacks_toast);
    Observe(*rel, subxid, new_tuple_, fallback, lacks_toast);
  }
  return FinishLine(subxid, LineInfo(RecordKind::kChange, lsn, rel, out), o, out);
}

Status PgoutputFormatter::HandleDelete(Reader* r, Lsn lsn, RecordBuffer* out) {
  uint32_t subxid;
  uint32_t id;
  uint8_t marker;
  const Relation* rel;
  Status s = ReadChangeXid(r, "Delete", &subxid);
  if (!s.ok()) return s;
  if (!r->U32(&id)) return Truncated("Delete");
  s = FindRelation(id, "Delete", &rel);
  if (!s.ok()) return s;
  if (!r->U8(&marker)) return Truncated("Delete");
  if (marker != 'K' && marker != 'O') {
    return Status::Retryable("pgoutput: unexpected tuple type " + Hex2(marker) +
                             " in Delete message");
  }
  s = ReadTuple(r, *rel, "Delete", &old_tuple_);
  if (!s.ok()) return s;

  OutBuffer* o = LineTarget(out);
  WriteChangeHead("delete", lsn, o);
  o->Append(',');
  Put(o, rel->fields);
  Put(o, ",\"old\":");
  WriteTuple(*rel, old_tuple_, marker == 'K', o);
  WriteJsonNulls(*rel, old_tuple_, kOldJsonNullField, o);
  if (OutBuffer* k = KeyTarget(out)) WriteKey(*rel, rel->key_columns, old_tuple_, nullptr, k);
  if (Watched(*rel)) Observe(*rel, subxid, old_tuple_, nullptr, false);
  return FinishLine(subxid, LineInfo(RecordKind::kChange, lsn, rel, out), o, out);
}

Status PgoutputFormatter::HandleTruncate(Reader* r, Lsn lsn, RecordBuffer* out) {
  uint32_t subxid;
  uint32_t count;
  uint8_t options;
  Status s = ReadChangeXid(r, "Truncate", &subxid);
  if (!s.ok()) return s;
  if (!r->U32(&count) || !r->U8(&options)) return Truncated("Truncate");
  if (count > r->remaining() / 4) return Truncated("Truncate");
  // Every relation must be known before anything is written.
  Reader check = *r;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t id;
    const Relation* rel;
    if (!check.U32(&id)) return Truncated("Truncate");
    s = FindRelation(id, "Truncate", &rel);
    if (!s.ok()) return s;
  }

  OutBuffer* o = LineTarget(out);
  WriteChangeHead("truncate", lsn, o);
  Put(o, ",\"tables\":[");
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t id = 0;
    const Relation* rel = nullptr;
    if (!r->U32(&id) || !FindRelation(id, "Truncate", &rel).ok()) break;  // checked above
    if (i > 0) o->Append(',');
    Put(o, rel->qualified);
    if (Watched(*rel)) ObserveTruncate(*rel, subxid);
  }
  Put(o, "],\"cascade\":");
  Put(o, (options & kTruncateCascade) ? "true" : "false");
  Put(o, ",\"restart_identity\":");
  Put(o, (options & kTruncateRestartIdentity) ? "true" : "false");
  return FinishLine(subxid, LineInfo(RecordKind::kTruncate, lsn, nullptr, out), o, out);
}

Status PgoutputFormatter::HandleMessage(Reader* r, Lsn lsn, RecordBuffer* out) {
  uint32_t subxid = 0;
  uint8_t flags;
  uint64_t message_lsn;
  std::string_view prefix;
  uint32_t length;
  std::string_view content;
  if ((in_stream_ && !r->U32(&subxid)) || !r->U8(&flags) || !r->U64(&message_lsn) ||
      !r->String(&prefix) || !r->U32(&length) || !r->Bytes(length, &content)) {
    return Truncated("Message");
  }
  bool transactional = (flags & 1) != 0;
  if (transactional && !in_stream_ && !in_txn_) {
    return Status::Retryable("pgoutput: transactional Message outside a transaction");
  }
  if (!transactional && prefix == kWatermarkPrefix) {  // pgslotd's own: never in a sink
    if (options_.observer) options_.observer->OnWatermark(content, lsn);
    return Status::Ok();
  }
  if (!in_stream_) subxid = txn_xid_;

  // A non-transactional message is never spooled: it is not part of the
  // streamed transaction and the server does not send it again.
  OutBuffer* o = transactional ? LineTarget(out) : out->bytes();
  Put(o, "{\"op\":\"message\",\"lsn\":\"");
  PutLsn(o, lsn);
  o->Append('"');
  if (transactional) {
    Put(o, ",\"xid\":");
    PutUnsigned(o, in_stream_ ? stream_xid_ : txn_xid_);
    Put(o, in_stream_ ? stream_txn_->origin_field : origin_field_);
    Put(o, ",\"transactional\":true");
  } else {
    Put(o, ",\"transactional\":false");
  }
  split_ = Spool::kNoSplit;
  Put(o, ",\"prefix\":");
  json::AppendString(prefix, o);
  Put(o, ",\"content\":");
  json::AppendStringOrLatin1(content, o);
  RecordInfo info = LineInfo(RecordKind::kMessage, lsn, nullptr, out);
  if (!transactional) {
    info.xid = 0;
    info.commit_lsn = kInvalidLsn;
  }
  return FinishLine(subxid, info, o, out);
}

Status PgoutputFormatter::HandleStreamStart(Reader* r, Lsn lsn) {
  if (in_stream_) {
    return Status::Retryable("pgoutput: Stream Start message inside a streamed block");
  }
  if (in_txn_) return Status::Retryable("pgoutput: Stream Start message inside a transaction");
  uint32_t xid;
  uint8_t first_segment;
  if (!r->U32(&xid) || !r->U8(&first_segment)) return Truncated("Stream Start");
  auto [it, inserted] = streams_.try_emplace(xid);
  if (inserted) it->second.first_lsn = lsn;
  in_stream_ = true;
  stream_xid_ = xid;
  stream_txn_ = &it->second;
  return Status::Ok();
}

Status PgoutputFormatter::HandleStreamStop() {
  if (!in_stream_) {
    return Status::Retryable("pgoutput: Stream Stop message outside a streamed block");
  }
  in_stream_ = false;
  stream_txn_ = nullptr;
  return Status::Ok();
}

Status PgoutputFormatter::HandleStreamCommit(Reader* r, Lsn lsn, RecordBuffer* out) {
  if (in_stream_) {
    return Status::Retryable("pgoutput: Stream Commit message inside a streamed block");
  }
  if (in_txn_) return Status::Retryable("pgoutput: Stream Commit message inside a transaction");
  uint32_t xid;
  uint8_t flags;
  uint64_t commit_lsn;
  uint64_t end_lsn;
  uint64_t commit_time;
  if (!r->U32(&xid) || !r->U8(&flags) || !r->U64(&commit_lsn) || !r->U64(&end_lsn) ||
      !r->U64(&commit_time)) {
    return Truncated("Stream Commit");
  }
  FormatCommitFields(commit_lsn, static_cast<int64_t>(commit_time), &stream_commit_fields_);
  TellPending(xid);
  if (options_.observer) options_.observer->OnCommit(xid);
  Lsn first_lsn = lsn;
  auto it = streams_.find(xid);
  if (it != streams_.end()) {
    first_lsn = it->second.first_lsn;
    streams_.erase(it);
  }
  if (options_.include_transactions) {
    WriteTransactionLine(RecordKind::kBegin, first_lsn, xid, commit_lsn, stream_commit_fields_,
                         out);
  }
  // The transaction's lines come out a piece at a time (Continue), so that
  // a large one never sits in memory whole.
  spool_.BeginReplay(xid);
  replaying_ = true;
  replay_xid_ = xid;
  replay_commit_lsn_ = lsn;
  replay_txn_commit_lsn_ = commit_lsn;
  return Continue(out, kReplayBudget);
}

Status PgoutputFormatter::Continue(RecordBuffer* out, size_t budget) {
  if (!replaying_) return Status::Ok();
  ReplayWriter writer(out, stream_commit_fields_, replay_xid_, replay_txn_commit_lsn_);
  bool done = false;
  Status s = spool_.ReplaySome(&writer, budget, &done);
  if (!s.ok()) {
    replaying_ = false;
    return s;
  }
  if (done) {
    replaying_ = false;
    ended_txn_ = true;
    if (options_.include_transactions) {
      WriteTransactionLine(RecordKind::kCommit, replay_commit_lsn_, replay_xid_,
                           replay_txn_commit_lsn_, stream_commit_fields_, out);
    }
  }
  return Status::Ok();
}

Status PgoutputFormatter::HandleStreamAbort(Reader* r) {
  if (in_stream_) {
    return Status::Retryable("pgoutput: Stream Abort message inside a streamed block");
  }
  if (in_txn_) return Status::Retryable("pgoutput: Stream Abort message inside a transaction");
  uint32_t xid;
  uint32_t subxid;
  if (!r->U32(&xid) || !r->U32(&subxid)) return Truncated("Stream Abort");
  spool_.Abort(xid, subxid);
  if (xid == subxid) {
    streams_.erase(xid);
    pending_changes_.erase(xid);
  } else if (auto it = pending_changes_.find(xid); it != pending_changes_.end()) {
    std::vector<PendingChange>& changes = it->second.changes;
    changes.erase(std::remove_if(changes.begin(), changes.end(),
                                 [subxid](const PendingChange& c) { return c.subxid == subxid; }),
                  changes.end());
  }
  return Status::Ok();
}

// --- The observer ---------------------------------------------------------

void PgoutputFormatter::set_observer(ChangeObserver* observer) {
  options_.observer = observer;
  for (auto& [id, rel] : relations_) rel.watch_generation = 0;  // ask the new one
}

bool PgoutputFormatter::Watched(const Relation& rel) {
  ChangeObserver* observer = options_.observer;
  if (observer == nullptr) return false;
  if (rel.watch_generation == observer->generation()) return rel.watched;
  rel.watch_generation = observer->generation();
  rel.watch_key.clear();
  const ChangeObserver::Watch* watch = observer->WatchOf(rel.schema, rel.table);
  rel.watched = watch != nullptr;
  if (!rel.watched) return false;
  rel.watch_id = watch->id;
  for (const std::string& name : watch->key_columns) {
    auto col = std::find_if(rel.columns.begin(), rel.columns.end(),
                            [&name](const Column& c) { return c.name == name; });
    if (col == rel.columns.end()) {  // the publication leaves it out
      rel.watch_key.clear();
      break;
    }
    rel.watch_key.push_back(static_cast<uint16_t>(col - rel.columns.begin()));
  }
  return true;
}

void PgoutputFormatter::Observe(const Relation& rel, uint32_t subxid,
                                const std::vector<Datum>& tuple, const std::vector<Datum>* fallback,
                                bool lacks_toast) {
  observed_key_.Clear();
  WriteKey(rel, rel.watch_key, tuple, fallback, &observed_key_);
  std::string_view key(observed_key_.data(), observed_key_.size());
  if (!in_stream_) {
    options_.observer->OnChange(rel.watch_id, key, txn_xid_, lacks_toast);
    return;
  }
  PendingChanges& pending = pending_changes_[stream_xid_];
  PendingChange change;
  change.subxid = subxid;
  change.watch_id = rel.watch_id;
  change.key_offset = static_cast<uint32_t>(pending.keys.size());
  change.key_length = static_cast<uint32_t>(key.size());
  change.lacks_toast = lacks_toast;
  pending.keys.append(key.data(), key.size());
  pending.changes.push_back(change);
}

void PgoutputFormatter::ObserveTruncate(const Relation& rel, uint32_t subxid) {
  if (!in_stream_) {
    options_.observer->OnTruncate(rel.watch_id, txn_xid_);
    return;
  }
  PendingChange change;
  change.subxid = subxid;
  change.watch_id = rel.watch_id;
  change.truncate = true;
  pending_changes_[stream_xid_].changes.push_back(change);
}

void PgoutputFormatter::TellPending(uint32_t xid) {
  auto it = pending_changes_.find(xid);
  if (it == pending_changes_.end()) return;
  PendingChanges pending = std::move(it->second);
  pending_changes_.erase(it);
  if (options_.observer == nullptr) return;
  for (const PendingChange& c : pending.changes) {
    if (c.truncate) {
      options_.observer->OnTruncate(c.watch_id, xid);
    } else {
      std::string_view key(pending.keys.data() + c.key_offset, c.key_length);
      options_.observer->OnChange(c.watch_id, key, xid, c.lacks_toast);
    }
  }
}

// --- Snapshots' read lines ------------------------------------------------

uint32_t PgoutputFormatter::DescribeReadTable(std::string_view schema, std::string_view table,
                                              const std::vector<ReadColumn>& columns,
                                              const std::vector<std::string>& key_columns) {
  Relation rel;
  NameRelation(schema, table, &rel);
  rel.columns.resize(columns.size());
  for (size_t i = 0; i < columns.size(); ++i) {
    Column& col = rel.columns[i];
    col.name = columns[i].name;
    col.key.clear();
    json::StringOut key{&col.key};
    json::AppendString(col.name, &key);
    col.key.push_back(':');
    col.type_oid = columns[i].type_oid;
    col.kind = KindOf(col.type_oid);
    if (col.kind == ValueKind::kJson) rel.json_columns.push_back(static_cast<uint16_t>(i));
  }
  for (const std::string& name : key_columns) {
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i].name == name) rel.key_columns.push_back(static_cast<uint16_t>(i));
    }
  }
  rel.watch_key = rel.key_columns;
  read_tables_.push_back(std::move(rel));
  return static_cast<uint32_t>(read_tables_.size() - 1);
}

namespace {

// A read row's values as the tuple of an insert.
template <typename Datum, typename Value>
void ReadValuesToTuple(const std::vector<Value>& values, std::vector<Datum>* tuple) {
  tuple->resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    (*tuple)[i].kind = values[i].null ? 'n' : 't';
    (*tuple)[i].data = values[i].text;
  }
}

}  // namespace

void PgoutputFormatter::FormatRead(uint32_t table, const std::vector<ReadValue>& values, Lsn lsn,
                                   RecordBuffer* out) {
  const Relation& rel = read_tables_.at(table);
  ReadValuesToTuple(values, &new_tuple_);
  OutBuffer* o = out->bytes();
  Put(o, "{\"op\":\"read\",\"lsn\":\"");
  PutLsn(o, lsn);
  Put(o, "\",");
  Put(o, rel.fields);
  Put(o, ",\"new\":");
  WriteTuple(rel, new_tuple_, false, o);
  WriteJsonNulls(rel, new_tuple_, kJsonNullField, o);
  Put(o, "}\n");
  if (out->wants_keys()) WriteKey(rel, rel.key_columns, new_tuple_, nullptr, out->key_bytes());
  RecordInfo info;
  info.kind = RecordKind::kChange;
  info.lsn = lsn;
  if (rel.named_in != out) {
    rel.table_id = out->InternTable(rel.schema, rel.table);
    rel.named_in = out;
  }
  info.table = rel.table_id;
  out->EndRecord(info);
}

std::string_view PgoutputFormatter::ReadKey(uint32_t table, const std::vector<ReadValue>& values) {
  const Relation& rel = read_tables_.at(table);
  ReadValuesToTuple(values, &new_tuple_);
  observed_key_.Clear();
  WriteKey(rel, rel.key_columns, new_tuple_, nullptr, &observed_key_);
  return std::string_view(observed_key_.data(), observed_key_.size());
}

}  // namespace pgslotd
