// A regular file, appended to. Durable = fdatasync'ed (and the directory
// fsync'ed once after this sink created the file). See sink.h.
#pragma once

#include <string>

#include "sink/sink.h"

namespace pgslotd {

class FileSink : public Sink {
 public:
  FileSink(std::string path, uint32_t mode) : path_(std::move(path)), mode_(mode) {}
  ~FileSink() override;

  std::string Describe() const override { return "file " + path_; }
  Status Open() override;
  Status Write(const char* data, size_t len, size_t* written) override;
  Status Sync() override;
  bool SyncIsCostly() const override { return accepted_ > durable_ || dir_sync_pending_; }
  bool CanRetract() const override { return true; }
  Status Discard(uint64_t keep) override;
  Status Reopen() override;
  Status Close() override;

 private:
  std::string path_;
  uint32_t mode_;
  int fd_ = -1;
  bool dir_sync_pending_ = false;  // we created the file; its directory entry is not synced yet
  bool poisoned_ = false;          // an fsync failed: never fsync this descriptor again
  // The file's size when it was opened, and accepted() at that moment: a
  // stream offset maps to file offset open_size_ + (offset - open_accepted_).
  uint64_t open_size_ = 0;
  uint64_t open_accepted_ = 0;
};

}  // namespace pgslotd
