// Prometheus text exposition for node_exporter's textfile collector,
// written atomically: a temporary file in the same directory, then
// rename(2), so that a scraper never reads half a file.
//
// Metrics (gauges unless noted), each with a slot="<name>" label:
//   pgslotd_start_time_seconds            process start, Unix time (no label)
//   pgslotd_slot_lag_bytes                server WAL end minus flushed LSN
//   pgslotd_slot_lag_seconds              age of the oldest change not yet durable
//   pgslotd_slot_flushed_lsn              flushed LSN as a byte position
//   pgslotd_slot_changes_total            counter: messages received for the sink
//   pgslotd_slot_bytes_total              counter: bytes the sink accepted
//   pgslotd_slot_reconnects_total         counter: sessions that ended in a retry
//   pgslotd_slot_lag_alarm                1 while the lag alarm is raised
//   pgslotd_slot_streaming                1 while the slot is streaming
//   pgslotd_slot_paused                   1 while the slot is paused: its sink
//                                         took nothing for sink_stall_timeout
//   pgslotd_slot_responding               0 while the slot's thread is not
//                                         checking in (stuck), else 1
//   pgslotd_slot_heartbeat_age_seconds    since the slot's thread last checked in
// Counters restart from 0 when the slot's stream is restarted by a reload.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace pgslotd {

struct SlotMetrics {
  std::string slot;
  uint64_t lag_bytes = 0;
  double lag_seconds = 0;
  uint64_t flushed_lsn = 0;
  uint64_t changes = 0;
  uint64_t bytes = 0;
  uint64_t reconnects = 0;
  bool alarm = false;
  bool streaming = false;
  bool paused = false;
  bool responding = true;
  double heartbeat_age_seconds = 0;
  // A record sink's figures (kafka); the pgslotd_sink_* families list only
  // the slots that have them.
  bool has_sink_figures = false;
  uint64_t sink_in_flight = 0;
  uint64_t sink_delivery_errors = 0;
  uint64_t sink_transactions_committed = 0;
  uint64_t sink_transactions_aborted = 0;
  bool sink_brokers_down = false;
  // The spool of streamed transactions (format json); the pgslotd_spool_*
  // families list only the slots that have one.
  bool has_spool = false;
  uint64_t spool_memory_bytes = 0;
  uint64_t spool_disk_bytes = 0;
  // The snapshot of this run; the pgslotd_snapshot_* families list only
  // the slots that take one.
  bool has_snapshot = false;
  uint64_t snapshot_rows = 0;
  uint64_t snapshot_tables_left = 0;
};

// The exposition text.
std::string RenderMetrics(double start_time_seconds, const std::vector<SlotMetrics>& slots);

// Writes RenderMetrics(...) to `path` atomically.
Status WriteMetricsFile(const std::string& path, double start_time_seconds,
                        const std::vector<SlotMetrics>& slots);

}  // namespace pgslotd
