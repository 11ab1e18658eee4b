// A growable byte buffer written at the end and consumed from the front.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

namespace pgslotd {

// A growable byte buffer that is written at the end and consumed from the
// front; its storage is reused, so steady-state appends do not allocate.
class OutBuffer {
 public:
  explicit OutBuffer(size_t initial = 1 << 20) { data_.resize(initial); }
  void Append(const char* p, size_t n) {
    if (end_ + n > data_.size()) MakeRoom(n);
    std::copy(p, p + n, data_.data() + end_);
    end_ += n;
  }
  void Append(char c) {
    if (end_ + 1 > data_.size()) MakeRoom(1);
    data_[end_++] = c;
  }
  const char* data() const { return data_.data() + start_; }
  size_t size() const { return end_ - start_; }
  bool empty() const { return end_ == start_; }
  void Consume(size_t n) {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  void Clear() { start_ = end_ = 0; }

 private:
  void MakeRoom(size_t n) {
    size_t live = end_ - start_;
    if (start_ > 0) {
      std::memmove(data_.data(), data_.data() + start_, live);
      start_ = 0;
      end_ = live;
    }
    if (live + n > data_.size()) data_.resize(std::max(data_.size() * 2, live + n));
  }
  std::vector<char> data_;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace pgslotd
