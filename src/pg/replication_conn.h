// One replication connection (replication=database) over libpq, used by one
// slot worker. Every wait polls the socket together with the worker's wakeup
// descriptor, so a stop request interrupts connecting and queries alike.
//
// Errors are classified where they enter, by SQLSTATE and the step that
// failed, never by their text (pg/server_error.h has the table). The last
// error is kept (last_error()): where its outcome depends on the slot's
// state in pg_replication_slots, the worker looks that up and classifies it
// again.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pg/lsn.h"
#include "pg/protocol.h"
#include "pg/server_error.h"
#include "util/status.h"

namespace pgslotd {

using Rows = std::vector<std::vector<std::string>>;  // NULL becomes ""

struct PgResultDeleter {
  void operator()(PGresult* res) const { PQclear(res); }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

class ReplicationConn {
 public:
  using Clock = std::chrono::steady_clock;

  // `wakeup_fd` becomes readable when `stop` may have been set.
  // `heartbeat` (steady-clock ns, may be null) is touched on every turn of
  // every wait, so that the watchdog sees a worker waiting on the server
  // as alive.
  ReplicationConn(int wakeup_fd, const std::atomic<bool>* stop,
                  std::atomic<int64_t>* heartbeat = nullptr)
      : wakeup_fd_(wakeup_fd), stop_(stop), heartbeat_(heartbeat) {}
  ~ReplicationConn() { Close(); }
  ReplicationConn(const ReplicationConn&) = delete;
  ReplicationConn& operator=(const ReplicationConn&) = delete;

  Status Connect(const std::vector<std::pair<std::string, std::string>>& params,
                 Clock::time_point deadline);
  // Runs a command that returns tuples (or none); rows as text. `step`
  // says what the command is, for the classification of its errors.
  Result<Rows> Query(const std::string& sql, Clock::time_point deadline,
                     SessionStep step = SessionStep::kQuery);
  // Runs one statement with text parameters ($1...) over the extended
  // protocol (plain connections only: a replication connection takes simple
  // queries alone) and returns its result as libpq holds it, values in text
  // format, NULLs told apart (PQgetisnull). A statement that returns no rows
  // gives a result with none.
  Result<PgResultPtr> QueryParams(const std::string& sql, const std::vector<std::string>& params,
                                  Clock::time_point deadline,
                                  SessionStep step = SessionStep::kQuery);
  // Sends START_REPLICATION and waits for CopyBoth.
  Status StartCopy(const std::string& command, Clock::time_point deadline);

  // Streaming (CopyBoth). Reads what the socket has into libpq's buffer.
  Status ConsumeInput();
  // One buffered message: >0 its length (free with PQfreemem), 0 none
  // buffered, or an error status when the copy ended (*len < 0).
  Status GetCopyData(char** buf, int* len);
  // Queues a standby status update and tries to send it.
  Status SendStatus(Lsn write, Lsn flush, bool reply_requested);
  // Sends what libpq still holds; *pending is true if some remains.
  Status Flush(bool* pending);
  // Ends the copy from our side and reads the server's remaining messages
  // (discarding them) until it ends its side too, or the deadline passes.
  Status EndCopy(Clock::time_point deadline);

  void Close();
  // Asks the server to cancel the command in progress, then closes. Closing
  // alone does not end a command that waits (for a lock, say): the backend
  // notices a closed client only when it next writes to it.
  void CancelAndClose();
  int socket() const { return conn_ ? PQsocket(conn_) : -1; }
  bool connected() const { return conn_ != nullptr; }
  // What the messages of errors name (slot, plugin, whether pgslotd
  // created the slot in this run).
  void set_error_context(ErrorContext ctx) { context_ = std::move(ctx); }
  // That context, with the role the connection logs in as.
  ErrorContext error_context() const {
    ErrorContext ctx = context_;
    ctx.role = role_;
    return ctx;
  }
  // The error of the last command (Connect, Query, StartCopy) or of the
  // stream since; an empty message when there was none.
  const ServerError& last_error() const { return last_error_; }
  // `s` is what a command or the stream returned. Where its outcome depends
  // on the state of `slot` (pg/server_error.h: an invalidated slot shares
  // its SQLSTATE with other causes), reads the slot's row of
  // pg_replication_slots on this connection and classifies the last error
  // again; otherwise returns `s`. A lookup that fails leaves it retryable.
  Status WithSlotCondition(const Status& s, const std::string& slot);
  int server_version() const { return conn_ ? PQserverVersion(conn_) : 0; }

 private:
  // Waits until the socket is ready for `events`, the wakeup fd fires with
  // stop set, or the deadline passes.
  Status Wait(short events, Clock::time_point deadline);
  // Keeps `e` as the last error and classifies it.
  Status Fail(ServerError e);
  Status ConnectFailed();
  Status Lost(SessionStep step);  // the connection broke: no result to read
  // libpq's message for the last failure, on one line.
  std::string LibpqError() const;
  Status ResultError(PGresult* res, SessionStep step);
  Status DrainResults(Clock::time_point deadline, ExecStatusType want, PGresult** kept,
                      SessionStep step);
  // Sends what PQsend* queued, waiting while the socket is full.
  Status SendQueued(Clock::time_point deadline);

  int wakeup_fd_;
  const std::atomic<bool>* stop_;
  std::atomic<int64_t>* heartbeat_;
  PGconn* conn_ = nullptr;
  bool draining_ = false;  // EndCopy: finish even though stop is set
  ErrorContext context_;
  std::string role_;  // the user libpq logs in as
  ServerError last_error_;
};

}  // namespace pgslotd
