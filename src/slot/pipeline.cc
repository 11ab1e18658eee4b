#include "slot/pipeline.h"

#include "util/log.h"

namespace pgslotd {

SlotPipeline::SlotPipeline(const SlotConfig& config, std::unique_ptr<Sink> sink, SlotStats* stats)
    : config_(config),
      stats_(stats),
      writer_(std::move(sink), config, &stats->bytes),
      formatter_(MakeFormatter(config)),
      policy_(writer_.sink()->exactly_once() != nullptr) {
  if (ExactlyOnceSink* e = writer_.sink()->exactly_once()) {
    exactly_once_.emplace(config_, e, &writer_, &policy_);
  }
}

Status SlotPipeline::SyncSink(Clock::time_point now, bool force) {
  bool synced = false;
  Status s = writer_.Sync(now, force, &synced);
  policy_.Durable(writer_.sink()->durable());
  // Right after a sync, the record follows at once (group commit: one
  // record per sync); a position moved only by keepalives is recorded at
  // most once per fsync_interval.
  if (s.ok() && exactly_once_) s = exactly_once_->Checkpoint(now, force || synced);
  stats_->flushed_lsn.store(Acked(), std::memory_order_relaxed);
  return s;
}

void SlotPipeline::Heartbeat() {
  stats_->heartbeat_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

void SlotPipeline::Event(Level level, const char* message_id, Lsn lsn,
                         const std::string& message) const {
  Log(level, LogEvent{config_.name, lsn, message_id, {}}, message);
}

}  // namespace pgslotd
