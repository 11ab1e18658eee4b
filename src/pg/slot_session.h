// Setting up a slot's session on a replication connection: what the server
// is, what the slot is, and where streaming may start from. No streaming
// here (slot/slot_worker.h does that), and nothing about sinks.
//
// LookUpSlot, on a connected replication=database connection:
//   1. IDENTIFY_SYSTEM: the system identifier and the database;
//   2. SHOW wal_sender_timeout: a receive_timeout below it is raised to it
//      (a busy server sends nothing unasked for up to half of it);
//   3. the slot's row of pg_replication_slots, creating the slot first if
//      it is missing and the config says create: true;
//   4. IDENTIFY_SYSTEM again: the server's WAL end after the slot was read,
//      beyond which no position the slot or a state record names may be;
//   5. checks: a logical slot, of the configured plugin, in this database,
//      not invalidated, confirmed no further than the WAL end.
// Errors name the slot and say what to do; a missing slot without create,
// a mismatch and a confirmed position beyond the WAL end are slot-fatal;
// an invalidated slot is kSlotInvalidated.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "config/config.h"
#include "pg/lsn.h"
#include "pg/replication_conn.h"
#include "util/status.h"

namespace pgslotd {

struct SlotSession {
  std::string system_id;         // IDENTIFY_SYSTEM's systemid
  std::string database;          // the connection's database
  Lsn wal_end = kInvalidLsn;     // the server's WAL end after the lookup
  std::optional<Lsn> confirmed;  // the slot's confirmed_flush_lsn, if set
  Duration receive_timeout{0};   // the config's, raised to wal_sender_timeout
  bool created = false;          // this lookup created the slot
  // The walsender streaming the slot when it was looked up (another
  // pgslotd, a standby's, pg_recvlogical), if one was.
  std::optional<int> active_pid;
};

// Steps 1 to 5 above, within `deadline`. Logs (about `config.name`) a slot
// it creates and a receive_timeout it raises.
Result<SlotSession> LookUpSlot(ReplicationConn* conn, const SlotConfig& config,
                               std::chrono::steady_clock::time_point deadline);

// Connects `conn` as a replication=database connection for the slot.
Status ConnectForReplication(ReplicationConn* conn, const SlotConfig& config,
                             std::chrono::steady_clock::time_point deadline);

// The server's WAL position (pg_current_wal_lsn()) read on a plain
// connection of `config.connection` within `timeout`; a stop (through
// `wakeup_fd` and `stop`) interrupts it. *sqlstate gets the server's code
// when the connection or the query failed with one.
Result<Lsn> ReadWalPosition(const SlotConfig& config, int wakeup_fd, const std::atomic<bool>* stop,
                            std::atomic<int64_t>* heartbeat,
                            std::chrono::steady_clock::duration timeout,
                            std::string* sqlstate = nullptr);

// A duration as SHOW prints it ("60s", "1min", "500ms", "0"); nullopt if
// unreadable.
std::optional<std::chrono::milliseconds> ParseServerDuration(const std::string& text);

}  // namespace pgslotd
