#include "slot/pipeline.h"

#include <poll.h>

#include "util/log.h"

namespace pgslotd {

SlotPipeline::SlotPipeline(const SlotConfig& config, std::unique_ptr<Sink> sink, SlotStats* stats,
                           PrimaryKeys* primary_keys)
    : config_(config),
      stats_(stats),
      writer_(std::move(sink), config, &stats->bytes),
      // Only a sink that takes records routes them by key.
      formatter_(MakeFormatter(config, writer_.sink()->byte_sink() ? nullptr : primary_keys)),
      policy_(writer_.sink()->exactly_once() != nullptr) {
  if (ExactlyOnceSink* e = writer_.sink()->exactly_once()) {
    exactly_once_.emplace(config_, e, &writer_, &policy_);
  }
}

Status SlotPipeline::SyncSink(Clock::time_point now, bool force) {
  bool synced = false;
  Status s = writer_.Sync(now, force, &synced);
  TakeDurable();
  // Right after a sync, the record follows at once (group commit: one
  // record per sync); a position moved only by keepalives is recorded at
  // most once per fsync_interval.
  if (s.ok() && exactly_once_) s = exactly_once_->Checkpoint(now, force || synced);
  stats_->flushed_lsn.store(Acked(), std::memory_order_relaxed);
  return s;
}

void SlotPipeline::TakeDurable() {
  Sink* sink = writer_.sink();
  policy_.Durable(sink->durable());
  if (sink->CompletionFd() < 0) return;
  completed_.clear();
  sink->TakeCompleted(&completed_);
  for (const Sink::Range& r : completed_) policy_.Completed(r.begin, r.end);
}

bool SlotPipeline::AllDurable() const {
  return writer_.buffered().empty() && policy_.durable_offset() >= writer_.sink()->accepted();
}

Status SlotPipeline::SyncUntilDurable(Clock::time_point until, const std::atomic<bool>* stop) {
  Sink* sink = writer_.sink();
  Status s = sink->Sync();
  TakeDurable();
  while (s.ok() && policy_.durable_offset() < sink->accepted() &&
         (sink->RecheckAfter().count() > 0 || sink->CompletionFd() >= 0) && Clock::now() < until &&
         !stop->load(std::memory_order_acquire)) {
    Heartbeat();
    struct pollfd pfd = {sink->CompletionFd(), POLLIN, 0};
    ::poll(&pfd, pfd.fd >= 0 ? 1 : 0, 20);
    s = sink->Sync();
    TakeDurable();
  }
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
