// What the supervisor reports about its slots: the one-line STATUS= text
// and the watchdog's "has every slot thread checked in?" question. Pure
// functions over snapshots, so that both are tested without threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "pg/lsn.h"
#include "slot/slot_worker.h"

namespace pgslotd {

struct SlotView {
  std::string name;
  SlotState state = SlotState::kStarting;
  Lsn flushed = kInvalidLsn;  // acknowledged to the server
  Lsn server_wal_end = kInvalidLsn;
  int64_t heartbeat_ns = 0;       // steady clock
  bool finished = false;          // its thread has ended
  bool started = true;            // its thread has been started
  int64_t oldest_pending_ns = 0;  // steady clock; 0: nothing waits
  bool alarm = false;             // the lag alarm is raised
  Lsn received = kInvalidLsn;
  Lsn durable = kInvalidLsn;  // its output durable in the sink
  std::string error;          // the last session's error, if one failed
  std::string sink;           // "file /var/lib/pgslotd/orders.log"
  std::string sink_state;     // "idle", "writing", "waiting for reader", ...
  // Its thread has not checked in for longer than the supervisor allows
  // (a thread stuck in the kernel, say): it is not responding.
  bool late = false;
  // A record sink's figures (kafka), when has_figures.
  bool has_figures = false;
  uint64_t in_flight = 0;
  uint64_t transactions_committed = 0;
  bool brokers_down = false;
  // The spool of streamed transactions (format json), when has_spool.
  bool has_spool = false;
  uint64_t spool_memory = 0;
  uint64_t spool_disk = 0;
  // The snapshot of this run, when has_snapshot: the table being read
  // (empty: done), rows written, tables done and left.
  bool has_snapshot = false;
  std::string snapshot_table;
  uint64_t snapshot_rows = 0;
  uint64_t snapshot_tables_done = 0;
  uint64_t snapshot_tables_left = 0;
  int64_t snapshot_table_estimate = -1;  // the table's rows, estimated; -1: unknown
};

SlotView ViewOf(const SlotWorker& w);

// Bytes the server holds for the slot beyond what it acknowledged.
uint64_t LagBytes(const SlotView& v);

// "1.5 MiB", "12 B".
std::string FormatBytes(uint64_t bytes);

// "orders: streaming, flushed 0/16B3748, lag 1.2 MiB; items: waiting for
// sink, flushed 0/16B3000, lag 64.0 MiB, LAG ALARM" (no "lag" for a slot
// that has not heard from the server yet; "NOT RESPONDING" for a late one).
std::string StatusLine(const std::vector<SlotView>& slots);

// The answer to `pgslotd --status`: one line per slot (name, state with
// the error of a failed or retrying slot, received / durable / acknowledged
// positions, lag in bytes and seconds, the sink and its state), or the same
// as one JSON document. `now_ns` is the steady clock, for lag seconds.
std::string StatusReport(const std::vector<SlotView>& slots, int64_t now_ns, bool json);

// True when every slot whose thread is still running checked in within
// `window` of `now_ns` (steady clock).
bool AllCheckedIn(const std::vector<SlotView>& slots, int64_t now_ns,
                  std::chrono::nanoseconds window);

}  // namespace pgslotd
