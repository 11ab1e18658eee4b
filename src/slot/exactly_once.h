// The bookkeeping of a slot whose sink holds each committed transaction
// exactly once (sink/sink.h ExactlyOnceSink: a file).
//
//   - Recover: at session start, the sink's state record says what its
//     content stands for; the acknowledgement starts there, and the
//     transactions the server sends again at or below it are skipped
//     (AlreadyWritten), never written twice.
//   - Checkpoint: the durable position and the transaction boundary it
//     stands at are recorded after each sync (group commit), at most once
//     per fsync_interval otherwise; only a recorded position is
//     acknowledged (AckPolicy::Acknowledgeable).
//   - Cut-backs keep exactly what the record says: after a failure, and at
//     a stop that cut a transaction (the next run writes it whole).
//   - Rotation and reopening (SIGHUP) fall between transactions, with
//     everything written and recorded; the record then names the new file.
//
// Owned by one slot worker, which tells it nothing for other sinks.
#pragma once

#include <spdlog/common.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "config/config.h"
#include "pg/lsn.h"
#include "pg/slot_session.h"
#include "slot/ack_policy.h"
#include "slot/sink_writer.h"
#include "snapshot/snapshot_driver.h"
#include "util/status.h"

namespace pgslotd {

class ExactlyOnce {
 public:
  using Clock = std::chrono::steady_clock;

  ExactlyOnce(const SlotConfig& config, ExactlyOnceSink* sink, SinkWriter* writer,
              AckPolicy* policy)
      : config_(config), sink_(sink), writer_(writer), policy_(policy) {}

  // Applies the sink's state record for `session` (the server, the slot's
  // confirmed position, the WAL end no record may be beyond); *applied says
  // whether there was one. Without one the caller calls RecordStart.
  Status Recover(const SlotSession& session, bool* applied);
  // Whether the record Recover applied is beyond the last one this object
  // saw recorded: a Kafka commit whose outcome was unknown when the session
  // failed, which went through. What the record holds (a snapshot's
  // progress) is then newer than what the worker kept.
  bool recorded_ahead() const { return recorded_ahead_; }
  // With no record applied: records the slot's position at once, so that
  // from here on a crash finds the file's size and position.
  Status RecordStart() { return Checkpoint(Clock::now(), true); }
  // The snapshot whose progress each record holds (null: none).
  void set_snapshot(const SnapshotDriver* snapshot) { snapshot_ = snapshot; }
  // Without a snapshot: the progress each record goes on holding (one the
  // worker could not resume in this run; empty: none).
  void HoldProgress(std::string progress) { held_progress_ = std::move(progress); }
  // Records the durable position when it moved (at most once per
  // fsync_interval unless `force`).
  Status Checkpoint(Clock::time_point now, bool force);
  // State records written by this object (each holding the snapshot's
  // progress at its offset, as of when it was written).
  uint64_t records() const { return records_; }
  // A unit of the stream ended at `lsn` (`ended`: a transaction's commit).
  // Whether the sink holds it already, from before this session: its
  // output is then to be dropped. Logs the first one of a session.
  bool AlreadyWritten(Lsn lsn, bool ended);
  // Number of units AlreadyWritten dropped this session; reset it.
  void NewSession() { skipped_ = 0; }

  // SIGHUP: reopen at the next boundary.
  void RequestReopen() { reopen_pending_ = true; }
  // Whether a rotation or a reopen is due and may start now (at a
  // boundary); the worker then stops reading, writes everything and calls
  // Switch.
  bool SwitchDue(Clock::time_point now) const;
  // Rotates or reopens, once everything written is recorded (else tries
  // again in a second). Call after a forced sync.
  Status Switch(Clock::time_point now);

  // After a failure: records what is durable and whole when `synced` (the
  // sync succeeded), and returns the offset the file is to be cut back to:
  // exactly what its record says. Errors other than retryable ones.
  Result<uint64_t> RecordBeforeCutBack(bool synced, Clock::time_point now);
  // At a stop: part of a transaction beyond the record does not stay in
  // the file at rest.
  void DropUnrecorded();

 private:
  void Event(spdlog::level::level_enum level, Lsn lsn, const std::string& message) const;

  const SlotConfig& config_;
  ExactlyOnceSink* sink_;
  SinkWriter* writer_;
  AckPolicy* policy_;
  const SnapshotDriver* snapshot_ = nullptr;
  std::string held_progress_;
  uint64_t records_ = 0;
  Clock::time_point last_checkpoint_;
  Lsn skip_floor_ = kInvalidLsn;  // the record's position when the session began
  bool recorded_ahead_ = false;   // see recorded_ahead()
  uint64_t skipped_ = 0;          // units dropped this session
  bool reopen_pending_ = false;
  Clock::time_point switch_retry_at_;
};

}  // namespace pgslotd
