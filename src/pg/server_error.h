// What a slot does about a server error: the one table that decides.
//
// Servers speak the operator's language (lc_messages), so nothing here ever
// reads the text of a message. The outcome follows from
//   - the step of the session that failed (connecting, a query, creating the
//     slot, START_REPLICATION before streaming began, or streaming),
//   - the SQLSTATE the server sent (none for a lost connection, or for a
//     password libpq was asked for and did not have),
//   - libpq's own signal that a password was needed and none given, and
//   - for the SQLSTATEs that several causes share, what pg_replication_slots
//     says about the slot afterwards (55000 is an invalidated slot when its
//     wal_status is "lost", and something else otherwise).
// SQLSTATEs are not one per cause; measured on PostgreSQL 15: pgoutput's
// unknown option is XX000, a missing plugin library and removed WAL are both
// 58P01, a missing slot and a missing publication both 42704. The step tells
// most of them apart (a plugin is loaded before streaming begins, WAL is
// read after).
//
// The outcomes: retry with backoff (the cause can pass: a restart, a lost
// connection, a slot still held by a previous walsender), stop the slot with
// the reason and what to do (kSlotFatal), or stop it as invalidated
// (kSlotInvalidated). Anything the table does not name is retried, so an
// unknown error never loses data; it is logged with its SQLSTATE.
#pragma once

#include <string>

#include "util/status.h"

namespace pgslotd {

enum class SessionStep {
  kConnect,           // opening the connection (authentication included)
  kQuery,             // IDENTIFY_SYSTEM, SHOW, the slot lookup
  kCreateSlot,        // CREATE_REPLICATION_SLOT
  kStartReplication,  // START_REPLICATION, until the server begins to stream
  kStreaming,         // after CopyBoth: the copy ended with an error or the connection broke
};

struct ServerError {
  SessionStep step = SessionStep::kQuery;
  std::string sqlstate;         // five characters, or "" when there is none
  std::string message;          // the server's (or libpq's) words, on one line
  bool needs_password = false;  // libpq: the server asked for a password and had none
};

// What pg_replication_slots says about the slot once the error happened.
enum class SlotCondition {
  kUnknown,  // not looked up (or the lookup failed)
  kMissing,  // no such slot
  kLost,     // wal_status "lost": the server invalidated it
  kHealthy,  // present and not lost
};

// What the messages need to name.
struct ErrorContext {
  std::string slot;
  std::string plugin;
  std::string role;  // the user the connection logs in as, "" when libpq's default
  // pgslotd created the slot in this run and has not streamed from it yet:
  // a slot that cannot start holds WAL for nothing, so the error says how
  // to drop it.
  bool created_here = false;
};

// Whether the outcome of `e` depends on the slot's condition: the caller
// looks the slot up first and passes what it found.
bool NeedsSlotCondition(const ServerError& e);

// The outcome of `e`, as a Status whose message is the server's words, the
// SQLSTATE, and what the operator should do: kRetryable, kSlotFatal or
// kSlotInvalidated.
Status ClassifyServerError(const ServerError& e, SlotCondition slot, const ErrorContext& ctx);

// Joins the lines of a libpq or server message into one line ("; "
// between lines, tabs and other control characters as spaces, trailing
// blanks gone), so that one log entry is one line.
std::string OneLine(const std::string& text);

// A failed connection has no result object: libpq only gives text. With
// PQERRORS_VERBOSE the server's SQLSTATE stands after the severity
// ("FATAL:  28P01: ..."). Finds it (sets *sqlstate, or clears it when
// there is none) and returns the text without it and without the server's
// source location line, on one line.
std::string ParseConnectFailure(const std::string& verbose_text, std::string* sqlstate);

}  // namespace pgslotd
