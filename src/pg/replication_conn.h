// One replication connection (replication=database) over libpq, used by one
// slot worker. Every wait polls the socket together with the worker's wakeup
// descriptor, so a stop request interrupts connecting and queries alike.
//
// Errors are classified where they enter (see ClassifyServerError): a slot
// that does not exist, a permission problem, an invalidated slot or a plugin
// refusing its options is kSlotFatal; a lost connection, a server restart or
// a slot still held by a previous walsender is kRetryable.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "pg/lsn.h"
#include "pg/protocol.h"
#include "util/status.h"

namespace pgslotd {

using Rows = std::vector<std::vector<std::string>>;  // NULL becomes ""

// Maps a server error to what the worker should do.
Status ClassifyServerError(const char* sqlstate, const std::string& message);
// Same for a failure to connect (libpq gives no SQLSTATE there).
Status ClassifyConnectError(const std::string& message);

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
  // Runs a command that returns tuples (or none); rows as text.
  Result<Rows> Query(const std::string& sql, Clock::time_point deadline);
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
  int socket() const { return conn_ ? PQsocket(conn_) : -1; }
  bool connected() const { return conn_ != nullptr; }
  // The server's message for the last failure, trimmed.
  std::string LastError() const;
  int server_version() const { return conn_ ? PQserverVersion(conn_) : 0; }

 private:
  // Waits until the socket is ready for `events`, the wakeup fd fires with
  // stop set, or the deadline passes.
  Status Wait(short events, Clock::time_point deadline);
  Status ResultError(PGresult* res);
  Status DrainResults(Clock::time_point deadline, ExecStatusType want, PGresult** kept);

  int wakeup_fd_;
  const std::atomic<bool>* stop_;
  std::atomic<int64_t>* heartbeat_;
  PGconn* conn_ = nullptr;
  bool draining_ = false;  // EndCopy: finish even though stop is set
};

}  // namespace pgslotd
