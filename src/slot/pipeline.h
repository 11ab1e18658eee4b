// A slot's output path and what decides its acknowledgement: the formatter
// turns the plugin's messages into output, the sink writer takes it to the
// sink, the ack policy decides what of it may be acknowledged, and, for a
// sink that keeps a state record, the exactly-once bookkeeping. Owned by
// the slot worker; each session's read loop works on it. One thread only.
#pragma once

#include <spdlog/common.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "decode/formatter.h"
#include "sink/sink.h"
#include "slot/ack_policy.h"
#include "slot/exactly_once.h"
#include "slot/sink_writer.h"
#include "slot/slot_stats.h"

namespace pgslotd {

class SlotPipeline {
 public:
  using Clock = std::chrono::steady_clock;

  // `primary_keys` (not owned, may be null): where a json slot whose sink
  // takes records reads the primary keys of tables (decode/primary_keys.h).
  SlotPipeline(const SlotConfig& config, std::unique_ptr<Sink> sink, SlotStats* stats,
               PrimaryKeys* primary_keys = nullptr);
  SlotPipeline(const SlotPipeline&) = delete;
  SlotPipeline& operator=(const SlotPipeline&) = delete;

  const SlotConfig& config() const { return config_; }
  SlotStats* stats() { return stats_; }
  SinkWriter& writer() { return writer_; }
  const SinkWriter& writer() const { return writer_; }
  Sink* sink() { return writer_.sink(); }
  Formatter& formatter() { return *formatter_; }
  AckPolicy& policy() { return policy_; }
  const AckPolicy& policy() const { return policy_; }
  // Null unless the sink keeps a state record.
  ExactlyOnce* exactly_once() { return exactly_once_ ? &*exactly_once_ : nullptr; }

  // The position reported to the server as flushed.
  Lsn Acked() const { return policy_.Acknowledgeable(); }
  // Syncs the sink (when due, or `force`), lets the ack policy follow what
  // is durable, records an exactly-once sink's position, and publishes the
  // acknowledged position.
  Status SyncSink(Clock::time_point now, bool force);
  // After a failure: syncs, and while the sink's durable position moves by
  // itself (a pipe reader, delivery reports), waits for it until all is
  // durable, `until` or `*stop`.
  Status SyncUntilDurable(Clock::time_point until, const std::atomic<bool>* stop);
  // Nothing buffered, and everything the sink accepted durable.
  bool AllDurable() const;
  void Heartbeat();
  // What the sink says is durable (durable(), and completed ranges) goes
  // to the ack policy.
  void TakeDurable();
  // Logs about this slot (SLOT= and, when valid, LSN= in the journal).
  void Event(spdlog::level::level_enum level, const char* message_id, Lsn lsn,
             const std::string& message) const;

  // Across sessions: the highest position received, and messages counted.
  Lsn received = kInvalidLsn;
  uint64_t messages = 0;

 private:
  const SlotConfig& config_;
  SlotStats* stats_;
  SinkWriter writer_;
  std::unique_ptr<Formatter> formatter_;
  AckPolicy policy_;
  std::optional<ExactlyOnce> exactly_once_;
  std::vector<Sink::Range> completed_;  // TakeDurable's, reused
};

}  // namespace pgslotd
