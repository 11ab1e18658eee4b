// A growable byte buffer written at the end and consumed from the front.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>

namespace pgslotd {

// A growable byte buffer that is written at the end and consumed from the
// front; its storage is reused, so steady-state appends do not allocate.
class OutBuffer {
 public:
  // The storage is allocated, not initialized: pages an idle slot never
  // writes are never made resident.
  explicit OutBuffer(size_t initial = 1 << 20)
      : data_(new char[initial > 0 ? initial : 1]), capacity_(initial > 0 ? initial : 1) {}
  void Append(const char* p, size_t n) {
    if (end_ + n > capacity_) MakeRoom(n);
    std::memcpy(data_.get() + end_, p, n);
    end_ += n;
  }
  void Append(char c) {
    if (end_ + 1 > capacity_) MakeRoom(1);
    data_[end_++] = c;
  }
  const char* data() const { return data_.get() + start_; }
  char* mutable_data() { return data_.get() + start_; }
  size_t capacity() const { return capacity_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return end_ == start_; }
  void Consume(size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  void Clear() { start_ = end_ = 0; }
  // Keeps the first `n` bytes (n <= size()) and drops the rest.
  void Truncate(size_t n) {
    end_ = start_ + n;
    if (start_ == end_) start_ = end_ = 0;
  }

 private:
  void MakeRoom(size_t n) {
    size_t live = end_ - start_;
    if (start_ > 0) {
      std::memmove(data_.get(), data_.get() + start_, live);
      start_ = 0;
      end_ = live;
    }
    if (live + n > capacity_) {
      size_t bigger = std::max(capacity_ * 2, live + n);
      std::unique_ptr<char[]> grown(new char[bigger]);
      std::memcpy(grown.get(), data_.get(), live);
      data_ = std::move(grown);
      capacity_ = bigger;
    }
  }
  std::unique_ptr<char[]> data_;
  size_t capacity_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace pgslotd
