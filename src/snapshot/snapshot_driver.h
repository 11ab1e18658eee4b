// A slot's snapshot from start to end: which tables, in which order, each
// read by a pass (snapshot/snapshot_pass.h) through the reader
// (snapshot/reader_thread.h), framed by start and end lines in the output.
//
// The worker calls Turn() once per loop turn and before each message;
// Turn takes the reader's answer, asks for what comes next and, when the
// worker says the output stands between transactions, writes what is due:
//   {"op":"snapshot","event":"start","schema":..,"table":..}
//   the chunks' read lines
//   {"op":"snapshot","event":"end","schema":..,"table":..,"rows":N}
// A table that cannot be read (no key, dropped, no SELECT privilege) ends
// with {"op":"snapshot","event":"failed",...,"rows":N,"error":"..."}
// instead, and the snapshot goes on with the next table.
//
// Progress: a sink that keeps its position records ProgressAt(offset) with
// it (snapshot_progress.h); after a crash Resume goes on from there. After
// a failed session Rewind goes back to the progress of the output kept.
//
// Not thread-safe: owned by one slot worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "decode/pgoutput_formatter.h"
#include "decode/record_buffer.h"
#include "snapshot/reader_thread.h"
#include "snapshot/snapshot_pass.h"
#include "snapshot/snapshot_progress.h"
#include "util/status.h"

namespace pgslotd {

class SnapshotDriver {
 public:
  using Clock = std::chrono::steady_clock;
  using TableName = std::pair<std::string, std::string>;  // schema, table

  // `reads` (not owned) serves the requests.
  SnapshotDriver(std::string slot, std::vector<std::string> publications, uint32_t chunk_rows,
                 SnapshotReads* reads);

  // snapshot_keyless: read_whole: a table without a key is read whole, in
  // one chunk; its rows are written as read once a read has been changed
  // while it ran 3 times running (the pass's WriteDue). Otherwise it fails.
  void set_read_keyless_whole(bool whole) { read_keyless_whole_ = whole; }

  // What the formatter tells (JsonOptions::observer).
  ChangeObserver* observer() { return &pass_; }

  // Reads `tables` (empty: every table of the publications) after what is
  // queued. `request_id`: the on-demand request file it comes from (empty:
  // none), which the progress names from then on, while the snapshot runs
  // and after, until RequestFilesGone says the file is deleted: a record
  // names it while the file may still be there.
  void Request(std::vector<TableName> tables, const std::string& request_id = "");
  // The request file `request_id` is queued, being read or done, and its
  // file not yet deleted.
  bool HoldsRequest(const std::string& request_id) const;
  // The request files `ids` are deleted: the progress names them no more
  // once the snapshot is done (while it runs it names every request it
  // serves).
  void RequestFilesGone(const std::vector<std::string>& ids);
  // The request files the progress names.
  const std::vector<std::string>& request_ids() const { return request_ids_; }
  // Goes on from `progress` (recorded with the sink's position): its queue,
  // and a table whose pass had started goes on after its recorded key,
  // without a second start line. Call before the first Turn.
  void Resume(const SnapshotProgress& progress);
  // Something is queued or being read.
  bool active() const { return working_ || !requests_.empty(); }

  // Takes the reader's answer and asks for what comes next; when
  // `can_write` (the output stands between transactions), writes what is
  // due to `out` through `formatter`. Returns whether it wrote anything.
  // Log lines say when a table starts and ends.
  bool Turn(PgoutputFormatter* formatter, RecordBuffer* out, bool can_write, Clock::time_point now);

  // The stream has given everything up to `received` (the worker's
  // received position): a chunk whose watermark the server wrote before
  // that, and which has not come, is read again (logged); after 3 such
  // misses running, the table fails (its watermarks do not reach this
  // stream).
  void StreamAt(Lsn received);

  // What the last Turn wrote ends at `offset` of the slot's output (the
  // sink writer's count of bytes appended). Call after a Turn that wrote.
  void Wrote(uint64_t offset);
  // After a failure, the output is kept up to `offset` only (what a stream
  // sink took, what a file's record holds; the rest is dropped, and the
  // server sends its changes again): the snapshot goes back to its
  // progress at `offset`, and a table whose pass had begun there goes on
  // with a new pass after the last chunk kept (no second start line).
  void Rewind(uint64_t offset);

  // Progress. Each Turn that wrote is remembered with where its lines end
  // (Wrote), until Settled says the output will not be cut back before an
  // offset past it.
  // The progress the output holds up to `offset` (serialized; empty when
  // no snapshot is under way there and no request file is named): what a
  // sink records with its position.
  std::string ProgressAt(uint64_t offset) const;
  // The output is never cut back before `offset` (a file: its record's
  // offset; a stream sink: what it took).
  void Settled(uint64_t offset);
  // Nothing left to do, and nothing of it that a cut-back could undo.
  bool finished() const { return !active() && history_.empty() && base_.empty(); }

  // For --status and the metrics.
  struct Figures {
    std::string table;            // schema.table being read; empty: none
    int64_t table_estimate = -1;  // its rows, as the planner estimates them; -1: unknown
    uint64_t rows = 0;            // of that table so far
    uint64_t rows_total = 0;      // of every table, this run
    uint64_t tables_done = 0;
    uint64_t tables_left = 0;  // the current one and those queued after it
  };
  Figures figures() const;

 private:
  enum class State { kIdle, kListing, kDescribing, kBeginning, kReading, kFinishing };

  void TakeAnswer(Clock::time_point now);
  void AskNext(PgoutputFormatter* formatter, bool between, Clock::time_point now);
  void Answered(SnapshotAnswer answer, Clock::time_point now);
  // The current table cannot be read: its failed line is due.
  void Fail(const std::string& error);
  void WriteLine(const char* event, RecordBuffer* out);
  void NextTable();
  // The progress at this moment (the output being what was written).
  SnapshotProgress Progress() const;
  // The progress at `offset`, by what was remembered.
  const SnapshotProgress& RememberedAt(uint64_t offset) const;
  // Makes `progress` the state: any table being read is dropped.
  void Restore(const SnapshotProgress& progress);
  // The progress changed without a line written (the snapshot ended with
  // nothing to write): it holds wherever the last lines written end.
  void ProgressChangedSilently();

  const std::string slot_;
  const std::vector<std::string> publications_;
  const uint32_t chunk_rows_;
  SnapshotReads* reads_;
  SnapshotPass pass_;

  // The progress after each Turn that wrote, with where its lines end, in
  // order; base_ is the progress before the first of them.
  std::deque<std::pair<uint64_t, SnapshotProgress>> history_;
  SnapshotProgress base_;
  bool wrote_ = false;           // the last Turn wrote lines
  bool discard_answer_ = false;  // the answer in flight is from before a Rewind

  State state_ = State::kIdle;
  bool working_ = false;                         // from a request taken until "snapshot done"
  std::deque<std::vector<TableName>> requests_;  // each: tables, or empty for all
  std::vector<std::string> request_ids_;         // request files the progress names
  std::vector<std::string> gone_ids_;            // of those, deleted: dropped when done
  void DropGoneIds();
  std::deque<TableName> tables_;  // of the request being served
  TableName current_;
  TableDescription described_;
  bool start_due_ = false;
  bool start_written_ = false;  // the current table's start line is in the output
  // A resumed table: where its pass goes on.
  std::vector<std::string> resume_after_;
  bool resume_ranges_done_ = false;
  std::vector<std::vector<std::string>> resume_keys_;
  std::string failed_;  // the current table's error, its failed line due
  uint64_t rows_ = 0;
  uint64_t rows_total_ = 0;
  uint64_t tables_done_ = 0;
  Clock::time_point started_;
  Clock::time_point retry_at_;  // after a failed read
  int failures_ = 0;            // of the current request, running
  int watermarks_missed_ = 0;   // of the current table, running
  bool read_keyless_whole_ = false;
  bool given_up_ = false;  // the tables could not be listed
  std::string last_error_;
};

}  // namespace pgslotd
