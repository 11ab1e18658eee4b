#include "pg/replication_conn.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pg/quote.h"
#include "pg/resolve.h"
#include "util/clock.h"
#include "util/fd.h"

namespace pgslotd {

std::string ReplicationConn::LibpqError() const {
  return conn_ ? OneLine(PQerrorMessage(conn_)) : std::string("not connected");
}

Status ReplicationConn::Fail(ServerError e) {
  last_error_ = std::move(e);
  return ClassifyServerError(last_error_, SlotCondition::kUnknown, error_context());
}

Status ReplicationConn::WithSlotCondition(const Status& s, const std::string& slot) {
  if (s.code() != Status::Code::kRetryable || !NeedsSlotCondition(last_error_)) return s;
  if (stop_->load(std::memory_order_acquire)) return s;  // stopping: no lookup
  ServerError kept = last_error_;                        // the lookup is a command of its own
  SlotCondition condition = SlotCondition::kUnknown;
  if (conn_ != nullptr) {
    Result<Rows> found =
        Query("SELECT wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
                  QuoteLiteral(slot),
              Clock::now() + std::chrono::seconds(10));
    if (found.ok() && found.value().empty()) condition = SlotCondition::kMissing;
    if (found.ok() && !found.value().empty()) {
      condition = found.value()[0][0] == "lost" ? SlotCondition::kLost : SlotCondition::kHealthy;
    }
  }
  last_error_ = kept;
  ErrorContext ctx = error_context();
  ctx.slot = slot;
  return ClassifyServerError(kept, condition, ctx);
}

void ReplicationConn::Close() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Status ReplicationConn::Wait(short events, Clock::time_point deadline) {
  for (;;) {
    if (heartbeat_) {
      heartbeat_->store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    if (!draining_ && stop_->load(std::memory_order_acquire)) return Status::Interrupted();
    auto now = Clock::now();
    if (now >= deadline) return Status::Retryable("timed out waiting for the server");
    int64_t left = MillisUntil(deadline, now);
    struct pollfd fds[2] = {{PQsocket(conn_), events, 0}, {wakeup_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) return Status::Retryable(ErrnoMessage("poll", errno));
    if (n > 0 && fds[0].revents) return Status::Ok();
    if (n > 0 && fds[1].revents) {
      // A wakeup (stop, reopen, reload): the requests themselves live in
      // flags, so drain it, or the next poll would return at once forever.
      DrainEventFd(wakeup_fd_);
    }
  }
}

Status ReplicationConn::Connect(const std::vector<std::pair<std::string, std::string>>& params,
                                Clock::time_point deadline) {
  Close();
  last_error_ = ServerError();
  // Names are looked up here, where the wait checks in and sees a stop,
  // not inside libpq (pg/resolve.h).
  ConnParams resolved = params;
  Status rs = ResolveHosts(&resolved, deadline, [this] {
    if (heartbeat_) {
      heartbeat_->store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    return draining_ || !stop_->load(std::memory_order_acquire);
  });
  if (!rs.ok()) return rs;
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : resolved) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!conn_) return Status::Retryable("out of memory creating a connection");
  // A failed connection has no result to read the SQLSTATE from; in verbose
  // form libpq's text carries it (see ParseConnectFailure).
  PQsetErrorVerbosity(conn_, PQERRORS_VERBOSE);
  role_ = PQuser(conn_) != nullptr ? PQuser(conn_) : "";
  if (PQstatus(conn_) == CONNECTION_BAD) return ConnectFailed();
  // As libpq asks: before the first PQconnectPoll, act as if it had said
  // PGRES_POLLING_WRITING (wait for the socket to be writable), or a refused
  // connection is misread and no other host is tried.
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    Status s = Wait(st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
    if (!s.ok()) return s;
    st = PQconnectPoll(conn_);
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) return ConnectFailed();
  }
  PQsetErrorVerbosity(conn_, PQERRORS_DEFAULT);
  if (PQsetnonblocking(conn_, 1) != 0) return Status::Retryable(LibpqError());
  return Status::Ok();
}

Status ReplicationConn::ConnectFailed() {
  ServerError e;
  e.step = SessionStep::kConnect;
  e.message = ParseConnectFailure(PQerrorMessage(conn_), &e.sqlstate);
  e.needs_password = PQconnectionNeedsPassword(conn_) != 0;
  return Fail(std::move(e));
}

Status ReplicationConn::ResultError(PGresult* res, SessionStep step) {
  // The fields, not the formatted text: its severity word ("ERROR",
  // "FEHLER") is in the server's language.
  auto field = [res](int code) {
    const char* v = PQresultErrorField(res, code);
    return v != nullptr ? OneLine(v) : std::string();
  };
  ServerError e;
  e.step = step;
  e.sqlstate = field(PG_DIAG_SQLSTATE);
  e.message = field(PG_DIAG_MESSAGE_PRIMARY);
  if (e.message.empty()) e.message = LibpqError();
  std::string detail = field(PG_DIAG_MESSAGE_DETAIL), hint = field(PG_DIAG_MESSAGE_HINT);
  if (!detail.empty() || !hint.empty()) {
    e.message += " (";
    if (!detail.empty()) e.message += "DETAIL: " + detail + (hint.empty() ? "" : "; ");
    if (!hint.empty()) e.message += "HINT: " + hint;
    e.message += ")";
  }
  return Fail(std::move(e));
}

// Reads results until PQgetResult returns NULL. The first result with status
// `want` is kept in *kept (caller clears it); an error result wins.
Status ReplicationConn::DrainResults(Clock::time_point deadline, ExecStatusType want,
                                     PGresult** kept, SessionStep step) {
  Status err;
  for (;;) {
    while (PQisBusy(conn_)) {
      Status s = Wait(POLLIN, deadline);
      if (!s.ok()) return s;
      if (!PQconsumeInput(conn_)) return Lost(step);
    }
    PGresult* res = PQgetResult(conn_);
    if (!res) break;
    ExecStatusType st = PQresultStatus(res);
    if (st == want && kept && !*kept) {
      *kept = res;
      if (want == PGRES_COPY_BOTH) return err;  // no NULL result follows CopyBoth
      continue;
    }
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) && err.ok()) {
      err = ResultError(res, step);
    }
    PQclear(res);
  }
  return err;
}

Result<Rows> ReplicationConn::Query(const std::string& sql, Clock::time_point deadline,
                                    SessionStep step) {
  if (!conn_) return Status::Retryable("not connected");
  last_error_ = ServerError();
  if (!PQsendQuery(conn_, sql.c_str())) return Lost(step);
  Status s = SendQueued(deadline);
  if (!s.ok()) return s;
  PGresult* res = nullptr;
  s = DrainResults(deadline, PGRES_TUPLES_OK, &res, step);
  Rows rows;
  if (res) {
    for (int r = 0; r < PQntuples(res); ++r) {
      std::vector<std::string> row;
      for (int c = 0; c < PQnfields(res); ++c) row.emplace_back(PQgetvalue(res, r, c));
      rows.push_back(std::move(row));
    }
    PQclear(res);
  }
  if (!s.ok()) return s;
  return rows;
}

Status ReplicationConn::SendQueued(Clock::time_point deadline) {
  bool pending = true;
  while (pending) {
    Status s = Flush(&pending);
    if (!s.ok()) return s;
    if (pending) {
      s = Wait(POLLOUT, deadline);
      if (!s.ok()) return s;
    }
  }
  return Status::Ok();
}

Result<PgResultPtr> ReplicationConn::QueryParams(const std::string& sql,
                                                 const std::vector<std::string>& params,
                                                 Clock::time_point deadline, SessionStep step) {
  if (!conn_) return Status::Retryable("not connected");
  last_error_ = ServerError();
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) values.push_back(p.c_str());
  if (!PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                         values.data(), nullptr, nullptr, 0)) {
    return Lost(step);
  }
  Status s = SendQueued(deadline);
  if (!s.ok()) return s;
  PGresult* res = nullptr;
  s = DrainResults(deadline, PGRES_TUPLES_OK, &res, step);
  PgResultPtr kept(res);
  if (!s.ok()) return s;
  if (!kept) kept.reset(PQmakeEmptyPGresult(conn_, PGRES_TUPLES_OK));
  return kept;
}

void ReplicationConn::CancelAndClose() {
  if (conn_ && PQtransactionStatus(conn_) == PQTRANS_ACTIVE) {
    if (PGcancel* cancel = PQgetCancel(conn_)) {
      char err[256];
      (void)PQcancel(cancel, err, sizeof err);  // best effort: closing follows
      PQfreeCancel(cancel);
    }
  }
  Close();
}

Status ReplicationConn::StartCopy(const std::string& command, Clock::time_point deadline) {
  if (!conn_) return Status::Retryable("not connected");
  last_error_ = ServerError();
  if (!PQsendQuery(conn_, command.c_str())) return Lost(SessionStep::kStartReplication);
  Status s = SendQueued(deadline);
  if (!s.ok()) return s;
  PGresult* res = nullptr;
  s = DrainResults(deadline, PGRES_COPY_BOTH, &res, SessionStep::kStartReplication);
  if (res) PQclear(res);
  if (!s.ok()) return s;
  if (!res) return Status::Retryable("the server did not start streaming: " + LibpqError());
  return Status::Ok();
}

Status ReplicationConn::Lost(SessionStep step) {
  ServerError e;
  e.step = step;
  e.message = LibpqError();
  return Fail(std::move(e));
}

Status ReplicationConn::ConsumeInput() {
  if (!PQconsumeInput(conn_)) return Lost(SessionStep::kStreaming);
  return Status::Ok();
}

Status ReplicationConn::GetCopyData(char** buf, int* len) {
  *len = PQgetCopyData(conn_, buf, 1);
  if (*len >= 0) return Status::Ok();
  if (*len == -2) return Lost(SessionStep::kStreaming);
  // -1: the server ended the copy; its reason is in the next result.
  Status err = Status::Retryable("the server ended streaming");
  for (PGresult* res; (res = PQgetResult(conn_)) != nullptr;) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
      err = ResultError(res, SessionStep::kStreaming);
    }
    PQclear(res);
    // A copy state result repeats for as long as the copy lasts.
    if (PQisBusy(conn_) || st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      break;
    }
  }
  return err;
}

Status ReplicationConn::SendStatus(Lsn write, Lsn flush, bool reply_requested) {
  char msg[kStatusUpdateSize];
  BuildStatusUpdate(write, flush, flush, NowPgTimestamp(), reply_requested, msg);
  if (PQputCopyData(conn_, msg, sizeof msg) != 1) return Status::Retryable(LibpqError());
  bool pending;
  return Flush(&pending);
}

Status ReplicationConn::Flush(bool* pending) {
  int r = PQflush(conn_);
  if (r < 0) return Status::Retryable(LibpqError());
  *pending = r == 1;
  return Status::Ok();
}

Status ReplicationConn::EndCopy(Clock::time_point deadline) {
  if (!conn_) return Status::Ok();
  draining_ = true;
  struct Reset {
    bool* flag;
    ~Reset() { *flag = false; }
  } reset{&draining_};
  if (PQputCopyEnd(conn_, nullptr) != 1) return Status::Retryable(LibpqError());
  bool pending = true;
  while (pending) {
    Status s = Flush(&pending);
    if (!s.ok()) return s;
    if (pending) {
      s = Wait(POLLOUT, deadline);
      if (!s.ok()) return s;
    }
  }
  // Discard what the server sent before it saw our CopyDone: it was never
  // written, so never acknowledged, and comes again next time.
  for (;;) {
    char* buf = nullptr;
    int len = PQgetCopyData(conn_, &buf, 1);
    if (len > 0) {
      PQfreemem(buf);
      continue;
    }
    if (len == 0) {
      Status s = Wait(POLLIN, deadline);
      if (!s.ok()) return s;
      if (!PQconsumeInput(conn_)) return Status::Retryable(LibpqError());
      continue;
    }
    break;
  }
  return DrainResults(deadline, PGRES_COMMAND_OK, nullptr, SessionStep::kStreaming);
}

}  // namespace pgslotd
