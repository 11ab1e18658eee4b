// Connection strings: building the replication conninfo, and showing one in
// logs without ever revealing a password.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace pgslotd {

// Keyword/value pairs ready for PQconnectStartParams: the parsed `conninfo`
// plus replication=database, and defaults the user did not set
// (application_name=pgslotd_<slot>, client_encoding=UTF8, TCP keepalives,
// tcp_user_timeout=60000). Returns false and sets
// *err (never containing a password) if the conninfo cannot be parsed.
bool BuildReplicationParams(const std::string& conninfo, const std::string& slot,
                            std::vector<std::pair<std::string, std::string>>* params,
                            std::string* err);

// Keyword/value pairs for the monitor's plain (non-replication) side
// connection: the parsed `conninfo` with application_name=pgslotd_monitor
// unless set, and a connect_timeout of 10 s unless set.
bool BuildMonitorParams(const std::string& conninfo,
                        std::vector<std::pair<std::string, std::string>>* params, std::string* err);

// Keyword/value pairs for a slot's snapshot reads, a plain connection with
// the slot's own conninfo (so its session settings, and thus how values are
// written, match the walsender's): application_name=pgslotd_<slot>_snapshot,
// client_encoding=UTF8 and a connect_timeout of 10 s unless set.
bool BuildSnapshotParams(const std::string& conninfo, const std::string& slot,
                         std::vector<std::pair<std::string, std::string>>* params,
                         std::string* err);

// The conninfo as "key=value ..." with any password replaced by "********".
// Unparseable input is shown as "(unparseable connection string)".
std::string RedactConninfo(const std::string& conninfo);

}  // namespace pgslotd
