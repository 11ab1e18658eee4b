// The SQL a snapshot pass runs: how a table's key is found, and the query
// that reads its next chunk in key order.
//
// The key is the replica identity index when the table's replica identity
// is an index (so that deletes carry the key), else the primary key, else
// the unique index over NOT NULL columns with the fewest key columns (then
// the lowest OID), skipping partial and expression indexes, those not valid
// and the columns an index only INCLUDEs. A table with none has no key: it
// can only be read whole (docs/design-snapshots.md).
//
// A chunk continues after the last key of the one before with a row
// comparison, `WHERE (k1, k2) > ($1, $2) ORDER BY k1, k2 LIMIT n`, which
// the key's btree index answers without sorting. Values travel as text
// parameters cast to each column's type, so any key type that has a btree
// order works, and nothing from the server is ever pasted into SQL but
// quoted identifiers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgslotd {

// A query over a table's OID ($1) that returns the key columns' names and
// type names (format_type), one row each, in the index's column order; no
// rows when the table has no usable key.
std::string KeyColumnsQuery();

struct ChunkQuery {
  std::string schema;
  std::string table;
  // The columns to read, in the order the rows are written.
  std::vector<std::string> columns;
  // The key's columns and their types (format_type), in the key's order.
  std::vector<std::string> key_columns;
  std::vector<std::string> key_types;
  // Row filters of the publications (pg_publication_tables.rowfilter), each
  // an SQL expression the server printed; empty: every row. More than one
  // are OR-ed, as pgoutput does. Pasted into the query as they are: they
  // come from the catalog, not from the stream.
  std::vector<std::string> row_filters;
  uint32_t limit = 10000;

  // SELECT <columns>, <key columns> FROM <table>
  //   [WHERE (<key>) > ($1::type, ...)] [AND (<filters>)]
  //   ORDER BY <key> LIMIT <limit>.
  // `after_key`: whether the query continues after a key ($1... its values
  // as text, in the key's order). The columns are selected as they are,
  // never cast: read in libpq's text format, each value is its type's
  // output function's text, as pgoutput sends it (a cast to text is not:
  // true::text is "true", pgoutput's is "t"). Without key columns: the
  // whole table, no ORDER BY, no LIMIT.
  std::string Sql(bool after_key) const;
  // The same, for the rows whose key is one of `count` keys ($1..$n per
  // key, in the key's order): the keys read again (ChangedKeys). In key
  // order, no LIMIT. `count` 0: no rows (WHERE false). Without key columns:
  // as Sql.
  std::string SqlForKeys(size_t count) const;
};

}  // namespace pgslotd
