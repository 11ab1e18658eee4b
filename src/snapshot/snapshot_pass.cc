#include "snapshot/snapshot_pass.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace pgslotd {

namespace {

// Reads of a table without a key, each changed while it ran, before its
// rows are written as read.
constexpr int kWholeReads = 3;

// 128 random bits as 32 hex digits.
Result<std::string> RandomHex() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Retryable(ErrnoMessage("getrandom", errno));
    got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  return hex;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends the UTF-8 form of code point `cp`.
void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Reads a JSON string at key[*i] (its opening quote) into *out.
bool ReadString(std::string_view key, size_t* i, std::string* out) {
  if (*i >= key.size() || key[*i] != '"') return false;
  for (++*i; *i < key.size(); ++*i) {
    char c = key[*i];
    if (c == '"') {
      ++*i;
      return true;
    }
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (++*i >= key.size()) return false;
    switch (key[*i]) {
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u': {
        // The formatter escapes only control characters this way.
        if (*i + 4 >= key.size()) return false;
        uint32_t cp = 0;
        for (int d = 1; d <= 4; ++d) {
          int v = HexDigit(key[*i + d]);
          if (v < 0) return false;
          cp = cp * 16 + static_cast<uint32_t>(v);
        }
        AppendUtf8(cp, out);
        *i += 4;
        break;
      }
      default:
        out->push_back(key[*i]);  // " \ /
    }
  }
  return false;
}

}  // namespace

bool KeyTextValues(std::string_view key, std::vector<std::string>* values) {
  values->clear();
  if (key.size() < 2 || key.front() != '{' || key.back() != '}') return false;
  size_t i = 1;
  while (i < key.size() - 1) {
    std::string name;
    if (!ReadString(key, &i, &name) || i >= key.size() || key[i++] != ':') return false;
    std::string value;
    if (i < key.size() && key[i] == '"') {
      if (!ReadString(key, &i, &value)) return false;
    } else {
      while (i < key.size() - 1 && key[i] != ',') value.push_back(key[i++]);
      if (value == "true") value = "t";
      if (value == "false") value = "f";
      if (value.empty() || value == "null") return false;
    }
    values->push_back(std::move(value));
    if (i < key.size() - 1 && key[i++] != ',') return false;
  }
  return !values->empty();
}

SnapshotPass::SnapshotPass(std::string slot, uint32_t chunk_rows)
    : slot_(std::move(slot)), chunk_rows_(chunk_rows) {}

const ChangeObserver::Watch* SnapshotPass::WatchOf(std::string_view schema,
                                                   std::string_view table) {
  if (!active_ || schema != table_.schema || table != table_.table) return nullptr;
  return &watch_;
}

void SnapshotPass::OnChange(uint32_t watch_id, std::string_view key, uint32_t xid,
                            bool lacks_toast) {
  if (!active_ || watch_id != watch_.id) return;
  if (key.empty()) {
    changed_.NoteUnknown(xid);  // a change of a key the stream did not tell
    return;
  }
  changed_.Note(key, xid, lacks_toast);
}

void SnapshotPass::OnTruncate(uint32_t watch_id, uint32_t xid) {
  if (active_ && watch_id == watch_.id) changed_.NoteTruncate(xid);
}

void SnapshotPass::OnCommit(uint32_t xid) {
  recent_[recent_count_++ % kRecent] = xid;
  // A streamed transaction open when the pass began may have changed the
  // table in blocks that came before: its keys are not all known.
  if (!open_at_start_.empty()) {
    auto it = std::find(open_at_start_.begin(), open_at_start_.end(), xid);
    if (it != open_at_start_.end()) {
      open_at_start_.erase(it);
      if (active_) changed_.NoteUnknown(xid);
    }
  }
}

void SnapshotPass::OnWatermark(std::string_view content, uint64_t lsn) {
  // Anything else (an old chunk's, a forged one) is ignored.
  if (outstanding_ && watermark_lsn_ == kInvalidLsn && content == outstanding_->watermark) {
    watermark_lsn_ = lsn;
  }
}

void SnapshotPass::StartTable(const TableDescription& table, std::vector<std::string> resume_after,
                              PgoutputFormatter* formatter) {
  EndTable();
  whole_reads_ = 0;
  written_despite_changes_ = false;
  formatter_ = formatter;
  open_at_start_ = formatter->OpenStreams();
  table_ = table;
  active_ = true;
  ++generation_;
  watch_.id = static_cast<uint32_t>(generation_);
  watch_.key_columns = table.key_columns;
  std::vector<PgoutputFormatter::ReadColumn> columns;
  for (const TableColumn& c : table.columns) columns.push_back({c.name, c.type_oid});
  formatter_->ForgetReadTables();
  read_table_ =
      formatter_->DescribeReadTable(table.schema, table.table, columns, table.key_columns);
  last_key_ = std::move(resume_after);
}

std::vector<uint32_t> SnapshotPass::RecentlyCommitted() const {
  std::vector<uint32_t> xids;
  size_t n = std::min(recent_count_, kRecent);
  for (size_t i = recent_count_ - n; i < recent_count_; ++i) xids.push_back(recent_[i % kRecent]);
  return xids;
}

Result<ChunkRequest> SnapshotPass::NextRequest() {
  Result<std::string> id = RandomHex();
  if (!id.ok()) return id.status();
  ChunkRequest request;
  if (repeat_) {
    request = last_request_;
  } else if (!ranges_done_) {
    request.after_key = last_key_;
  } else {
    std::vector<std::string> values;
    // Each key value is a parameter, and a statement takes 65535 at most.
    size_t most =
        std::min<size_t>(chunk_rows_, 65535 / std::max<size_t>(1, table_.key_columns.size()));
    while (!resumed_keys_.empty() && request.keys.size() < most) {
      request.keys.push_back(std::move(resumed_keys_.back()));
      resumed_keys_.pop_back();
    }
    for (auto it = read_again_.begin(); it != read_again_.end() && request.keys.size() < most;) {
      if (KeyTextValues(*it, &values)) request.keys.push_back(values);
      it = read_again_.erase(it);  // taken; a change unseen again puts it back
    }
  }
  request.watermark = slot_ + " " + id.value();
  repeat_ = false;
  last_request_ = request;
  outstanding_ = request;
  answer_.reset();
  watermark_lsn_ = kInvalidLsn;
  return request;
}

void SnapshotPass::Answered(Chunk chunk) { answer_ = std::move(chunk); }

bool SnapshotPass::WatermarkMissed(Lsn received) {
  if (!answer_ || watermark_lsn_ != kInvalidLsn || answer_->watermark_end == kInvalidLsn ||
      received <= answer_->watermark_end) {
    return false;
  }
  Failed();
  return true;
}

void SnapshotPass::Failed() {
  outstanding_.reset();
  answer_.reset();
  watermark_lsn_ = kInvalidLsn;
  repeat_ = true;
}

bool SnapshotPass::MustReadAgain(const PgSnapshot& snapshot) const {
  return changed_.MustReadAgain(snapshot);
}

void SnapshotPass::NoteReadAgain(const PgSnapshot& snapshot) {
  for (std::string& key : changed_.LackingToastUnseenBy(snapshot)) {
    read_again_.insert(std::move(key));
  }
}

uint64_t SnapshotPass::WriteDue(RecordBuffer* out) {
  Chunk chunk = std::move(*answer_);
  ChunkRequest request = std::move(*outstanding_);
  Lsn lsn = watermark_lsn_;
  outstanding_.reset();
  answer_.reset();
  watermark_lsn_ = kInvalidLsn;
  if (MustReadAgain(chunk.snapshot)) {
    // A table without a key changes between its reads on a busy server:
    // the third read is written as it is (snapshot_keyless: read_whole).
    if (!table_.key_columns.empty() || ++whole_reads_ < kWholeReads) {
      repeat_ = true;
      return 0;
    }
    written_despite_changes_ = true;
  }
  PGresult* rows = chunk.rows.get();
  const int columns = static_cast<int>(table_.columns.size());
  values_.resize(table_.columns.size());
  uint64_t written = 0;
  for (int r = 0; r < chunk.row_count(); ++r) {
    for (int c = 0; c < columns; ++c) {
      values_[c].null = PQgetisnull(rows, r, c) != 0;
      values_[c].text =
          std::string_view(PQgetvalue(rows, r, c), static_cast<size_t>(PQgetlength(rows, r, c)));
    }
    std::string_view key = formatter_->ReadKey(read_table_, values_);
    if (!key.empty() && changed_.Changed(key, chunk.snapshot)) continue;
    formatter_->FormatRead(read_table_, values_, lsn, out);
    ++written;
  }
  NoteReadAgain(chunk.snapshot);
  changed_.RaiseFloor(chunk.snapshot);
  if (request.keys.empty()) {
    if (!chunk.last_key.empty()) last_key_ = chunk.last_key;
    // A table without a key is read whole, in one chunk.
    if (table_.key_columns.empty() || chunk.row_count() < static_cast<int>(chunk_rows_)) {
      ranges_done_ = true;
    }
  }
  return written;
}

bool SnapshotPass::TableDone() const {
  return active_ && ranges_done_ && read_again_.empty() && resumed_keys_.empty() && !outstanding_ &&
         !repeat_;
}

void SnapshotPass::ReadAgain(std::vector<std::vector<std::string>> keys, bool ranges_done) {
  resumed_keys_ = std::move(keys);
  ranges_done_ = ranges_done;
}

std::vector<std::vector<std::string>> SnapshotPass::PendingKeys() const {
  std::vector<std::vector<std::string>> keys = resumed_keys_;
  std::vector<std::string> values;
  for (const std::string& key : read_again_) {
    if (KeyTextValues(key, &values)) keys.push_back(values);
  }
  // Taken into a request whose rows are not written yet.
  const ChunkRequest* taken = outstanding_ ? &*outstanding_ : repeat_ ? &last_request_ : nullptr;
  if (taken != nullptr) keys.insert(keys.end(), taken->keys.begin(), taken->keys.end());
  return keys;
}

void SnapshotPass::EndTable() {
  if (active_) ++generation_;
  active_ = false;
  changed_.Clear();
  open_at_start_.clear();
  read_again_.clear();
  resumed_keys_.clear();
  last_key_.clear();
  ranges_done_ = false;
  outstanding_.reset();
  answer_.reset();
  watermark_lsn_ = kInvalidLsn;
  repeat_ = false;
}

}  // namespace pgslotd
