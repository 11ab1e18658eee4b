#include "pg/plugin_options.h"

#include <cstdlib>

namespace pgslotd {

namespace {

constexpr int kFirstStreamingServer = 140000;  // proto_version 2, streaming
constexpr int kFirstSnapshotServer = 150000;   // pg_publication_tables' columns, filters

using Options = std::vector<std::pair<std::string, std::string>>;

const std::string* Find(const Options& options, const std::string& name) {
  for (const auto& [key, value] : options) {
    if (key == name) return &value;
  }
  return nullptr;
}

// The protocol number of a proto_version value; 0 when it is not a number
// (the server refuses it, with its own words).
long ProtocolNumber(const std::string& value) {
  char* end = nullptr;
  long n = std::strtol(value.c_str(), &end, 10);
  return end != value.c_str() && *end == '\0' ? n : 0;
}

// pgoutput's streaming option as the server reads it (a boolean, or
// "parallel" from PostgreSQL 16).
bool StreamingOn(const std::string& value) {
  return value == "on" || value == "true" || value == "1" || value == "yes" || value == "parallel";
}

}  // namespace

SessionOptions EffectiveOptions(const SlotConfig& slot, int server_version) {
  SessionOptions out{slot.options, slot.plugin};
  if (slot.plugin != "pgoutput" || slot.format != OutputFormat::kJson) return out;
  bool modern = server_version >= kFirstStreamingServer;
  const std::string* given = Find(slot.options, "proto_version");
  std::string version = given != nullptr ? *given : (modern ? "2" : "1");
  if (given == nullptr) out.options.emplace_back("proto_version", version);
  const std::string* streaming = Find(slot.options, "streaming");
  bool stream =
      streaming != nullptr ? StreamingOn(*streaming) : modern && ProtocolNumber(version) >= 2;
  if (streaming == nullptr && stream) out.options.emplace_back("streaming", "on");
  // A snapshot's watermarks travel as logical decoding messages.
  if (slot.snapshot != SnapshotMode::kNever && server_version >= kFirstSnapshotServer &&
      Find(slot.options, "messages") == nullptr) {
    out.options.emplace_back("messages", "true");
  }
  out.protocol = "pgoutput protocol " + version;
  if (stream) out.protocol += ", streaming in-progress transactions";
  return out;
}

std::vector<std::string> PublicationNames(const SlotConfig& slot) {
  std::vector<std::string> names;
  const std::string* list = Find(slot.options, "publication_names");
  if (list == nullptr) return names;
  // As the server splits it (SplitIdentifierString): commas between names,
  // blanks around them, "quoted" names kept as written ("" for a quote),
  // others folded to lower case.
  size_t i = 0;
  const std::string& s = *list;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    std::string name;
    if (i < s.size() && s[i] == '"') {
      for (++i; i < s.size(); ++i) {
        if (s[i] == '"' && i + 1 < s.size() && s[i + 1] == '"') {
          name.push_back('"');
          ++i;
        } else if (s[i] == '"') {
          ++i;
          break;
        } else {
          name.push_back(s[i]);
        }
      }
    } else {
      while (i < s.size() && s[i] != ',' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') {
        char c = s[i++];
        name.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
      }
    }
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    if (i < s.size() && s[i] == ',') ++i;
    if (!name.empty()) names.push_back(std::move(name));
  }
  return names;
}

}  // namespace pgslotd
