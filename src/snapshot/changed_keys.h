// The keys of a table that committed transactions changed, each with the
// transaction's id, as the stream tells them while the table's snapshot
// pass runs (docs/design-snapshots.md).
//
// At a chunk's watermark the pass leaves out of the chunk every key that a
// transaction changed which committed in the stream before the watermark
// but which the chunk's snapshot does not see: the stream already gave that
// key's newer state, and the chunk's row is older.
//
// Only the newest noting of a key is kept; with it, whether that change
// left a TOASTed value out (an update that did not change it): a key left
// out of a chunk because of such a change must be read again later, since
// no line gives the value.
//
// Memory: one entry per key changed since the floor. RaiseFloor(xmin) drops
// the keys of transactions below xmin, which every later snapshot sees (a
// snapshot's xmin never falls). Truncate forgets all keys and remembers the
// truncating transaction instead: every row the truncate removed is then
// left out of a chunk whose snapshot does not see it.
//
// Not thread-safe: owned by one slot worker.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "snapshot/pg_snapshot.h"

namespace pgslotd {

class ChangedKeys {
 public:
  // A transaction (top-level xid, from the stream) that committed changed
  // the row with `key` (its key columns as the formatter writes a record's
  // key: a JSON object). `lacks_toast`: the change's line left an unchanged
  // TOASTed value out.
  void Note(std::string_view key, uint32_t xid, bool lacks_toast);
  // A transaction truncated the table.
  void NoteTruncate(uint32_t xid);

  // Whether a chunk read under `snapshot` must leave out its row with
  // `key`: a transaction the snapshot does not see changed it, and the
  // stream already gave the newer state.
  bool Changed(std::string_view key, const PgSnapshot& snapshot) const;
  // Whether a truncate the snapshot does not see came before: the chunk's
  // rows are all older than the stream, and none is written.
  bool TruncatedSince(const PgSnapshot& snapshot) const;
  // A transaction changed rows whose keys the stream does not tell (a key
  // column the old tuple lacks; a streamed transaction that was open when
  // the pass began). Unlike a truncate it takes no lock that orders it, so
  // the keys noted stay.
  void NoteUnknown(uint32_t xid);
  // Whether a chunk read under `snapshot` must be read again: a truncate
  // or a change of unknown keys it does not see.
  bool MustReadAgain(const PgSnapshot& snapshot) const;

  // The keys whose newest change `snapshot` does not see and lacked a
  // TOASTed value: a consumer may have no line with that value, so the pass
  // reads them again later, whether the chunk held them or not (an update
  // may move a row's key into the chunk's range). Reading a key again that
  // the consumer already has whole is harmless: a read line is the row's
  // state at its place in the stream.
  std::vector<std::string> LackingToastUnseenBy(const PgSnapshot& snapshot) const;

  // Forgets the keys of transactions below `snapshot`'s xmin, which it and
  // every later snapshot see (call it with each written chunk's snapshot).
  void RaiseFloor(const PgSnapshot& snapshot);
  void Clear();

  size_t size() const { return keys_.size(); }

 private:
  struct Entry {
    uint32_t xid = 0;
    bool lacks_toast = false;
  };
  std::unordered_map<std::string, Entry> keys_;
  std::vector<uint32_t> unknown_;  // NoteUnknown's, above the floor
  bool truncated_ = false;
  uint32_t truncate_xid_ = 0;
};

}  // namespace pgslotd
