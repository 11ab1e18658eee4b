// Primary keys read from the server's catalog (pg_index) on a plain
// connection of the slot's database: decode/primary_keys.h for slots whose
// sink routes records by key.
//
// The connection is made at the first lookup (slots whose tables all have
// the default replica identity never make it) and kept for the next ones;
// a failed lookup closes it, and the next one connects again. A stop
// interrupts a lookup. Owned by one slot worker; one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

#include "config/config.h"
#include "decode/primary_keys.h"
#include "pg/replication_conn.h"

namespace pgslotd {

class CatalogPrimaryKeys : public PrimaryKeys {
 public:
  // `config` must outlive this; the rest as for ReplicationConn.
  CatalogPrimaryKeys(const SlotConfig& config, int wakeup_fd, const std::atomic<bool>* stop,
                     std::atomic<int64_t>* heartbeat);

  Status Lookup(uint32_t relid, std::vector<std::string>* columns) override;

  // The text of the query for `relid` (for tests).
  static std::string QueryFor(uint32_t relid);

 private:
  Status Connect(ReplicationConn::Clock::time_point deadline);

  const SlotConfig& config_;
  ReplicationConn conn_;
};

}  // namespace pgslotd
