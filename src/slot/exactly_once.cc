#include "slot/exactly_once.h"

#include "util/log.h"

namespace pgslotd {

void ExactlyOnce::Event(spdlog::level::level_enum level, Lsn lsn,
                        const std::string& message) const {
  Log(level, LogEvent{config_.name, lsn, nullptr, {}}, message);
}

Status ExactlyOnce::Recover(const SlotSession& session, bool* applied) {
  *applied = false;
  skip_floor_ = kInvalidLsn;
  const Lsn known = policy_->recorded().lsn;  // what this run saw recorded
  recorded_ahead_ = false;
  std::string note;
  bool warn = false;
  ExactlyOnceSink::StateKey key{config_.state_directory + "/" + config_.name + ".state",
                                session.system_id, config_.name,
                                session.confirmed.value_or(kInvalidLsn), session.wal_end};
  Result<Lsn> recorded = sink_->Recover(key, &note, &warn);
  if (!recorded.ok()) return recorded.status();
  if (!note.empty()) Event(warn ? spdlog::level::warn : spdlog::level::info, kInvalidLsn, note);
  const std::string described = writer_->sink()->Describe();
  if (recorded.value() > session.wal_end) {
    return Status::SlotFatal(
        "the state record " + key.file + " says " + described + " holds changes up to " +
        FormatLsn(recorded.value()) + ", beyond the server's WAL end " +
        FormatLsn(session.wal_end) +
        ": the record is not this server's (or the server was restored from a backup); nothing "
        "is skipped or acknowledged on its strength (move the file and its record aside to start "
        "again from the slot's position)");
  }
  uint64_t offset = writer_->sink()->accepted();
  if (recorded.value() != kInvalidLsn) {
    recorded_ahead_ = known != kInvalidLsn && recorded.value() > known;
    policy_->StartFromRecord(offset, recorded.value());
    skip_floor_ = recorded.value();
    *applied = true;
    return Status::Ok();
  }
  if (session.confirmed) policy_->RaiseFloor(*session.confirmed);
  policy_->StartFromRecord(offset, kInvalidLsn);
  return Status::Ok();
}

Status ExactlyOnce::Checkpoint(Clock::time_point now, bool force) {
  std::optional<AckPolicy::Point> wanted = policy_->CheckpointWanted();
  if (!wanted) return Status::Ok();
  if (!force && !sink_->CheckpointUrgent() && config_.fsync_interval.count() > 0 &&
      now - last_checkpoint_ < config_.fsync_interval) {
    return Status::Ok();
  }
  if (sink_->KeepsSnapshotProgress()) {
    sink_->SetSnapshotProgress(snapshot_ ? snapshot_->ProgressAt(wanted->offset) : held_progress_);
  }
  Result<bool> recorded = sink_->Checkpoint(wanted->offset, wanted->lsn);
  if (!recorded.ok()) return recorded.status().Prefixed(writer_->sink()->Describe());
  if (!recorded.value()) return Status::Ok();  // under way: asked again on a later turn
  policy_->Recorded(wanted->offset, wanted->lsn);
  ++records_;
  last_checkpoint_ = now;
  return Status::Ok();
}

bool ExactlyOnce::AlreadyWritten(Lsn lsn, bool ended) {
  // Only commits are compared: they arrive in the order of their positions
  // (the end of the commit record, the same in every copy), so the first
  // one past the recorded position ends the check. Other units (a message
  // outside a transaction, a streamed block, a change of a plugin without
  // framing) have positions that need not grow, and the server does not
  // send them again below the start position anyway.
  if (skip_floor_ == kInvalidLsn || !ended) return false;
  if (lsn > skip_floor_) {
    skip_floor_ = kInvalidLsn;
    return false;
  }
  if (skipped_++ == 0) {
    Event(spdlog::level::warn, lsn,
          "the server sent again a transaction ending at " + FormatLsn(lsn) + ", at or below " +
              FormatLsn(skip_floor_) + " which " + writer_->sink()->Describe() +
              " already holds; it is not written twice");
  }
  return true;
}

bool ExactlyOnce::SwitchDue(Clock::time_point now) const {
  return policy_->AtBoundary() && now >= switch_retry_at_ &&
         (reopen_pending_ || sink_->RotationDue(writer_->appended()));
}

Status ExactlyOnce::Switch(Clock::time_point now) {
  uint64_t accepted = writer_->sink()->accepted();
  if (!policy_->AtBoundary() || !writer_->buffered().empty() || policy_->SafeOffset() != accepted ||
      policy_->recorded().offset != accepted) {
    // Not everything written is recorded yet: try again a little later.
    switch_retry_at_ = now + std::chrono::seconds(1);
    return Status::Ok();
  }
  bool reopen = reopen_pending_;
  Status s = reopen ? writer_->sink()->Reopen() : sink_->Rotate();
  if (!s.ok()) return s.Prefixed(writer_->sink()->Describe());
  reopen_pending_ = false;
  // The record now names the new file, at the same position.
  const AckPolicy::Point& recorded = policy_->recorded();
  if (recorded.lsn != kInvalidLsn) {
    Result<bool> again = sink_->Checkpoint(recorded.offset, recorded.lsn);
    if (!again.ok()) return again.status().Prefixed(writer_->sink()->Describe());
    last_checkpoint_ = now;
  }
  Event(spdlog::level::info, recorded.lsn,
        (reopen ? "reopened " : "rotated: started a new ") + writer_->sink()->Describe() +
            (recorded.lsn != kInvalidLsn ? " at " + FormatLsn(recorded.lsn) : std::string()));
  return Status::Ok();
}

Result<uint64_t> ExactlyOnce::RecordBeforeCutBack(bool synced, Clock::time_point now) {
  // Record what is durable and whole; the file keeps exactly what its
  // record says (and the next session starts from there).
  if (synced) {
    Status cs = Checkpoint(now, true);
    if (!cs.ok() && cs.code() != Status::Code::kRetryable) return cs;
    if (!cs.ok()) {
      Event(spdlog::level::warn, policy_->recorded().lsn,
            cs.message() + "; cutting the file back to its last record");
    }
  }
  return policy_->recorded().offset;
}

void ExactlyOnce::DropUnrecorded() {
  const AckPolicy::Point recorded = policy_->recorded();
  if (writer_->sink()->accepted() <= recorded.offset) return;
  if (Status ds = writer_->CutBack(recorded.offset); !ds.ok()) {
    Event(spdlog::level::warn, recorded.lsn,
          writer_->sink()->Describe() + ": " + ds.message() + " (the next start cuts it instead)");
  }
  policy_->Restart(writer_->sink()->accepted(), recorded.lsn);
}

}  // namespace pgslotd
