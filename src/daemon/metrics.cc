#include "daemon/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "util/fd.h"
#include "util/path.h"

namespace pgslotd {

namespace {

struct Family {
  const char* name;
  const char* type;
  const char* help;
  double (*get)(const SlotMetrics&);
  // Which slots the family lists: all, or only those that have what it
  // counts (a family no slot has is left out).
  bool (*listed)(const SlotMetrics&) = nullptr;  // nullptr: every slot
};

bool HasSinkFigures(const SlotMetrics& m) { return m.has_sink_figures; }
bool HasSpool(const SlotMetrics& m) { return m.has_spool; }
bool HasSnapshot(const SlotMetrics& m) { return m.has_snapshot; }

const Family kFamilies[] = {
    {"pgslotd_slot_lag_bytes", "gauge",
     "Bytes of WAL the server holds for the slot beyond its flushed position.",
     [](const SlotMetrics& m) { return static_cast<double>(m.lag_bytes); }},
    {"pgslotd_slot_lag_seconds", "gauge",
     "Age in seconds of the oldest change received but not yet durable.",
     [](const SlotMetrics& m) { return m.lag_seconds; }},
    {"pgslotd_slot_flushed_lsn", "gauge",
     "Flushed (acknowledged) LSN of the slot, as a byte position.",
     [](const SlotMetrics& m) { return static_cast<double>(m.flushed_lsn); }},
    {"pgslotd_slot_changes_total", "counter", "Messages received for the sink.",
     [](const SlotMetrics& m) { return static_cast<double>(m.changes); }},
    {"pgslotd_slot_bytes_total", "counter", "Bytes the sink accepted.",
     [](const SlotMetrics& m) { return static_cast<double>(m.bytes); }},
    {"pgslotd_slot_reconnects_total", "counter", "Streaming sessions that ended in a retry.",
     [](const SlotMetrics& m) { return static_cast<double>(m.reconnects); }},
    {"pgslotd_slot_lag_alarm", "gauge", "1 while the slot's lag alarm is raised.",
     [](const SlotMetrics& m) { return m.alarm ? 1.0 : 0.0; }},
    {"pgslotd_slot_streaming", "gauge", "1 while the slot is streaming.",
     [](const SlotMetrics& m) { return m.streaming ? 1.0 : 0.0; }},
    {"pgslotd_slot_paused", "gauge",
     "1 while the slot is paused: its sink took nothing for sink_stall_timeout.",
     [](const SlotMetrics& m) { return m.paused ? 1.0 : 0.0; }},
    {"pgslotd_slot_responding", "gauge",
     "0 while the slot's thread has not checked in for too long (stuck), else 1.",
     [](const SlotMetrics& m) { return m.responding ? 1.0 : 0.0; }},
    {"pgslotd_slot_heartbeat_age_seconds", "gauge",
     "Seconds since the slot's thread last checked in.",
     [](const SlotMetrics& m) { return m.heartbeat_age_seconds; }},
    {"pgslotd_sink_in_flight_records", "gauge",
     "Records sent to the Kafka brokers whose delivery is not yet reported.",
     [](const SlotMetrics& m) { return static_cast<double>(m.sink_in_flight); }, HasSinkFigures},
    {"pgslotd_sink_delivery_errors_total", "counter",
     "Records the Kafka brokers did not take (each is sent again, or stops the slot).",
     [](const SlotMetrics& m) { return static_cast<double>(m.sink_delivery_errors); },
     HasSinkFigures},
    {"pgslotd_sink_transactions_committed_total", "counter",
     "Kafka transactions committed (exactly_once).",
     [](const SlotMetrics& m) { return static_cast<double>(m.sink_transactions_committed); },
     HasSinkFigures},
    {"pgslotd_sink_transactions_aborted_total", "counter",
     "Kafka transactions aborted (exactly_once): after a failure, or open at a stop.",
     [](const SlotMetrics& m) { return static_cast<double>(m.sink_transactions_aborted); },
     HasSinkFigures},
    {"pgslotd_sink_brokers_down", "gauge", "1 while none of the slot's Kafka brokers answers.",
     [](const SlotMetrics& m) { return m.sink_brokers_down ? 1.0 : 0.0; }, HasSinkFigures},
    {"pgslotd_spool_memory_bytes", "gauge",
     "Bytes of streamed, not yet committed transactions held in memory (format json).",
     [](const SlotMetrics& m) { return static_cast<double>(m.spool_memory_bytes); }, HasSpool},
    {"pgslotd_spool_disk_bytes", "gauge",
     "Bytes of streamed, not yet committed transactions in spool files under "
     "<state_directory>/spool (format json).",
     [](const SlotMetrics& m) { return static_cast<double>(m.spool_disk_bytes); }, HasSpool},
    {"pgslotd_snapshot_rows_total", "counter",
     "Rows written as read lines by the slot's snapshot (a resumed one: since its start).",
     [](const SlotMetrics& m) { return static_cast<double>(m.snapshot_rows); }, HasSnapshot},
    {"pgslotd_snapshot_tables_left", "gauge",
     "Tables this run's snapshot has still to read, the one being read included.",
     [](const SlotMetrics& m) { return static_cast<double>(m.snapshot_tables_left); }, HasSnapshot},
};

std::string Number(double v) {
  char buf[64];
  // Integers exactly (LSNs exceed 2^53 only past 8 PiB of WAL).
  if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 9e15 && v > -9e15) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%.6f", v);
  }
  return buf;
}

}  // namespace

std::string RenderMetrics(double start_time_seconds, const std::vector<SlotMetrics>& slots) {
  std::string out;
  out += "# HELP pgslotd_start_time_seconds Start time of the process, in Unix seconds.\n";
  out += "# TYPE pgslotd_start_time_seconds gauge\n";
  out += "pgslotd_start_time_seconds " + Number(start_time_seconds) + "\n";
  for (const Family& f : kFamilies) {
    bool any = f.listed == nullptr;
    for (const SlotMetrics& m : slots) any = any || f.listed(m);
    if (!any) continue;
    out += std::string("# HELP ") + f.name + " " + f.help + "\n";
    out += std::string("# TYPE ") + f.name + " " + f.type + "\n";
    for (const SlotMetrics& m : slots) {
      if (f.listed != nullptr && !f.listed(m)) continue;
      // Slot names are [a-z0-9_]: nothing to escape in the label.
      out += std::string(f.name) + "{slot=\"" + m.slot + "\"} " + Number(f.get(m)) + "\n";
    }
  }
  return out;
}

Status WriteMetricsFile(const std::string& path, double start_time_seconds,
                        const std::vector<SlotMetrics>& slots) {
  std::string text = RenderMetrics(start_time_seconds, slots);
  std::string tmp = path + ".tmp";
  int fd = CreateFresh(tmp, 0644);  // never through a link someone put there
  if (fd < 0) return Status::Retryable(ErrnoMessage("cannot create " + tmp, errno));
  size_t done = 0;
  int err = WriteFully(fd, text.data(), text.size(), &done);
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return Status::Retryable(ErrnoMessage("cannot write " + tmp, err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return Status::Retryable(ErrnoMessage("cannot rename " + tmp + " to " + path, e));
  }
  return Status::Ok();
}

}  // namespace pgslotd
