#include "daemon/status_line.h"

#include <cstdio>

#include "decode/json.h"

namespace pgslotd {

SlotView ViewOf(const SlotWorker& w) {
  SlotView v;
  const SlotStats& s = w.stats();
  v.name = w.config().name;
  v.state = s.state.load(std::memory_order_relaxed);
  v.flushed = s.flushed_lsn.load(std::memory_order_relaxed);
  v.server_wal_end = s.server_wal_end.load(std::memory_order_relaxed);
  v.heartbeat_ns = s.heartbeat_ns.load(std::memory_order_relaxed);
  v.finished = w.finished();
  v.started = w.started();
  v.oldest_pending_ns = s.oldest_pending_ns.load(std::memory_order_relaxed);
  v.received = s.received_lsn.load(std::memory_order_relaxed);
  v.durable = s.durable_lsn.load(std::memory_order_relaxed);
  v.sink = w.sink_description();
  v.sink_state = s.sink_state.load(std::memory_order_relaxed);
  v.has_figures = s.has_sink_figures.load(std::memory_order_relaxed);
  v.in_flight = s.sink_in_flight.load(std::memory_order_relaxed);
  v.transactions_committed = s.sink_transactions_committed.load(std::memory_order_relaxed);
  v.brokers_down = s.sink_brokers_down.load(std::memory_order_relaxed);
  v.has_spool = s.has_spool.load(std::memory_order_relaxed);
  v.spool_memory = s.spool_memory_bytes.load(std::memory_order_relaxed);
  v.spool_disk = s.spool_disk_bytes.load(std::memory_order_relaxed);
  v.has_snapshot = s.has_snapshot.load(std::memory_order_relaxed);
  if (v.has_snapshot) {
    v.snapshot_rows = s.snapshot_rows.load(std::memory_order_relaxed);
    v.snapshot_tables_done = s.snapshot_tables_done.load(std::memory_order_relaxed);
    v.snapshot_tables_left = s.snapshot_tables_left.load(std::memory_order_relaxed);
    v.snapshot_table_estimate = s.snapshot_table_estimate.load(std::memory_order_relaxed);
    MutexLock lock(&s.snapshot_mu);
    v.snapshot_table = s.snapshot_table;
  }
  if (v.state == SlotState::kReconnecting || v.state == SlotState::kFailed ||
      v.state == SlotState::kInvalidated) {
    v.error = w.last_error();
  }
  return v;
}

uint64_t LagBytes(const SlotView& v) {
  return v.server_wal_end > v.flushed ? v.server_wal_end - v.flushed : 0;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string StatusLine(const std::vector<SlotView>& slots) {
  if (slots.empty()) return "no slots";
  std::string out;
  for (const SlotView& v : slots) {
    if (!out.empty()) out += "; ";
    out += v.name + ": " + SlotStateName(v.state);
    if (v.flushed != kInvalidLsn) out += ", flushed " + FormatLsn(v.flushed);
    if (v.server_wal_end != kInvalidLsn) out += ", lag " + FormatBytes(LagBytes(v));
    if (v.alarm) out += ", LAG ALARM";
    if (v.late) out += ", NOT RESPONDING";
  }
  return out;
}

namespace {

std::string LsnOrDash(Lsn lsn) { return lsn == kInvalidLsn ? "-" : FormatLsn(lsn); }

double LagSeconds(const SlotView& v, int64_t now_ns) {
  if (v.oldest_pending_ns <= 0 || now_ns <= v.oldest_pending_ns) return 0;
  return static_cast<double>(now_ns - v.oldest_pending_ns) / 1e9;
}

void AppendJsonField(const char* name, const std::string& value, bool quote, std::string* out) {
  if (out->back() != '{') *out += ',';
  json::StringOut o{out};
  json::AppendString(name, &o);
  *out += ':';
  if (quote) {
    json::AppendString(value, &o);
  } else {
    *out += value;
  }
}

double HeartbeatAge(const SlotView& v, int64_t now_ns) {
  return now_ns > v.heartbeat_ns ? static_cast<double>(now_ns - v.heartbeat_ns) / 1e9 : 0;
}

std::string TextLine(const SlotView& v, int64_t now_ns) {
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.0f", LagSeconds(v, now_ns));
  std::string line = v.name + ": " + SlotStateName(v.state);
  if (!v.error.empty()) line += " (" + v.error + ")";
  if (v.late) {
    char age[32];
    std::snprintf(age, sizeof age, "%.0f", HeartbeatAge(v, now_ns));
    line += std::string(", NOT RESPONDING for ") + age + " s";
  }
  line += "; received " + LsnOrDash(v.received) + ", durable " + LsnOrDash(v.durable) +
          ", acknowledged " + LsnOrDash(v.flushed) + "; lag ";
  line += v.server_wal_end != kInvalidLsn ? FormatBytes(LagBytes(v)) : std::string("unknown");
  line += std::string(", ") + seconds + " s";
  if (v.alarm) line += ", LAG ALARM";
  line += "; sink " + v.sink + " (" + v.sink_state;
  if (v.has_figures) {
    line += std::string(v.brokers_down ? ", BROKERS DOWN" : ", brokers connected") + ", " +
            std::to_string(v.in_flight) + " in flight, " +
            std::to_string(v.transactions_committed) + " transactions committed";
  }
  line += ")";
  // Only while it holds something: a transaction still open on the server.
  if (v.spool_memory + v.spool_disk > 0) {
    line += "; spool of open streamed transactions " + FormatBytes(v.spool_memory) +
            " in memory, " + FormatBytes(v.spool_disk) + " on disk";
  }
  // Only while it reads a table.
  if (!v.snapshot_table.empty()) {
    line += "; snapshot reading " + v.snapshot_table;
    if (v.snapshot_table_estimate >= 0) {
      line += " (about " + std::to_string(v.snapshot_table_estimate) + " rows)";
    }
    line += ", " + std::to_string(v.snapshot_rows) + " rows written, " +
            std::to_string(v.snapshot_tables_done) + " tables done, " +
            std::to_string(v.snapshot_tables_left) + " to go";
  }
  return line + "\n";
}

std::string JsonSlot(const SlotView& v, int64_t now_ns) {
  std::string out = "{";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.3f", LagSeconds(v, now_ns));
  AppendJsonField("name", v.name, true, &out);
  AppendJsonField("state", SlotStateName(v.state), true, &out);
  AppendJsonField("error", v.error, true, &out);
  AppendJsonField("received_lsn", LsnOrDash(v.received), true, &out);
  AppendJsonField("durable_lsn", LsnOrDash(v.durable), true, &out);
  AppendJsonField("acknowledged_lsn", LsnOrDash(v.flushed), true, &out);
  AppendJsonField("lag_bytes",
                  v.server_wal_end != kInvalidLsn ? std::to_string(LagBytes(v)) : "null", false,
                  &out);
  AppendJsonField("lag_seconds", seconds, false, &out);
  AppendJsonField("lag_alarm", v.alarm ? "true" : "false", false, &out);
  AppendJsonField("responding", v.late ? "false" : "true", false, &out);
  char age[32];
  std::snprintf(age, sizeof age, "%.3f", v.finished ? 0.0 : HeartbeatAge(v, now_ns));
  AppendJsonField("heartbeat_age_seconds", age, false, &out);
  AppendJsonField("sink", v.sink, true, &out);
  AppendJsonField("sink_state", v.sink_state, true, &out);
  if (v.has_figures) {
    AppendJsonField("sink_brokers_down", v.brokers_down ? "true" : "false", false, &out);
    AppendJsonField("sink_in_flight", std::to_string(v.in_flight), false, &out);
    AppendJsonField("sink_transactions_committed", std::to_string(v.transactions_committed), false,
                    &out);
  }
  if (v.has_spool) {
    AppendJsonField("spool_memory_bytes", std::to_string(v.spool_memory), false, &out);
    AppendJsonField("spool_disk_bytes", std::to_string(v.spool_disk), false, &out);
  }
  if (v.has_snapshot) {
    AppendJsonField("snapshot_table", v.snapshot_table, true, &out);
    AppendJsonField("snapshot_rows", std::to_string(v.snapshot_rows), false, &out);
    AppendJsonField("snapshot_tables_done", std::to_string(v.snapshot_tables_done), false, &out);
    AppendJsonField("snapshot_tables_left", std::to_string(v.snapshot_tables_left), false, &out);
    AppendJsonField(
        "snapshot_table_rows_estimate",
        v.snapshot_table_estimate >= 0 ? std::to_string(v.snapshot_table_estimate) : "null", false,
        &out);
  }
  return out + "}";
}

}  // namespace

std::string StatusReport(const std::vector<SlotView>& slots, int64_t now_ns, bool json) {
  std::string out;
  if (!json) {
    for (const SlotView& v : slots) out += TextLine(v, now_ns);
    return slots.empty() ? "no slots\n" : out;
  }
  out = "{\"slots\":[";
  for (size_t i = 0; i < slots.size(); ++i) {
    if (i > 0) out += ',';
    out += JsonSlot(slots[i], now_ns);
  }
  return out + "]}\n";
}

bool AllCheckedIn(const std::vector<SlotView>& slots, int64_t now_ns,
                  std::chrono::nanoseconds window) {
  for (const SlotView& v : slots) {
    if (v.finished || !v.started) continue;
    if (now_ns - v.heartbeat_ns > window.count()) return false;
  }
  return true;
}

}  // namespace pgslotd
