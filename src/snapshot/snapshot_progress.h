// How far a slot's snapshot has come, at one place in its output: what a
// sink that keeps its position (a file's state record) records with it, so
// that after a crash the snapshot goes on from the last chunk the output
// holds, and no row is written twice within a table's pass.
//
// The text form is one line of space-separated tokens, for the state
// record (sink/state_record.h) that carries it:
//   queue N  (t SCHEMA TABLE | all)...   the tables still to read, in order,
//                                        the one being read first; "all":
//                                        every table of the publications,
//                                        not listed yet
//   started 0|1                          the first table's start line is in
//                                        the output (its pass goes on)
//   rows N  after N KEY...               its rows written, and the key of
//                                        the last row of its last range chunk
//   ranges 0|1                           every range chunk is written (only
//                                        keys to read again are left)
//   again N  (K KEY...)...               keys to read again (an update left
//                                        an unchanged TOASTed value out)
//   done N  total N                      tables done, rows written (figures)
//   [requests N ID...]                   the on-demand request files the
//                                        queue holds (snapshot_request.h),
//                                        only when there are any
// Each token escapes "\" as "\\", space as "\s", newline as "\n", tab as
// "\t", and the empty string is "\e".
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pgslotd {

struct SnapshotProgress {
  // A table, or (both empty) every table of the publications.
  using Item = std::pair<std::string, std::string>;
  std::vector<Item> queue;
  bool started = false;
  uint64_t rows = 0;
  std::vector<std::string> after_key;
  bool ranges_done = false;
  std::vector<std::vector<std::string>> read_again;
  uint64_t tables_done = 0;
  uint64_t rows_total = 0;
  std::vector<std::string> requests;  // ids of request files queued

  // Nothing left to do (request files may still be named).
  bool empty() const { return queue.empty(); }
  bool operator==(const SnapshotProgress& o) const;
};

std::string SerializeSnapshotProgress(const SnapshotProgress& progress);
// False, with *err saying what is wrong, when `text` is not one.
bool ParseSnapshotProgress(const std::string& text, SnapshotProgress* progress, std::string* err);

// The token escaping above, for other one-line records (a snapshot
// request): appends `s` as one token, after a space unless `out` is empty.
void AppendToken(const std::string& s, std::string* out);
// Splits a line of such tokens; false when one is malformed.
bool SplitTokens(const std::string& line, std::vector<std::string>* tokens);

}  // namespace pgslotd
