// A regular file, appended to. Durable = fdatasync'ed (and the directory
// fsync'ed once after this sink created the file). See sink.h.
//
// Exactly once: the sink keeps a state record (state_record.h) of how many
// bytes of the file hold whole transactions and the position they stand
// for; Recover() cuts a torn tail back to it, Checkpoint() replaces it, and
// Rotate() renames the file to <path>.1 (shifting older ones up to
// <path>.<keep>) and starts a new one.
#pragma once

#include <string>

#include "sink/sink.h"
#include "sink/state_record.h"

namespace pgslotd {

class FileSink : public ByteSink, public ExactlyOnceSink {
 public:
  FileSink(std::string path, uint32_t mode, RotateConfig rotate = RotateConfig())
      : path_(std::move(path)), mode_(mode), rotate_(rotate) {}
  ~FileSink() override;

  std::string Describe() const override { return "file " + path_; }
  Status Open() override;
  Status Write(const char* data, size_t len, size_t* written) override;
  Status Sync() override;
  bool SyncIsCostly() const override { return accepted() > durable() || dir_sync_pending_; }
  bool CanRetract() const override { return true; }
  Status Discard(uint64_t keep) override;
  Status Reopen() override;
  Status Close() override;

  ExactlyOnceSink* exactly_once() override { return this; }
  Result<Lsn> Recover(const StateKey& key, std::string* note, bool* warn) override;
  Result<bool> Checkpoint(uint64_t offset, Lsn lsn) override;
  bool KeepsSnapshotProgress() const override { return true; }
  void SetSnapshotProgress(std::string progress) override { snapshot_ = std::move(progress); }
  std::string RecoveredSnapshotProgress() const override { return recovered_snapshot_; }
  bool RotationDue(uint64_t offset) const override;
  Status Rotate() override;

 private:
  // Checkpoint: replaces the state record (see sink.h).
  Status WriteRecord(uint64_t offset, Lsn lsn);
  // The file's size once the stream reaches `offset`.
  uint64_t FileSizeAt(uint64_t offset) const { return open_size_ + (offset - open_accepted_); }
  static Status CutTo(const std::string& path, uint64_t size);
  // Recover's part on the file: matches `rec` (of this server, slot and
  // path) with what is at path_ (or <path>.1), cuts a torn tail, opens.
  Status ApplyRecord(const SinkStateRecord& rec, std::string* note, bool* warn);
  std::string Numbered(uint32_t n) const { return path_ + "." + std::to_string(n); }

  std::string path_;
  uint32_t mode_;
  RotateConfig rotate_;
  int fd_ = -1;
  bool dir_sync_pending_ = false;  // we created the file; its directory entry is not synced yet
  bool poisoned_ = false;          // an fsync failed: never fsync this descriptor again
  // The file's size when it was opened, and accepted() at that moment: a
  // stream offset maps to file offset open_size_ + (offset - open_accepted_).
  uint64_t open_size_ = 0;
  uint64_t open_accepted_ = 0;
  uint64_t device_ = 0;  // of the open file
  uint64_t inode_ = 0;
  int64_t created_ = 0;             // when the current file was started (Unix seconds)
  StateKey key_;                    // set by Recover; no records are kept before
  std::string snapshot_;            // the progress the next record holds
  std::string recovered_snapshot_;  // the applied record's
};

}  // namespace pgslotd
