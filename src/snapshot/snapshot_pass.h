// The worker's side of a table's snapshot pass (docs/design-snapshots.md):
// it watches the table's changes in the stream, says which chunk to read
// next, and writes each chunk once its watermark has come, leaving out the
// keys the stream already gave newer states of.
//
// The worker drives it:
//   StartTable(table, resume_after,  begin watching (then the reader's
//              formatter)            BeginPass, with RecentlyCommitted());
//   NextRequest()                    what to read (the reader reads it and
//                                    writes its watermark);
//   Answered(chunk) / Failed()       the reader's answer;
//   ChunkDue() -> WriteDue(out)      once both the answer and its watermark
//                                    are in, the rows as read lines;
//   TableDone() -> EndTable()        every row read.
// The formatter tells it the stream's changes, commits and watermarks
// (ChangeObserver) from within Format, on the same thread.
//
// A chunk may be written at its watermark or anywhere after it in the
// stream: the keys it leaves out are those changed by transactions that
// committed before it is written and that its snapshot does not see, so the
// rows it writes are the newest state at the place they are written.
//
// Not thread-safe: owned by one slot worker.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "decode/change_observer.h"
#include "decode/pgoutput_formatter.h"
#include "decode/record_buffer.h"
#include "pg/lsn.h"
#include "snapshot/changed_keys.h"
#include "snapshot/table_reader.h"

namespace pgslotd {

// What to read next.
struct ChunkRequest {
  // The watermark's content: "<slot> <32 random hex digits>".
  std::string watermark;
  // A range chunk: the rows after this key (empty: from the start).
  std::vector<std::string> after_key;
  // Or, when not empty, the rows with these keys (read again).
  std::vector<std::vector<std::string>> keys;
};

class SnapshotPass : public ChangeObserver {
 public:
  // `slot` names the watermarks; a chunk has up to `chunk_rows` rows.
  SnapshotPass(std::string slot, uint32_t chunk_rows);

  // --- ChangeObserver (the formatter, within Format) ----------------------
  uint64_t generation() const override { return generation_; }
  const Watch* WatchOf(std::string_view schema, std::string_view table) override;
  void OnChange(uint32_t watch_id, std::string_view key, uint32_t xid, bool lacks_toast) override;
  void OnTruncate(uint32_t watch_id, uint32_t xid) override;
  void OnCommit(uint32_t xid) override;
  void OnWatermark(std::string_view content, uint64_t lsn) override;

  // --- The worker ----------------------------------------------------------
  // Starts watching `table` and reading it after `resume_after` (a key
  // recorded with the sink's position; empty: from the start). `formatter`
  // (not owned; the one that tells this pass the stream) writes its read
  // lines until EndTable. Call it between transactions: a streamed
  // transaction open then counts, at its commit, as a change of unknown
  // keys.
  void StartTable(const TableDescription& table, std::vector<std::string> resume_after,
                  PgoutputFormatter* formatter);
  // Keys (their columns' text values) to read again once the ranges are
  // read: those recorded with the progress when the pass was cut; and
  // whether the ranges were all read then (none is read again).
  void ReadAgain(std::vector<std::vector<std::string>> keys, bool ranges_done);
  // The keys still to read again, read or not yet written (for the
  // progress to record).
  std::vector<std::vector<std::string>> PendingKeys() const;
  // The transactions the stream committed last, newest last: what
  // TableReader::BeginPass must not find invisible.
  std::vector<uint32_t> RecentlyCommitted() const;
  // The next chunk to read; only when no request is outstanding and
  // !TableDone(). Errors: no random bytes.
  Result<ChunkRequest> NextRequest();
  bool outstanding() const { return outstanding_.has_value(); }
  // The reader's answer to the outstanding request.
  void Answered(Chunk chunk);
  // The read failed: the same rows are asked for again (with a new
  // watermark) by the next NextRequest.
  void Failed();
  // The stream has given everything up to `received` (a message's or a
  // keepalive's position: the server has decoded that far) without the
  // answered chunk's watermark, which the server wrote before it: the
  // watermark is not in this stream (the reading connection reached
  // another server, or a failover lost it). The chunk is then dropped and
  // asked for again, as after Failed; returns true.
  bool WatermarkMissed(Lsn received);
  // Answered, and its watermark has come.
  bool ChunkDue() const { return answer_.has_value() && watermark_lsn_ != kInvalidLsn; }
  // Writes the due chunk's rows (but the changed keys) to `out` as read
  // lines at the watermark's position; returns how many. A truncate or a
  // change of unknown key that the chunk's snapshot does not see makes it
  // write nothing and read the same rows again.
  uint64_t WriteDue(RecordBuffer* out);
  // A table without a key (read whole, in one chunk) whose read was
  // changed while it ran: read again, and after 3 reads running written as
  // read; then this says so, once.
  bool TakeWrittenDespiteChanges() {
    bool was = written_despite_changes_;
    written_despite_changes_ = false;
    return was;
  }
  // Every range read, and no key left to read again.
  bool TableDone() const;
  // The key of the last row of the last range chunk written (the progress
  // to record); empty before the first.
  const std::vector<std::string>& last_key() const { return last_key_; }
  // Every range chunk is written.
  bool ranges_done() const { return ranges_done_; }
  // Stops watching (the table is done, or the pass given up).
  void EndTable();
  bool active() const { return active_; }
  const TableDescription& table() const { return table_; }

 private:
  // Whether a chunk's rows must be read again: the stream truncated the
  // table, or changed a key it did not tell, unseen by `snapshot`.
  bool MustReadAgain(const PgSnapshot& snapshot) const;
  void NoteReadAgain(const PgSnapshot& snapshot);

  const std::string slot_;
  const uint32_t chunk_rows_;
  PgoutputFormatter* formatter_ = nullptr;

  uint64_t generation_ = 1;
  bool active_ = false;
  TableDescription table_;
  Watch watch_;
  uint32_t read_table_ = 0;  // the formatter's DescribeReadTable id
  ChangedKeys changed_;
  std::vector<uint32_t> open_at_start_;  // streamed xids open at StartTable

  std::vector<std::string> last_key_;
  bool ranges_done_ = false;
  std::set<std::string> read_again_;                    // keys as the observer writes them
  std::vector<std::vector<std::string>> resumed_keys_;  // ReadAgain's, not asked yet

  int whole_reads_ = 0;  // of a table without a key, changed while read, running
  bool written_despite_changes_ = false;
  std::optional<ChunkRequest> outstanding_;
  bool repeat_ = false;  // the next request repeats the last one
  ChunkRequest last_request_;
  std::optional<Chunk> answer_;
  Lsn watermark_lsn_ = kInvalidLsn;  // the outstanding request's, once seen

  static constexpr size_t kRecent = 4096;
  std::array<uint32_t, kRecent> recent_{};
  size_t recent_count_ = 0;  // ever noted

  std::vector<PgoutputFormatter::ReadValue> values_;  // reused per row
};

// The key columns' text values of a key as the observer writes it (a JSON
// object of scalars, in the key's order). False if it is not one.
bool KeyTextValues(std::string_view key, std::vector<std::string>* values);

}  // namespace pgslotd
