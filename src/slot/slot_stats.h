// A slot's state and figures, as other threads (the supervisor, --status,
// the metrics file, the lag alarm) read them while its worker runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "util/mutex.h"

namespace pgslotd {

enum class SlotState : int {
  kStarting,
  kConnecting,
  kStreaming,
  kWaitingForSink,  // the sink cannot take bytes (e.g. no pipe reader)
  kPaused,          // the sink took nothing for sink_stall_timeout: no stream until it does
  kReconnecting,    // backing off after a failure
  kStopping,
  kStopped,      // clean stop
  kDone,         // reached --end-lsn
  kFailed,       // stopped on an error; see SlotWorker::error()
  kInvalidated,  // stopped: the server invalidated the slot
};
const char* SlotStateName(SlotState s);

// Figures other threads may read at any time.
struct SlotStats {
  std::atomic<SlotState> state{SlotState::kStarting};
  std::atomic<uint64_t> flushed_lsn{0};     // acknowledged to the server as flushed
  std::atomic<uint64_t> received_lsn{0};    // highest position received
  std::atomic<uint64_t> server_wal_end{0};  // the server's WAL end, from keepalives
  std::atomic<int64_t> heartbeat_ns{0};     // steady clock, each loop turn
  std::atomic<uint64_t> messages{0};        // messages received for the sink
  std::atomic<uint64_t> bytes{0};           // bytes accepted by the sink
  std::atomic<uint64_t> reconnects{0};
  // When the oldest change received but not yet durable arrived (steady
  // clock ns); 0 when nothing waits. lag_seconds = now - this.
  std::atomic<int64_t> oldest_pending_ns{0};
  // The highest position whose output the sink has made durable (a file
  // sink acknowledges it once its state record says so).
  std::atomic<uint64_t> durable_lsn{0};
  // What the sink is doing, a static text: "idle", "writing", or what it
  // waits for ("waiting for reader", "pipe full").
  std::atomic<const char*> sink_state{"idle"};
  // A record sink's figures (Sink::GetFigures), when has_sink_figures.
  std::atomic<bool> has_sink_figures{false};
  std::atomic<uint64_t> sink_in_flight{0};
  std::atomic<uint64_t> sink_delivery_errors{0};
  std::atomic<uint64_t> sink_transactions_committed{0};
  std::atomic<uint64_t> sink_transactions_aborted{0};
  std::atomic<bool> sink_brokers_down{false};
  // The formatter's spool of streamed transactions (json), when has_spool.
  std::atomic<bool> has_spool{false};
  std::atomic<uint64_t> spool_memory_bytes{0};
  std::atomic<uint64_t> spool_disk_bytes{0};
  // The snapshot this run takes (snapshot: initial), when has_snapshot:
  // read lines written, tables done and left, and the table being read
  // (empty: none, the snapshot is done).
  std::atomic<bool> has_snapshot{false};
  std::atomic<uint64_t> snapshot_rows{0};
  std::atomic<uint64_t> snapshot_tables_done{0};
  std::atomic<uint64_t> snapshot_tables_left{0};
  std::atomic<int64_t> snapshot_table_estimate{-1};  // its rows, estimated; -1: unknown
  mutable Mutex snapshot_mu;
  std::string snapshot_table GUARDED_BY(snapshot_mu);
};

}  // namespace pgslotd
