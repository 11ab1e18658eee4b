// Where a json slot learns the primary key of a table, for sinks that route
// records by key (decode/record_buffer.h: wants_keys()).
//
// The pgoutput formatter needs it only for tables whose replica identity is
// not the default: under REPLICA IDENTITY DEFAULT the columns a Relation
// message flags are the primary key, as the catalog had it at the time of
// the change. Under FULL every column is flagged, under USING INDEX another
// index's, under NOTHING none; then the formatter asks here, once per
// Relation message, on the worker's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/status.h"

namespace pgslotd {

class PrimaryKeys {
 public:
  virtual ~PrimaryKeys() = default;
  // Sets *columns to the names of the primary key columns of the table with
  // OID `relid`, in the key's order, as the server's catalog (pg_index) has
  // them now; empty when the table has no primary key or no longer exists.
  // An error is the lookup's (retryable unless the server says otherwise):
  // the session ends without acknowledging, and the server sends the
  // Relation message again in the next one.
  virtual Status Lookup(uint32_t relid, std::vector<std::string>* columns) = 0;
};

}  // namespace pgslotd
