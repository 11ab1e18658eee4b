#include "pg/conninfo.h"

#include <libpq-fe.h>

#include <cstring>

namespace pgslotd {

namespace {

struct ParsedOptions {
  PQconninfoOption* opts = nullptr;
  ~ParsedOptions() {
    if (opts) PQconninfoFree(opts);
  }
};

bool Parse(const std::string& conninfo, ParsedOptions* parsed, std::string* err) {
  char* errmsg = nullptr;
  parsed->opts = PQconninfoParse(conninfo.c_str(), &errmsg);
  if (parsed->opts) return true;
  if (err) {
    *err = errmsg ? errmsg : "out of memory";
    while (!err->empty() && (err->back() == '\n' || err->back() == ' ')) err->pop_back();
  }
  if (errmsg) PQfreemem(errmsg);
  return false;
}

// The parsed `conninfo` (without any replication key), then each of
// `defaults` the user did not set.
bool ParamsWithDefaults(const std::string& conninfo,
                        const std::vector<std::pair<std::string, std::string>>& defaults,
                        std::vector<std::pair<std::string, std::string>>* params,
                        std::string* err) {
  ParsedOptions parsed;
  if (!Parse(conninfo, &parsed, err)) return false;
  params->clear();
  for (PQconninfoOption* o = parsed.opts; o->keyword; ++o) {
    if (o->val && std::strcmp(o->keyword, "replication") != 0) {
      params->emplace_back(o->keyword, o->val);
    }
  }
  size_t given = params->size();
  for (const auto& [key, value] : defaults) {
    bool set = false;
    for (size_t i = 0; i < given; ++i) set = set || (*params)[i].first == key;
    if (!set) params->emplace_back(key, value);
  }
  return true;
}

}  // namespace

bool BuildReplicationParams(const std::string& conninfo, const std::string& slot,
                            std::vector<std::pair<std::string, std::string>>* params,
                            std::string* err) {
  // TCP keepalives notice a dead peer of an idle connection in about half a
  // minute, not two hours; tcp_user_timeout bounds the other case, a peer
  // that vanished while our status updates wait unacknowledged (else the
  // kernel retransmits for some fifteen minutes).
  if (!ParamsWithDefaults(conninfo,
                          // pgoutput converts text to the client's encoding:
                          // JSON output is UTF-8 whatever the database's is.
                          {{"application_name", "pgslotd_" + slot},
                           {"client_encoding", "UTF8"},
                           {"keepalives", "1"},
                           {"keepalives_idle", "10"},
                           {"keepalives_interval", "5"},
                           {"keepalives_count", "3"},
                           {"tcp_user_timeout", "60000"}},
                          params, err)) {
    return false;
  }
  params->emplace_back("replication", "database");
  return true;
}

bool BuildMonitorParams(const std::string& conninfo,
                        std::vector<std::pair<std::string, std::string>>* params,
                        std::string* err) {
  return ParamsWithDefaults(
      conninfo, {{"application_name", "pgslotd_monitor"}, {"connect_timeout", "10"}}, params, err);
}

bool BuildSnapshotParams(const std::string& conninfo, const std::string& slot,
                         std::vector<std::pair<std::string, std::string>>* params,
                         std::string* err) {
  return ParamsWithDefaults(conninfo,
                            {{"application_name", "pgslotd_" + slot + "_snapshot"},
                             {"client_encoding", "UTF8"},
                             {"connect_timeout", "10"}},
                            params, err);
}

std::string RedactConninfo(const std::string& conninfo) {
  ParsedOptions parsed;
  if (!Parse(conninfo, &parsed, nullptr)) return "(unparseable connection string)";
  std::string out;
  for (PQconninfoOption* o = parsed.opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (!out.empty()) out += ' ';
    out += o->keyword;
    out += '=';
    // Passwords, and the dispchar "*" options libpq itself hides.
    if (std::strcmp(o->keyword, "password") == 0 || (o->dispchar && o->dispchar[0] == '*')) {
      out += "********";
    } else {
      out += o->val;
    }
  }
  return out;
}

}  // namespace pgslotd
