// What a snapshot pass learns from the stream (docs/design-snapshots.md):
// the keys of the rows of the tables it watches that committed transactions
// changed, in stream order, each with its transaction's top-level xid.
//
// The json formatter (decode/pgoutput_formatter.h) calls the observer on the
// worker's thread, from within Format. A change is told once it is known to
// be committed: a change of an ordinary transaction at once (pgoutput sends
// only committed ones), a streamed transaction's changes all at its Stream
// Commit, before its lines; those of an aborted (sub)transaction never.
//
// Keys are written as the formatter writes a record's key (a JSON object of
// the watched key columns, in the watch's order, each value encoded by its
// column's type), so that they compare byte for byte with the key of a row
// read by the snapshot (PgoutputFormatter::ReadKey).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgslotd {

// The prefix of pgslotd's own logical decoding messages (a snapshot chunk's
// watermark). The json formatter never writes a non-transactional message
// with it to a sink; it hands it to the observer.
inline constexpr char kWatermarkPrefix[] = "pgslotd.snapshot";

class ChangeObserver {
 public:
  struct Watch {
    uint32_t id = 0;                       // the observer's own name for it
    std::vector<std::string> key_columns;  // the key, in its order
  };

  virtual ~ChangeObserver() = default;

  // Rises whenever WatchOf may answer differently (a table watched or no
  // longer). Never 0.
  virtual uint64_t generation() const = 0;
  // The watch of schema.table, or null when it is not watched. The pointer
  // need only live until the next call.
  virtual const Watch* WatchOf(std::string_view schema, std::string_view table) = 0;

  // Transaction `xid` changed the row with `key` of the watched table
  // `watch_id`; an update that changed the key tells both keys. `key` is
  // empty when the stream does not tell it (the old tuple lacks a key
  // column). `lacks_toast`: the change's line left out an unchanged TOASTed
  // value.
  virtual void OnChange(uint32_t watch_id, std::string_view key, uint32_t xid,
                        bool lacks_toast) = 0;
  // Transaction `xid` truncated the watched table `watch_id`.
  virtual void OnTruncate(uint32_t watch_id, uint32_t xid) = 0;
  // Transaction `xid` committed (every transaction, watched or not).
  virtual void OnCommit(uint32_t xid) = 0;
  // A non-transactional message with kWatermarkPrefix at `lsn`.
  virtual void OnWatermark(std::string_view content, uint64_t lsn) = 0;
};

}  // namespace pgslotd
