// A PostgreSQL snapshot as pg_current_snapshot() shows it
// ("xmin:xmax:xip,xip,..." with 64-bit transaction ids), and whether it sees
// a transaction that the replication stream names by its 32-bit xid.
//
// A snapshot chunk is read in a REPEATABLE READ transaction whose first
// statement is pg_current_snapshot(): the rows it reads are exactly those of
// the transactions this snapshot sees (docs/design-snapshots.md).
//
// Only top-level transaction ids are compared: pgoutput names a transaction
// by its top-level xid (Begin, Stream Commit), and a transaction's
// subtransactions commit with it. Only committed transactions are asked
// about, so "seen" means "its changes are in what the snapshot reads".
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace pgslotd {

class PgSnapshot {
 public:
  // Parses pg_current_snapshot()'s text form. Errors: kRetryable naming the
  // text (a server would never send it; a session retried reads again).
  static Result<PgSnapshot> Parse(std::string_view text);

  // Whether the snapshot sees the committed transaction `xid`, a 32-bit id
  // from the stream. Its epoch is taken as the one that puts it nearest
  // xmax: less than 2^31 ids after xmax, or at most 2^31 before it, as the
  // server compares xids (the wraparound protection keeps every live xid
  // within 2^31 of the next one). Not "at or below xmax": a transaction
  // that started after the snapshot and committed before the chunk's
  // watermark has an xid at or above xmax (the low half of xmax itself is
  // the first such one), and the chunk must leave its keys out. The
  // special ids 0, 1 and 2 (invalid, bootstrap, frozen) are always seen.
  bool Sees(uint32_t xid) const;

  // The same for a full 64-bit id.
  bool SeesFull(uint64_t full_xid) const;

  // The full id of a stream xid, by the rule Sees uses (0, 1 and 2 stay
  // as they are; in epoch 0 no id comes before them).
  uint64_t Widen(uint32_t xid) const;

  uint64_t xmin() const { return xmin_; }
  uint64_t xmax() const { return xmax_; }
  // Sorted, without duplicates.
  const std::vector<uint64_t>& in_progress() const { return xip_; }

 private:
  uint64_t xmin_ = 0;
  uint64_t xmax_ = 0;
  std::vector<uint64_t> xip_;
};

}  // namespace pgslotd
