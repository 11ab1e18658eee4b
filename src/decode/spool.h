// The spool of streamed (in-progress) transactions: the output lines of
// each top-level transaction, kept until its Stream Commit or Stream Abort.
//
// A record is one would-be output line plus the subtransaction that made
// the change and a split offset (where the commit fields, unknown until
// Stream Commit, are inserted when the line is written out). Records of one
// transaction come back in the order they were appended.
//
// Memory: the records of all transactions held in memory together stay at
// or below `memory_limit` bytes (record bytes; buffer capacity may be up to
// twice that). When an append would pass the limit, the appending
// transaction's buffered records are moved to its file (then, if needed,
// every other transaction's), and a record larger than the limit on its own
// goes straight to the file. Files are
//   <dir>/pgslotd-<slot>-<pid>-<xid>.spool   (pgslotd-<pid>-<xid>.spool
//                                             when `slot` is empty)
// created mode 0600 with O_CLOEXEC and flock(2)ed while they exist (see
// ClearStale), written with plain write(2) (never
// fsynced: a spool only lives as long as its stream, and after a restart the
// server sends the transaction again). `dir` itself is created (mode 0700)
// when the first file is, if it is missing; its parent must exist. With an
// empty `dir` nothing goes to disk and memory is not bounded.
//
// Subtransaction aborts are recorded, not applied: their records are
// skipped when the transaction is replayed.
//
// File format (private to one process): records back to back, each a
// 12-byte header {uint32 subxid, uint32 split, uint32 length} in host byte
// order followed by `length` bytes.
//
// Not thread-safe: owned by one formatter.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/status.h"

namespace pgslotd {

class Spool {
 public:
  // Split value of a record that has no commit fields.
  static constexpr uint32_t kNoSplit = UINT32_MAX;

  // Receives replayed records.
  class Visitor {
   public:
    virtual ~Visitor() = default;
    virtual void OnRecord(uint32_t split, std::string_view line) = 0;
  };

  Spool(std::string dir, std::string slot, uint64_t memory_limit);
  ~Spool();  // removes every file this spool made
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends one record to top-level transaction `xid`. Fails (kRetryable)
  // only when the spool file cannot be created or written.
  Status Append(uint32_t xid, uint32_t subxid, uint32_t split, std::string_view line);

  // Drops `subxid`'s records from `xid` (all of `xid` when they are equal).
  void Abort(uint32_t xid, uint32_t subxid);

  // Calls `visitor` for each surviving record of `xid` in order, then
  // forgets `xid` and removes its file. A transaction that was never
  // appended to replays nothing. On a read failure (kRetryable) `xid` is
  // still forgotten.
  Status Replay(uint32_t xid, Visitor* visitor);

  // The same, a piece at a time, so that a large transaction never sits in
  // memory whole: BeginReplay(xid), then ReplaySome until *done. Each call
  // visits records until about `budget` bytes of them were visited (at
  // least one record). Only one replay runs at a time; Append and Abort of
  // other transactions may come between calls, not of this one.
  void BeginReplay(uint32_t xid);
  Status ReplaySome(Visitor* visitor, size_t budget, bool* done);
  bool replaying() const { return replay_active_; }

  // Forgets every transaction and removes their files.
  void Clear();

  // Removes spool files of this slot left in `dir` by a process that has
  // ended (crashed, killed) or by this one, i.e. every such file that no
  // live Spool holds: the owner of a file keeps an flock(2) on it while the
  // file exists, and the kernel drops it when the owner ends, so neither a
  // reused pid nor a not yet reaped process keeps a stale file alive.
  void ClearStale();

  bool Contains(uint32_t xid) const { return txns_.count(xid) != 0; }
  uint64_t memory_used() const { return memory_used_; }
  // Bytes in this spool's files (what they take on disk, near enough).
  uint64_t disk_used() const { return disk_used_; }
  // Transactions that currently have a file.
  size_t files_open() const;
  // The file a transaction would use.
  std::string PathFor(uint32_t xid) const;

 private:
  struct Txn {
    std::string memory;  // records not yet moved to the file
    int fd = -1;
    bool file_written = false;
    uint64_t file_bytes = 0;        // written to the file
    std::vector<uint32_t> aborted;  // subtransactions whose records are dropped
  };

  // Moves `txn`'s buffered records to its file.
  Status SpillToFile(uint32_t xid, Txn* txn);
  Status WriteToFile(uint32_t xid, Txn* txn, const char* data, size_t len);
  void Forget(uint32_t xid);
  // Hands every complete record in `data` to `visitor`; returns how many
  // bytes were consumed (the rest is an incomplete record).
  size_t VisitRecords(const Txn& txn, const char* data, size_t len, Visitor* visitor,
                      size_t budget = SIZE_MAX);

  std::string dir_;
  std::string prefix_;  // "pgslotd-<slot>-" or "pgslotd-"
  uint64_t memory_limit_;
  uint64_t memory_used_ = 0;
  uint64_t disk_used_ = 0;
  pid_t pid_;
  std::unordered_map<uint32_t, Txn> txns_;
  std::vector<char> read_buffer_;
  // The replay in progress (BeginReplay).
  bool replay_active_ = false;
  uint32_t replay_xid_ = 0;
  off_t replay_offset_ = 0;  // next file byte to read
  size_t replay_have_ = 0;   // bytes of read_buffer_ not yet visited
  bool replay_file_done_ = false;
};

}  // namespace pgslotd
