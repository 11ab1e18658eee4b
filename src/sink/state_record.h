// The record an exactly-once file sink keeps of what its file holds.
//
// One small text file per file sink, <state_directory>/<slot>.state,
// replaced atomically (temp file, fsync, rename, fsync of the directory)
// after each durable flush at a transaction boundary, and always before the
// position it names is acknowledged to the server. It says: the first
// `size` bytes of the file at `path` (inode `inode` on device `device`)
// hold, whole and once, every transaction of slot `slot` on the server
// `system_id` up to `lsn`. On start the worker cuts the file back to `size`
// (a crash may have left part of a transaction after it) and resumes
// streaming at `lsn`.
//
// The text is line-based ("key value"), for operators who look at it; a
// reader that must never see part of a transaction can read a file up to
// the record's size. Its last line, "checksum", is the CRC-32C of every
// byte before it: a record edited or damaged in any field is refused, since
// it could make the worker skip or cut committed transactions. Records of
// version 1 (pgslotd before the checksum) are read without one; the worker
// rewrites them with one at once. Version 3 adds "snapshot": the progress of
// a snapshot that the file holds part of (snapshot/snapshot_progress.h);
// a record without a snapshot under way is written as version 2.
#pragma once

#include <cstdint>
#include <string>

#include "pg/lsn.h"
#include "util/status.h"

namespace pgslotd {

struct SinkStateRecord {
  std::string system_id;  // IDENTIFY_SYSTEM's systemid
  std::string slot;
  std::string path;  // the sink's configured path
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;  // bytes of the file that hold whole transactions
  Lsn lsn = kInvalidLsn;
  int64_t created = 0;  // when the file was started (Unix seconds), for rotate.age
  // The snapshot's progress at `size` (opaque here, one line); empty: none.
  std::string snapshot;

  bool operator==(const SinkStateRecord& o) const;
};

// Version 2, with its checksum (3 with a snapshot).
std::string SerializeStateRecord(const SinkStateRecord& record);
// False with *err saying what is wrong when `text` is not a whole record,
// or fails its checksum. *legacy, if given, says whether it is a version 1
// record (no checksum).
bool ParseStateRecord(const std::string& text, SinkStateRecord* record, std::string* err,
                      bool* legacy = nullptr);

// Reads `file`; *found is false (and the status ok) when it does not exist.
// An unreadable, malformed or damaged record is kSlotFatal: the worker will
// not guess what the file holds. *legacy as for ParseStateRecord.
Status ReadStateRecord(const std::string& file, SinkStateRecord* record, bool* found,
                       bool* legacy = nullptr);

// Replaces `file` atomically and durably (creating its directory, one
// level, when missing). A full disk is kRetryable; a failed fsync is
// kProcessFatal (the outcome of the write can no longer be known).
Status WriteStateRecord(const std::string& file, const SinkStateRecord& record);

}  // namespace pgslotd
