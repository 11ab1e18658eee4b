#include "pg/catalog_keys.h"

#include "pg/conninfo.h"

namespace pgslotd {

namespace {

// A lookup is one short catalog query; past this the server is in trouble
// and the session is better retried.
constexpr std::chrono::seconds kLookupTimeout{30};

}  // namespace

CatalogPrimaryKeys::CatalogPrimaryKeys(const SlotConfig& config, int wakeup_fd,
                                       const std::atomic<bool>* stop,
                                       std::atomic<int64_t>* heartbeat)
    : config_(config), conn_(wakeup_fd, stop, heartbeat) {}

std::string CatalogPrimaryKeys::QueryFor(uint32_t relid) {
  return "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
         "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
         "WHERE i.indrelid = " +
         std::to_string(relid) + " AND i.indisprimary ORDER BY a.attnum";
}

Status CatalogPrimaryKeys::Connect(ReplicationConn::Clock::time_point deadline) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildMonitorParams(config_.connection, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  Status s = conn_.Connect(params, deadline);
  if (!s.ok()) return s.Prefixed("cannot connect (" + RedactConninfo(config_.connection) + ")");
  return Status::Ok();
}

Status CatalogPrimaryKeys::Lookup(uint32_t relid, std::vector<std::string>* columns) {
  columns->clear();
  auto deadline = ReplicationConn::Clock::now() + kLookupTimeout;
  if (!conn_.connected()) {
    if (Status s = Connect(deadline); !s.ok()) return s;
  }
  Result<Rows> rows = conn_.Query(QueryFor(relid), deadline);
  if (!rows.ok()) {
    conn_.Close();
    return rows.status();
  }
  for (const auto& row : rows.value()) {
    if (!row.empty()) columns->push_back(row[0]);
  }
  return Status::Ok();
}

}  // namespace pgslotd
