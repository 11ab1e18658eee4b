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

}  // namespace

bool BuildReplicationParams(const std::string& conninfo, const std::string& slot,
                            std::vector<std::pair<std::string, std::string>>* params,
                            std::string* err) {
  ParsedOptions parsed;
  if (!Parse(conninfo, &parsed, err)) return false;
  params->clear();
  bool have_app = false;
  bool have_keepalives_idle = false;
  for (PQconninfoOption* o = parsed.opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::strcmp(o->keyword, "replication") == 0) continue;
    if (std::strcmp(o->keyword, "application_name") == 0) have_app = true;
    if (std::strcmp(o->keyword, "keepalives_idle") == 0) have_keepalives_idle = true;
    params->emplace_back(o->keyword, o->val);
  }
  params->emplace_back("replication", "database");
  if (!have_app) params->emplace_back("application_name", "pgslotd_" + slot);
  if (!have_keepalives_idle) {
    // Notice a dead peer in about half a minute rather than two hours.
    params->emplace_back("keepalives", "1");
    params->emplace_back("keepalives_idle", "10");
    params->emplace_back("keepalives_interval", "5");
    params->emplace_back("keepalives_count", "3");
  }
  return true;
}

bool BuildMonitorParams(const std::string& conninfo,
                        std::vector<std::pair<std::string, std::string>>* params,
                        std::string* err) {
  ParsedOptions parsed;
  if (!Parse(conninfo, &parsed, err)) return false;
  params->clear();
  bool have_app = false, have_timeout = false;
  for (PQconninfoOption* o = parsed.opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::strcmp(o->keyword, "replication") == 0) continue;
    if (std::strcmp(o->keyword, "application_name") == 0) have_app = true;
    if (std::strcmp(o->keyword, "connect_timeout") == 0) have_timeout = true;
    params->emplace_back(o->keyword, o->val);
  }
  if (!have_app) params->emplace_back("application_name", "pgslotd_monitor");
  if (!have_timeout) params->emplace_back("connect_timeout", "10");
  return true;
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
