#include "pg/replication_conn.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pgslotd {

namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

bool Contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

Status ClassifyServerError(const char* sqlstate, const std::string& message) {
  std::string code = sqlstate ? sqlstate : "";
  if (Contains(message, "can no longer get changes") || Contains(message, "has been invalidated") ||
      Contains(message, "has already been removed")) {
    return Status::SlotInvalidated("the slot has been invalidated: " + message +
                                   " (changes it held are lost; an operator must recreate it)");
  }
  if (code == "42704" || code == "42501" || code == "28000" || code == "28P01" || code == "3D000" ||
      code == "42602" || code == "22023" || code == "58P01" || code == "42710" || code == "0A000") {
    return Status::SlotFatal(message);
  }
  return Status::Retryable(message);
}

Status ClassifyConnectError(const std::string& message) {
  static const char* kPermanent[] = {
      "password authentication failed",
      "no pg_hba.conf entry",
      "must be superuser or replication",
      "permission denied",
      "does not exist",
      "password is required",
      "requires a password",
      "invalid connection option",
  };
  for (const char* p : kPermanent) {
    if (Contains(message, p)) return Status::SlotFatal(message);
  }
  return Status::Retryable(message);
}

std::string ReplicationConn::LastError() const {
  return conn_ ? Trim(PQerrorMessage(conn_)) : std::string("not connected");
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
    if (!draining_ && stop_->load(std::memory_order_acquire)) return Status::Stopped();
    auto now = Clock::now();
    if (now >= deadline) return Status::Retryable("timed out waiting for the server");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    struct pollfd fds[2] = {{PQsocket(conn_), events, 0}, {wakeup_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) return Status::Retryable(ErrnoMessage("poll", errno));
    if (n > 0 && fds[0].revents) return Status::Ok();
    if (n > 0 && fds[1].revents) {
      // A wakeup (stop, reopen, reload): the requests themselves live in
      // flags, so drain it, or the next poll would return at once forever.
      uint64_t v;
      while (::read(wakeup_fd_, &v, sizeof v) > 0) {
      }
    }
  }
}

Status ReplicationConn::Connect(const std::vector<std::pair<std::string, std::string>>& params,
                                Clock::time_point deadline) {
  Close();
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : params) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!conn_) return Status::Retryable("out of memory creating a connection");
  if (PQstatus(conn_) == CONNECTION_BAD) return ClassifyConnectError(LastError());
  // As libpq asks: before the first PQconnectPoll, act as if it had said
  // PGRES_POLLING_WRITING (wait for the socket to be writable), or a refused
  // connection is misread and no other host is tried.
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    Status s = Wait(st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
    if (!s.ok()) return s;
    st = PQconnectPoll(conn_);
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) return ClassifyConnectError(LastError());
  }
  if (PQsetnonblocking(conn_, 1) != 0) return Status::Retryable(LastError());
  return Status::Ok();
}

Status ReplicationConn::ResultError(PGresult* res) {
  const char* sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  std::string msg = Trim(PQresultErrorMessage(res));
  if (msg.empty()) msg = LastError();
  // Drop libpq's "ERROR:  " prefix; the worker adds its own context.
  if (msg.rfind("ERROR:  ", 0) == 0) msg = msg.substr(8);
  if (msg.rfind("FATAL:  ", 0) == 0) msg = msg.substr(8);
  return ClassifyServerError(sqlstate, msg);
}

// Reads results until PQgetResult returns NULL. The first result with status
// `want` is kept in *kept (caller clears it); an error result wins.
Status ReplicationConn::DrainResults(Clock::time_point deadline, ExecStatusType want,
                                     PGresult** kept) {
  Status err;
  for (;;) {
    while (PQisBusy(conn_)) {
      Status s = Wait(POLLIN, deadline);
      if (!s.ok()) return s;
      if (!PQconsumeInput(conn_)) return Status::Retryable(LastError());
    }
    PGresult* res = PQgetResult(conn_);
    if (!res) break;
    ExecStatusType st = PQresultStatus(res);
    if (st == want && kept && !*kept) {
      *kept = res;
      if (want == PGRES_COPY_BOTH) return err;  // no NULL result follows CopyBoth
      continue;
    }
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) && err.ok()) err = ResultError(res);
    PQclear(res);
  }
  return err;
}

Result<Rows> ReplicationConn::Query(const std::string& sql, Clock::time_point deadline) {
  if (!conn_) return Status::Retryable("not connected");
  if (!PQsendQuery(conn_, sql.c_str())) return Status::Retryable(LastError());
  bool pending = true;
  while (pending) {
    Status s = Flush(&pending);
    if (!s.ok()) return s;
    if (pending) {
      s = Wait(POLLOUT, deadline);
      if (!s.ok()) return s;
    }
  }
  PGresult* res = nullptr;
  Status s = DrainResults(deadline, PGRES_TUPLES_OK, &res);
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

Status ReplicationConn::StartCopy(const std::string& command, Clock::time_point deadline) {
  if (!conn_) return Status::Retryable("not connected");
  if (!PQsendQuery(conn_, command.c_str())) return Status::Retryable(LastError());
  bool pending = true;
  while (pending) {
    Status s = Flush(&pending);
    if (!s.ok()) return s;
    if (pending) {
      s = Wait(POLLOUT, deadline);
      if (!s.ok()) return s;
    }
  }
  PGresult* res = nullptr;
  Status s = DrainResults(deadline, PGRES_COPY_BOTH, &res);
  if (res) PQclear(res);
  if (!s.ok()) return s;
  if (!res) return Status::Retryable("the server did not start streaming: " + LastError());
  return Status::Ok();
}

Status ReplicationConn::ConsumeInput() {
  if (!PQconsumeInput(conn_)) return ClassifyConnectError(LastError());
  return Status::Ok();
}

Status ReplicationConn::GetCopyData(char** buf, int* len) {
  *len = PQgetCopyData(conn_, buf, 1);
  if (*len >= 0) return Status::Ok();
  if (*len == -2) return Status::Retryable(LastError());
  // -1: the server ended the copy; its reason is in the next result.
  Status err = Status::Retryable("the server ended streaming");
  for (PGresult* res; (res = PQgetResult(conn_)) != nullptr;) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) err = ResultError(res);
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
  if (PQputCopyData(conn_, msg, sizeof msg) != 1) return Status::Retryable(LastError());
  bool pending;
  return Flush(&pending);
}

Status ReplicationConn::Flush(bool* pending) {
  int r = PQflush(conn_);
  if (r < 0) return Status::Retryable(LastError());
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
  if (PQputCopyEnd(conn_, nullptr) != 1) return Status::Retryable(LastError());
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
      if (!PQconsumeInput(conn_)) return Status::Retryable(LastError());
      continue;
    }
    break;
  }
  return DrainResults(deadline, PGRES_COMMAND_OK, nullptr);
}

}  // namespace pgslotd
