#include "daemon/status_line.h"

#include <cstdio>

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
  v.oldest_pending_ns = s.oldest_pending_ns.load(std::memory_order_relaxed);
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
  }
  return out;
}

bool AllCheckedIn(const std::vector<SlotView>& slots, int64_t now_ns,
                  std::chrono::nanoseconds window) {
  for (const SlotView& v : slots) {
    if (v.finished) continue;
    if (now_ns - v.heartbeat_ns > window.count()) return false;
  }
  return true;
}

}  // namespace pgslotd
