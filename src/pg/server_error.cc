#include "pg/server_error.h"

#include <algorithm>
#include <cstring>

namespace pgslotd {

namespace {

enum class Outcome { kRetry, kStop, kInvalidated };

// Steps as bits, so that one row can cover several.
constexpr unsigned Bit(SessionStep s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned kConnect = Bit(SessionStep::kConnect);
constexpr unsigned kQuery = Bit(SessionStep::kQuery);
constexpr unsigned kCreate = Bit(SessionStep::kCreateSlot);
constexpr unsigned kStart = Bit(SessionStep::kStartReplication);
constexpr unsigned kStream = Bit(SessionStep::kStreaming);
constexpr unsigned kAnyStep = kConnect | kQuery | kCreate | kStart | kStream;

// `sqlstate`: five characters match exactly, two a class, "*" anything
// (also none). `when`: kUnknown matches any condition; any other value
// makes the row depend on the slot's condition. `password`: the row
// matches only when libpq says a password was needed and not given.
struct Rule {
  unsigned steps;
  const char* sqlstate;
  SlotCondition when;
  bool password;
  Outcome outcome;
  const char* advice;  // {slot}, {plugin} and {role} are filled in
};

constexpr SlotCondition kAnySlot = SlotCondition::kUnknown;

// First match wins. Keep docs/operations.md ("What stops a slot") in step.
// clang-format off
constexpr Rule kRules[] = {
  {kAnyStep, "*", kAnySlot, true, Outcome::kStop,
   "the server asks for a password and none is given: put it in a passfile (passfile= in the "
   "connection string, or ~/.pgpass of the user pgslotd runs as) or in the connection string"},
  {kConnect, "28P01", kAnySlot, false, Outcome::kStop,
   "the server refused the password of role {role}: correct it in the passfile or the connection "
   "string"},
  {kConnect, "28000", kAnySlot, false, Outcome::kStop,
   "the server refuses this login (pg_hba.conf has no entry for it, or the role may not log in): "
   "allow it in pg_hba.conf, or correct user= in the connection string"},
  {kConnect, "3D000", kAnySlot, false, Outcome::kStop,
   "the database named in the connection string does not exist"},
  {kConnect, "42501", kAnySlot, false, Outcome::kStop,
   "role {role} may not stream changes: give it the REPLICATION attribute "
   "(ALTER ROLE {role} REPLICATION) or connect as another role"},
  // A replication connection already proves the REPLICATION attribute, so
  // creating or starting a slot can only lack the right to its plugin.
  {kCreate | kStart, "42501", kAnySlot, false, Outcome::kStop,
   "the server does not let replication roles use the output plugin \"{plugin}\" (it is not in "
   "the server setting output_plugin_libraries): if that is safe for every role with "
   "REPLICATION, add it to that list (SHOW output_plugin_libraries, then ALTER SYSTEM SET "
   "output_plugin_libraries = '<that list>, {plugin}') and reload the server (SELECT "
   "pg_reload_conf()), or correct plugin: in the configuration"},
  {kAnyStep, "42501", kAnySlot, false, Outcome::kStop,
   "role {role} lacks a privilege this needs"},
  {kConnect, "53300", kAnySlot, false, Outcome::kRetry,
   "the server has no connection to spare (max_connections, max_wal_senders): retrying"},
  {kCreate, "53400", kAnySlot, false, Outcome::kRetry,
   "every replication slot of the server is in use (max_replication_slots): retrying"},
  {kCreate | kStart, "58P01", kAnySlot, false, Outcome::kStop,
   "the output plugin \"{plugin}\" is not installed on the server (its library cannot be "
   "loaded): install it there (wal2json: the postgresql-15-wal2json package), or correct "
   "plugin: in the configuration"},
  {kStart | kStream, "55000", SlotCondition::kLost, false, Outcome::kInvalidated,
   "the server has invalidated slot \"{slot}\" (wal_status lost): the changes it held are gone; "
   "an operator must recreate it (drop it and create it again)"},
  {kStream, "58P01", SlotCondition::kLost, false, Outcome::kInvalidated,
   "the server has invalidated slot \"{slot}\" (wal_status lost): the WAL it needed is gone; an "
   "operator must recreate it (drop it and create it again)"},
  {kStart | kStream, "55006", kAnySlot, false, Outcome::kRetry,
   "slot \"{slot}\" is in use by another process (another pgslotd or pg_recvlogical, or the "
   "walsender of a connection that has not ended yet): retrying until it is free"},
  {kStart | kStream, "55000", kAnySlot, false, Outcome::kStop, ""},
  {kStream, "58P01", kAnySlot, false, Outcome::kStop,
   "the server cannot read a file slot \"{slot}\" needs"},
  {kStart, "42704", kAnySlot, false, Outcome::kStop, ""},
  {kStream, "42704", kAnySlot, false, Outcome::kStop,
   "the output plugin needs an object that does not exist (pgoutput: a publication of "
   "publication_names): create it; the slot decodes with the catalog of each change's time, so "
   "it may have to be created again after that"},
  {kStart, "22023", kAnySlot, false, Outcome::kStop,
   "the output plugin \"{plugin}\" refused its options: correct options: in the configuration"},
  {kStart, "XX000", kAnySlot, false, Outcome::kStop,
   "the output plugin \"{plugin}\" refused its options: correct options: in the configuration"},
  {kAnyStep, "0A000", kAnySlot, false, Outcome::kStop,
   "the server does not support what was asked (the output plugin's options, or its version)"},
  {kAnyStep, "42601", kAnySlot, false, Outcome::kStop,
   "the server could not parse the replication command pgslotd sent (an option or plugin name "
   "its grammar does not accept)"},
  {kAnyStep, "42602", kAnySlot, false, Outcome::kStop, ""},
  {kCreate, "55000", kAnySlot, false, Outcome::kStop, ""},
  // A snapshot's reads: the table or a column of it is gone.
  {kQuery, "42P01", kAnySlot, false, Outcome::kStop,
   "the table does not exist any more (dropped or renamed)"},
  {kQuery, "42703", kAnySlot, false, Outcome::kStop,
   "a column of the table does not exist any more (dropped or renamed)"},
  {kAnyStep, "*", kAnySlot, false, Outcome::kRetry, ""},
};
// clang-format on

bool StateMatches(const char* pattern, const std::string& sqlstate) {
  if (std::strcmp(pattern, "*") == 0) return true;
  size_t n = std::strlen(pattern);
  return sqlstate.size() == 5 && sqlstate.compare(0, n, pattern) == 0;
}

// The first row for `e` whose slot condition fits `slot` (any row when
// `slot` is null).
const Rule* Match(const ServerError& e, const SlotCondition* slot) {
  for (const Rule& r : kRules) {
    if (!(r.steps & Bit(e.step)) || !StateMatches(r.sqlstate, e.sqlstate)) continue;
    if (r.password && !e.needs_password) continue;
    if (slot != nullptr && r.when != kAnySlot && r.when != *slot) continue;
    return &r;
  }
  return nullptr;
}

std::string Fill(const char* advice, const ErrorContext& ctx) {
  std::string out;
  for (const char* p = advice; *p != '\0'; ++p) {
    auto take = [&](const char* name, const std::string& value) {
      size_t n = std::strlen(name);
      if (std::strncmp(p, name, n) != 0) return false;
      out += value;
      p += n - 1;
      return true;
    };
    if (*p == '{' && (take("{slot}", ctx.slot) || take("{plugin}", ctx.plugin) ||
                      take("{role}", ctx.role.empty() ? "(default)" : ctx.role))) {
      continue;
    }
    out += *p;
  }
  return out;
}

bool Blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

bool NeedsSlotCondition(const ServerError& e) {
  for (const Rule& r : kRules) {
    if (r.when != kAnySlot && (r.steps & Bit(e.step)) && StateMatches(r.sqlstate, e.sqlstate)) {
      return true;
    }
  }
  return false;
}

Status ClassifyServerError(const ServerError& e, SlotCondition slot, const ErrorContext& ctx) {
  std::string text = e.message.empty() ? "the server gave no reason" : e.message;
  if (!e.sqlstate.empty()) text += " (SQLSTATE " + e.sqlstate + ")";
  if (slot == SlotCondition::kUnknown && NeedsSlotCondition(e)) {
    return Status::Retryable(text + "; the slot's state could not be read: retrying");
  }
  const Rule* rule = Match(e, &slot);
  std::string advice = rule != nullptr ? Fill(rule->advice, ctx) : std::string();
  if (!advice.empty()) text += ": " + advice;
  Outcome outcome = rule != nullptr ? rule->outcome : Outcome::kRetry;
  switch (outcome) {
    case Outcome::kRetry:
      return Status::Retryable(text);
    case Outcome::kInvalidated:
      return Status::SlotInvalidated(text);
    case Outcome::kStop:
      break;
  }
  if (ctx.created_here &&
      (e.step == SessionStep::kStartReplication || e.step == SessionStep::kStreaming)) {
    text += "; pgslotd created slot \"" + ctx.slot +
            "\" in this run and it holds WAL on the server while it cannot stream: drop it with "
            "SELECT pg_drop_replication_slot('" +
            ctx.slot + "') (with create: true it is created again at the next start)";
  }
  return Status::SlotFatal(text);
}

std::string OneLine(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t end = text.find('\n', i);
    if (end == std::string::npos) end = text.size();
    size_t b = i, e = end;
    while (b < e && Blank(text[b])) ++b;
    while (e > b && Blank(text[e - 1])) --e;
    if (e > b) {
      if (!out.empty()) out += "; ";
      for (size_t k = b; k < e; ++k) {
        auto c = static_cast<unsigned char>(text[k]);
        out += c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c);
      }
    }
    i = end + 1;
  }
  return out;
}

namespace {

bool IsStateChar(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'); }

// "LOCATION:  auth_failed, auth.c:323": the server's source location that
// verbose errors add (its label is translated by libpq, its shape is not).
bool IsLocationLine(const std::string& line) {
  size_t label = line.find(":  ");
  if (label == std::string::npos) return false;
  size_t comma = line.find(", ", label);
  size_t dotc = line.rfind(".c:");
  if (comma == std::string::npos || dotc == std::string::npos || dotc < comma) return false;
  for (size_t k = dotc + 3; k < line.size(); ++k) {
    if (line[k] < '0' || line[k] > '9') return false;
  }
  return dotc + 3 < line.size();
}

}  // namespace

std::string ParseConnectFailure(const std::string& verbose_text, std::string* sqlstate) {
  sqlstate->clear();
  std::string kept;
  size_t i = 0;
  while (i < verbose_text.size()) {
    size_t end = verbose_text.find('\n', i);
    if (end == std::string::npos) end = verbose_text.size();
    std::string line = verbose_text.substr(i, end - i);
    i = end + 1;
    if (IsLocationLine(line)) continue;
    // "<SEVERITY>:  <SQLSTATE>: <message>", after libpq's own prefix.
    for (size_t at = line.find(":  "); at != std::string::npos; at = line.find(":  ", at + 1)) {
      size_t code = at + 3;
      if (code + 7 <= line.size() && line[code + 5] == ':' && line[code + 6] == ' ' &&
          std::all_of(line.begin() + static_cast<std::ptrdiff_t>(code),
                      line.begin() + static_cast<std::ptrdiff_t>(code + 5), IsStateChar)) {
        if (sqlstate->empty()) *sqlstate = line.substr(code, 5);
        line.erase(code, 7);
        break;
      }
    }
    kept += line + "\n";
  }
  return OneLine(kept);
}

}  // namespace pgslotd
