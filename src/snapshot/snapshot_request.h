// On-demand snapshots: `pgslotd --snapshot SLOT [--table SCHEMA.TABLE]...`
// writes a request file in the slot's state directory; the slot's worker
// takes it (at each session start, and when the control socket says one
// came) and deletes it once the request cannot be lost any more.
//
// A request file, <state_directory>/<slot>.snapshot-request.<id>, where <id>
// is the UTC time in nanoseconds (20 digits) and the writer's pid, so that
// names sort in the order the requests were made:
//   pgslotd-snapshot-request 1
//   all                         every table of the slot's publications, or
//   table SCHEMA TABLE          one line per table, in the order given
// Names are tokens as in snapshot_progress.h (escaped spaces and
// newlines). It is written to a temporary name (starting with a dot),
// fsynced, renamed into place and its directory fsynced: once
// WriteSnapshotRequest returns, the request survives a crash of the
// machine.
//
// When a request is done with (SnapshotRequestFiles::Settle):
//   - a sink that keeps its position (a file): once a state record written
//     after the request was queued holds it (the record's snapshot
//     progress carries the queue, and names the request's file while the
//     snapshot runs and until it is deleted); a crash after that goes on
//     from the record,
//     and a file a crash left although a record names it is deleted, not
//     queued twice;
//   - a stream sink (stdout, a pipe): once the snapshot is finished; a
//     crash before that reads the tables again.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace pgslotd {

using QualifiedTable = std::pair<std::string, std::string>;  // schema, table

// "schema.table" as SQL reads it: each part either an unquoted name
// (folded to lower case) or a double-quoted one (kept as it is, "" for a
// quote). False, with *err saying what is wrong, otherwise (no schema, an
// empty part, stray quotes).
bool ParseQualifiedTable(const std::string& text, QualifiedTable* table, std::string* err);

// The file's text for `tables` (empty: every table of the publications).
std::string SerializeSnapshotRequest(const std::vector<QualifiedTable>& tables);
// False, with *err saying what is wrong, when `text` is not one.
bool ParseSnapshotRequest(const std::string& text, std::vector<QualifiedTable>* tables,
                          std::string* err);

// Writes a request for `slot` into `directory`, durably. Returns its path.
// Mode 0644 whatever the umask (the daemon's user must read it; it holds
// table names only); when run as root, the file is given to the
// directory's owner and group. When the file is in place but its directory
// could not be fsynced, *warning says so (the request stands).
Result<std::string> WriteSnapshotRequest(const std::string& directory, const std::string& slot,
                                         const std::vector<QualifiedTable>& tables,
                                         std::string* warning);

// The worker's side: which request files it has taken, and deleting them
// when they are done with. Not thread-safe: owned by one slot worker.
class SnapshotRequestFiles {
 public:
  struct Request {
    std::string path;
    std::string id;                      // the name's <id>
    std::vector<QualifiedTable> tables;  // empty: every table
  };

  SnapshotRequestFiles(std::string directory, std::string slot);

  // The request files not taken yet, oldest first; each is now taken. A
  // file that is no request is renamed to <name>.invalid, and *errors says
  // so (one message each).
  std::vector<Request> TakeNew(std::vector<std::string>* errors);
  // Whether any request file waits (taken or not).
  bool AnyWaiting() const;

  // `r` (taken) is queued in the snapshot; `records` is the sink's count
  // of state records written so far (ExactlyOnce::records()).
  void Queued(const Request& r, uint64_t records);
  bool pending() const { return !queued_.empty(); }
  // Deletes `r` (taken) now: a record holds it already (it came back with
  // the record's progress after a crash). Whether it is gone.
  bool Forget(const Request& r);
  // Deletes the queued files that are done with: with a sink that keeps
  // its position, those queued before a record now written (`records`
  // beyond their count); any sink, all of them once the snapshot is
  // `finished`. Returns the ids of those deleted (each directory entry
  // gone for good: the directory is fsynced). A file that cannot be
  // deleted is logged, and stays taken.
  std::vector<std::string> Settle(bool keeps_position, uint64_t records, bool finished);
  // Forgets what was taken and queued (a new output): every file is taken
  // again.
  void Reset();
  // Of `ids`, those whose file is not there (any more).
  std::vector<std::string> Missing(const std::vector<std::string>& ids) const;

 private:
  std::vector<std::string> List() const;
  // Unlinks `path` (logged when it cannot); whether it is gone.
  bool Delete(const std::string& path);
  void SyncAfterDeleting();

  const std::string directory_;
  const std::string slot_;
  const std::string prefix_;     // "<slot>.snapshot-request."
  std::set<std::string> taken_;  // paths
  struct Queue {
    std::string path, id;
    uint64_t records;  // written before it was queued
  };
  std::vector<Queue> queued_;
};

}  // namespace pgslotd
