#include "snapshot/chunk_query.h"

#include "pg/quote.h"

namespace pgslotd {

namespace {

// The candidate indexes of table $1, best first: the replica identity index
// when the table's replica identity is an index, then the primary key, then
// unique indexes whose key columns are all NOT NULL; never one that is
// partial, has expressions or is not (yet, or any longer) valid. Columns an
// index only INCLUDEs are not part of its key.
constexpr char kKeyColumnsQuery[] =
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
    "FROM (SELECT i.indexrelid, i.indkey, i.indnkeyatts "
    "FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
    "WHERE i.indrelid = $1::oid AND i.indisunique "
    "AND i.indisvalid AND i.indisready AND i.indislive "
    "AND i.indpred IS NULL AND i.indexprs IS NULL "
    "AND NOT EXISTS (SELECT FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_catalog.pg_attribute na ON na.attrelid = i.indrelid AND na.attnum = k.attnum "
    "WHERE k.n <= i.indnkeyatts AND NOT na.attnotnull) "
    "ORDER BY (c.relreplident = 'i' AND i.indisreplident) DESC, i.indisprimary DESC, "
    "i.indnkeyatts, i.indexrelid "
    "LIMIT 1) x "
    "CROSS JOIN LATERAL pg_catalog.unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = $1::oid AND a.attnum = k.attnum "
    "WHERE k.n <= x.indnkeyatts "
    "ORDER BY k.n";

std::string QuotedList(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += ", ";
    out += QuoteIdent(name);
  }
  return out;
}

// ($first::t1, $first+1::t2, ...): one key's values as parameters.
std::string KeyParams(const std::vector<std::string>& types, size_t first) {
  std::string out = "(";
  for (size_t i = 0; i < types.size(); ++i) {
    if (i > 0) out += ", ";
    out += "$" + std::to_string(first + i) + "::" + types[i];
  }
  return out + ")";
}

}  // namespace

std::string KeyColumnsQuery() { return kKeyColumnsQuery; }

namespace {

// SELECT <columns>, <key columns> FROM <table>
std::string SelectFrom(const ChunkQuery& q) {
  std::string list = QuotedList(q.columns);
  std::string keys = QuotedList(q.key_columns);
  if (!list.empty() && !keys.empty()) list += ", ";
  return "SELECT " + list + keys + " FROM " + QuoteIdent(q.schema) + "." + QuoteIdent(q.table);
}

// " WHERE <condition>" or " AND <condition>", and then the row filters.
std::string Where(const ChunkQuery& q, const std::string& condition) {
  std::string out;
  if (!condition.empty()) out = " WHERE " + condition;
  if (q.row_filters.empty()) return out;
  std::string filters;
  for (const auto& f : q.row_filters) {
    if (!filters.empty()) filters += " OR ";
    filters += "(" + f + ")";
  }
  return out + (out.empty() ? " WHERE (" : " AND (") + filters + ")";
}

std::string OrderBy(const ChunkQuery& q) { return " ORDER BY " + QuotedList(q.key_columns); }

}  // namespace

std::string ChunkQuery::Sql(bool after_key) const {
  if (key_columns.empty()) return SelectFrom(*this) + Where(*this, "");
  std::string condition;
  if (after_key) condition = "(" + QuotedList(key_columns) + ") > " + KeyParams(key_types, 1);
  return SelectFrom(*this) + Where(*this, condition) + OrderBy(*this) + " LIMIT " +
         std::to_string(limit);
}

std::string ChunkQuery::SqlForKeys(size_t count) const {
  if (key_columns.empty()) return Sql(false);
  std::string keys;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) keys += ", ";
    keys += KeyParams(key_types, 1 + i * key_types.size());
  }
  std::string condition =
      count == 0 ? "false" : "(" + QuotedList(key_columns) + ") IN (" + keys + ")";
  return SelectFrom(*this) + Where(*this, condition) + OrderBy(*this);
}

}  // namespace pgslotd
