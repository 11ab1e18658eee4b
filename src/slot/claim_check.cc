#include "slot/claim_check.h"

#include <string>

#include "pg/slot_session.h"

namespace pgslotd {

Status ClaimCheck::CheckClaim(Lsn claim, const char* what) {
  Result<Lsn> reading =
      ReadWalPosition(config_, wakeup_fd_, stop_, heartbeat_, kClaimReadingTimeout);
  if (!reading.ok() && stop_->load(std::memory_order_acquire)) return reading.status();
  if (reading.ok()) position_->Note(reading.value());
  if (!position_->NeedsReading(claim)) return Status::Ok();
  std::string message =
      std::string(what) + " from the server names position " + FormatLsn(claim) +
      ", more than 1 GiB beyond the server's WAL position as read on a plain connection (" +
      (reading.ok() ? "pg_current_wal_lsn() " + FormatLsn(reading.value())
                    : "unreadable: " + reading.status().message()) +
      "): nothing is acknowledged on its strength; the session ends";
  return Status::Retryable(message);
}

// A logical walsender whose server shuts down (fast or smart) reads to the
// end of the WAL, sends that position, asks for a reply, and exits only once
// the position is acknowledged: it asks again after every reply. When WAL
// was written since the last reading (another database's, the server's own
// records), no reading proves that position, and a server that is shutting
// down takes no new connection to read it on. Left capped, the
// acknowledgement would hold the server's shutdown for ever; so the session
// ends instead: at once when the server refuses the reading with 57P03
// (cannot connect now), and after kReplyRequestsUnanswered when readings
// keep failing otherwise (a proxy in the way, a timeout) while the requests
// keep coming. The walsender exits, the server stops, and the next session
// starts from what was acknowledged. An honest server asks for a reply only
// every wal_sender_timeout / 2 otherwise, so a failed reading then (which
// the monitor's next one makes good) ends nothing.
Status ClaimCheck::AnswerReplyRequest(Lsn claim, Clock::time_point now) {
  if (now < next_reply_reading_) return Status::Ok();
  std::string sqlstate;
  Result<Lsn> reading =
      ReadWalPosition(config_, wakeup_fd_, stop_, heartbeat_, kReplyReadingTimeout, &sqlstate);
  next_reply_reading_ = Clock::now() + kReplyReadingEvery;
  if (reading.ok()) {
    position_->Note(reading.value());
    reply_readings_failing_since_.reset();
    return Status::Ok();
  }
  if (stop_->load(std::memory_order_acquire)) return reading.status();  // interrupted
  if (!reply_readings_failing_since_ || now - last_failed_reply_reading_ > kReplyRequestsApart) {
    reply_readings_failing_since_ = now;
  }
  last_failed_reply_reading_ = now;
  if (sqlstate != "57P03" && now - *reply_readings_failing_since_ < kReplyRequestsUnanswered) {
    return Status::Ok();
  }
  return Status::Retryable(
      "the server waits for position " + FormatLsn(claim) +
      " to be acknowledged, beyond the last reading of its WAL position (" +
      FormatLsn(position_->proven()) + "), and reading it again failed (" +
      reading.status().message() +
      "): the session ends so that the server can shut down; nothing after the last "
      "acknowledged position is lost");
}

}  // namespace pgslotd
