// The CopyBoth messages of PostgreSQL's streaming replication protocol
// (protocol chapter "Streaming Replication Protocol"). Parsing never trusts
// the wire: every length is checked before a field is read, and a short or
// unknown message is an error value, never an out-of-bounds read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pg/lsn.h"
#include "util/status.h"

namespace pgslotd {

// Microseconds since 2000-01-01 00:00:00 UTC, the server's timestamp epoch.
using PgTimestamp = int64_t;
PgTimestamp NowPgTimestamp();

struct ServerMessage {
  enum class Kind { kXLogData, kKeepalive };
  Kind kind = Kind::kXLogData;
  Lsn data_start = 0;  // XLogData: position of the change this message carries
  Lsn wal_end = 0;     // the server's WAL end (XLogData and keepalive)
  PgTimestamp send_time = 0;
  bool reply_requested = false;  // keepalive only
  std::string_view payload;      // XLogData only; points into the input buffer
};

// Parses one CopyData payload from the server. `buf` must outlive the
// returned payload view.
Status ParseServerMessage(const char* buf, size_t len, ServerMessage* out);

// Size of a standby status update ('r').
constexpr size_t kStatusUpdateSize = 34;

// Writes a standby status update into `out` (kStatusUpdateSize bytes).
void BuildStatusUpdate(Lsn write, Lsn flush, Lsn apply, PgTimestamp now, bool reply_requested,
                       char out[kStatusUpdateSize]);

}  // namespace pgslotd
