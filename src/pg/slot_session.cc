#include "pg/slot_session.h"

#include <vector>

#include "pg/conninfo.h"
#include "pg/quote.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void Note(const SlotConfig& config, const std::string& message) {
  Log(spdlog::level::info, LogEvent{config.name, kInvalidLsn, nullptr, {}}, message);
}

// Step 2: the server answers a ping only between two of its own steps;
// while it decodes a long run of changes it sends nothing it was not asked
// for for up to wal_sender_timeout/2. A receive_timeout below the server's
// own timeout is raised to it, so a busy server is not taken for dead.
Duration ReceiveTimeout(ReplicationConn* conn, const SlotConfig& config,
                        Clock::time_point deadline) {
  Duration timeout = config.receive_timeout;
  if (timeout.count() == 0) return timeout;
  Result<Rows> shown = conn->Query("SHOW wal_sender_timeout", deadline);
  if (!shown.ok() || shown.value().empty() || shown.value()[0].empty()) return timeout;
  std::optional<milliseconds> server = ParseServerDuration(shown.value()[0][0]);
  if (!server || *server <= timeout) return timeout;
  Note(config, "receive_timeout " + std::to_string(config.receive_timeout.count()) +
                   " ms is below the server's wal_sender_timeout (" + shown.value()[0][0] +
                   "): using " + std::to_string(server->count()) + " ms");
  return *server;
}

// Step 3: the slot's row (slot_type, plugin, database, wal_status,
// confirmed_flush_lsn, active_pid), created first when missing and allowed.
Result<std::vector<std::string>> SlotRow(ReplicationConn* conn, const SlotConfig& config,
                                         const std::string& database, Clock::time_point deadline,
                                         bool* created) {
  const std::string lookup =
      "SELECT slot_type, plugin, database, wal_status, confirmed_flush_lsn, active_pid "
      "FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
      QuoteLiteral(config.name);
  Result<Rows> found = conn->Query(lookup, deadline);
  if (!found.ok()) return found.status().Prefixed("looking up the slot");
  if (!found.value().empty()) return found.value()[0];
  if (!config.create) {
    return Status::SlotFatal(
        "replication slot \"" + config.name +
        "\" does not exist in the server (set create: true to have pgslotd create it)");
  }
  Result<Rows> made =
      conn->Query(BuildCreateSlot(config.name, config.plugin) + " (SNAPSHOT 'nothing')", deadline,
                  SessionStep::kCreateSlot);
  if (made.ok()) {
    *created = true;
    conn->set_error_context(ErrorContext{config.name, config.plugin, "", true});
    Note(config, "created logical replication slot with plugin " + config.plugin + " in database " +
                     database);
  }
  // A failure may be another process creating it first: look again.
  found = conn->Query(lookup, deadline);
  if (!found.ok()) return found.status().Prefixed("looking up the slot");
  if (!found.value().empty()) return found.value()[0];
  return made.ok() ? Status::Retryable("the slot vanished right after creation")
                   : made.status().Prefixed("creating the slot");
}

// Step 5.
Status CheckSlotRow(const std::vector<std::string>& row, const SlotConfig& config,
                    SlotSession* session) {
  const std::string slot = "replication slot \"" + config.name + "\"";
  if (row[0] != "logical") {
    return Status::SlotFatal(slot + " is a " + row[0] + " slot, not a logical one");
  }
  if (row[1] != config.plugin) {
    return Status::SlotFatal(slot + " uses plugin " + row[1] + " but the config says " +
                             config.plugin);
  }
  if (row[2] != session->database) {
    return Status::SlotFatal(slot + " belongs to database " + row[2] +
                             " but the connection is to database " + session->database);
  }
  if (row[3] == "lost") {
    return Status::SlotInvalidated(slot +
                                   " has been invalidated by the server (wal_status lost): the "
                                   "changes it held are gone and an operator must recreate it");
  }
  if (row.size() > 5 && !row[5].empty()) session->active_pid = std::atoi(row[5].c_str());
  if (row[4].empty()) return Status::Ok();
  session->confirmed = ParseLsn(row[4]);
  if (!session->confirmed) return Status::Retryable("unreadable confirmed_flush_lsn " + row[4]);
  if (*session->confirmed > session->wal_end) {
    return Status::SlotFatal(slot + " says it has confirmed " + FormatLsn(*session->confirmed) +
                             ", beyond the server's WAL end " + FormatLsn(session->wal_end) +
                             ": it was acknowledged past what the server has written (a forged "
                             "position, or a server restored from a backup); nothing streamed "
                             "from it could be trusted, so an operator must recreate it");
  }
  return Status::Ok();
}

}  // namespace

std::optional<milliseconds> ParseServerDuration(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = std::stoll(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit == "ms") return milliseconds(n);
  if (unit == "s" || unit.empty()) return milliseconds(n * 1000);
  if (unit == "min") return milliseconds(n * 60000);
  if (unit == "h") return milliseconds(n * 3600000);
  if (unit == "d") return milliseconds(n * 86400000);
  return std::nullopt;
}

Status ConnectForReplication(ReplicationConn* conn, const SlotConfig& config,
                             Clock::time_point deadline) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildReplicationParams(config.connection, config.name, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  Status s = conn->Connect(params, deadline);
  if (!s.ok()) return s.Prefixed("cannot connect (" + RedactConninfo(config.connection) + ")");
  return Status::Ok();
}

Result<SlotSession> LookUpSlot(ReplicationConn* conn, const SlotConfig& config,
                               Clock::time_point deadline) {
  SlotSession session;
  Result<Rows> ident = conn->Query("IDENTIFY_SYSTEM", deadline);
  if (!ident.ok()) return ident.status().Prefixed("IDENTIFY_SYSTEM");
  if (ident.value().empty() || ident.value()[0].size() < 4 || ident.value()[0][3].empty()) {
    return Status::SlotFatal(
        "the connection is not bound to a database (replication=database did not take)");
  }
  session.system_id = ident.value()[0][0];
  session.database = ident.value()[0][3];
  session.receive_timeout = ReceiveTimeout(conn, config, deadline);
  Result<std::vector<std::string>> row =
      SlotRow(conn, config, session.database, deadline, &session.created);
  if (!row.ok()) return row.status();
  // The server's WAL end now, after the slot was read (a slot created just
  // now is ahead of the first IDENTIFY_SYSTEM).
  Result<Rows> now = conn->Query("IDENTIFY_SYSTEM", deadline);
  if (!now.ok()) return now.status().Prefixed("IDENTIFY_SYSTEM");
  std::optional<Lsn> xlogpos;
  if (!now.value().empty() && now.value()[0].size() >= 3) xlogpos = ParseLsn(now.value()[0][2]);
  if (!xlogpos) return Status::Retryable("IDENTIFY_SYSTEM gave no readable xlogpos");
  session.wal_end = *xlogpos;
  if (Status s = CheckSlotRow(row.value(), config, &session); !s.ok()) return s;
  return session;
}

Result<Lsn> ReadWalPosition(const SlotConfig& config, int wakeup_fd, const std::atomic<bool>* stop,
                            std::atomic<int64_t>* heartbeat, Clock::duration timeout,
                            std::string* sqlstate) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildMonitorParams(config.connection, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  ReplicationConn plain(wakeup_fd, stop, heartbeat);
  auto deadline = Clock::now() + timeout;
  Status s = plain.Connect(params, deadline);
  if (!s.ok()) {
    if (sqlstate) *sqlstate = plain.last_error().sqlstate;
    return s;
  }
  Result<Rows> rows = plain.Query("SELECT pg_catalog.pg_current_wal_lsn()", deadline);
  if (!rows.ok()) {
    if (sqlstate) *sqlstate = plain.last_error().sqlstate;
    return rows.status();
  }
  std::optional<Lsn> lsn;
  if (!rows.value().empty() && !rows.value()[0].empty()) lsn = ParseLsn(rows.value()[0][0]);
  if (!lsn) return Status::Retryable("pg_current_wal_lsn() gave no position");
  return *lsn;
}

}  // namespace pgslotd
