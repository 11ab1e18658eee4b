// What a consumer of a snapshot's output does: applies every line in order,
// per table by key (docs/output-formats.md, "Applying the lines").
#pragma once

#include <map>
#include <string>
#include <utility>

#include "json_parse.h"
#include "test_util.h"

namespace pgslotd::test {

// table -> key text -> the text of one column.
using AppliedTables = std::map<std::string, std::map<std::string, std::string>>;

// Applies the insert, update, delete, read and truncate lines of `out` in
// order; `columns` gives each table's key column and the column kept. A
// truncate empties each table it names ("schema.table") that holds rows.
inline AppliedTables ApplyLines(
    const std::string& out,
    const std::map<std::string, std::pair<std::string, std::string>>& columns) {
  AppliedTables tables;
  for (const std::string& text : SplitLines(out)) {
    Json line = JsonParser::Parse(text);
    const std::string& op = line["op"].text;
    if (op == "truncate") {
      for (const Json& name : line["tables"].items) {
        auto it = tables.find(name.text.substr(name.text.find('.') + 1));
        if (it != tables.end()) it->second.clear();
      }
      continue;
    }
    if (op != "insert" && op != "update" && op != "delete" && op != "read") continue;
    const std::string& table = line["table"].text;
    const auto& [key, column] = columns.at(table);
    auto& rows = tables[table];
    if (line.Has("old")) rows.erase(line["old"][key].text);
    if (op == "delete") continue;
    rows[line["new"][key].text] = line["new"][column].text;
  }
  return tables;
}

}  // namespace pgslotd::test
