#include "decode/record_buffer.h"

namespace pgslotd {

uint32_t RecordBuffer::InternTable(std::string_view schema, std::string_view table) {
  std::string name;
  name.reserve(schema.size() + table.size() + 1);
  name.append(schema).push_back('\0');  // no NUL in either name
  name.append(table);
  auto [it, inserted] = table_ids_.try_emplace(std::move(name), 0);
  if (inserted) {
    tables_.push_back(TableName{std::string(schema), std::string(table)});
    it->second = static_cast<uint32_t>(tables_.size());
  }
  return it->second;
}

Record RecordBuffer::record(size_t i) const {
  const RecordInfo& r = info(i);
  uint64_t start = (i > 0 ? info(i - 1).end : consumed_);
  std::string_view payload(bytes_.data() + (start - consumed_), r.end - start);
  if (!payload.empty() && payload.back() == '\n') payload.remove_suffix(1);
  std::string_view key;
  if (r.key_length > 0) {
    key =
        std::string_view(keys_.data() + (r.key_end - r.key_length - keys_consumed_), r.key_length);
  }
  return Record{&r, payload, key, table(r.table)};
}

void RecordBuffer::Consume(size_t n) {
  bytes_.Consume(n);
  consumed_ += n;
  uint64_t key_end = keys_consumed_;
  while (head_ < records_.size() && records_[head_].end <= consumed_) {
    key_end = records_[head_].key_end;
    ++head_;
  }
  keys_.Consume(static_cast<size_t>(key_end - keys_consumed_));
  keys_consumed_ = key_end;
  if (head_ == records_.size()) {
    records_.clear();
    head_ = 0;
  } else if (head_ >= kCompactAfter && head_ * 2 >= records_.size()) {
    // A reader that never quite catches up: drop the consumed ones so
    // that the descriptions do not pile up.
    records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void RecordBuffer::Truncate(size_t n) {
  bytes_.Truncate(n);
  uint64_t end = consumed_ + n;
  while (records_.size() > head_ && records_.back().end > end) records_.pop_back();
  last_key_end_ = records_.size() > head_ ? records_.back().key_end : keys_consumed_;
  keys_.Truncate(static_cast<size_t>(last_key_end_ - keys_consumed_));
  if (head_ == records_.size()) {
    records_.clear();
    head_ = 0;
  }
}

void RecordBuffer::Shrink(size_t initial) {
  if (bytes_.empty() && bytes_.capacity() > initial) bytes_ = OutBuffer(initial);
  if (keys_.empty() && keys_.capacity() > kKeyBufferSize) keys_ = OutBuffer(kKeyBufferSize);
}

}  // namespace pgslotd
