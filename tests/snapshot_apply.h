// What a consumer of a snapshot's output does: applies every line in order,
// per table by key (docs/output-formats.md, "Applying the lines").
#pragma once

#include <map>
#include <set>
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

// What an output's snapshot lines say, per table; `key_of` names each
// table's key column.
struct Frames {
  std::map<std::string, int> starts, ends;
  std::map<std::string, std::string> end_rows;  // the end line's count
  std::map<std::string, uint64_t> reads;
  std::map<std::string, int> keys_read_twice;
  int out_of_frame = 0;  // read lines outside their table's start..end
  int commits_back = 0;  // changes whose commit_lsn is below the one before
};

inline Frames Examine(const std::string& out, const std::map<std::string, std::string>& key_of) {
  Frames f;
  std::map<std::string, std::set<std::string>> seen;
  std::map<std::string, bool> open;
  std::string last_commit;
  auto lsn_less = [](const std::string& a, const std::string& b) {
    auto parse = [](const std::string& s) {
      size_t slash = s.find('/');
      return (std::stoull(s.substr(0, slash), nullptr, 16) << 32) |
             std::stoull(s.substr(slash + 1), nullptr, 16);
    };
    return parse(a) < parse(b);
  };
  for (const std::string& text : SplitLines(out)) {
    Json line = JsonParser::Parse(text);
    const std::string& op = line["op"].text;
    const std::string table = line.Has("table") ? line["table"].text : "";
    if (op == "snapshot") {
      const std::string& event = line["event"].text;
      if (event == "start") {
        ++f.starts[table];
        open[table] = true;
      } else {
        ++f.ends[table];
        f.end_rows[table] = line["rows"].text;
        open[table] = false;
      }
    } else if (op == "read") {
      ++f.reads[table];
      if (!open[table]) ++f.out_of_frame;
      if (!seen[table].insert(line["new"][key_of.at(table)].text).second) {
        ++f.keys_read_twice[table];
      }
    } else if (line.Has("commit_lsn")) {
      const std::string& c = line["commit_lsn"].text;
      if (!last_commit.empty() && lsn_less(c, last_commit)) ++f.commits_back;
      last_commit = c;
    }
  }
  return f;
}

}  // namespace pgslotd::test
