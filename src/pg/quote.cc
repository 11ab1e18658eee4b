#include "pg/quote.h"

namespace pgslotd {

namespace {

std::string QuoteWith(std::string_view text, char q) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back(q);
  for (char c : text) {
    if (c == q) out.push_back(q);
    out.push_back(c);
  }
  out.push_back(q);
  return out;
}

}  // namespace

std::string QuoteIdent(std::string_view name) { return QuoteWith(name, '"'); }

std::string QuoteLiteral(std::string_view value) { return QuoteWith(value, '\''); }

std::string BuildStartReplication(std::string_view slot, Lsn start,
                                  const std::vector<std::pair<std::string, std::string>>& options) {
  std::string cmd = "START_REPLICATION SLOT " + QuoteIdent(slot) + " LOGICAL " + FormatLsn(start);
  if (!options.empty()) {
    cmd += " (";
    for (size_t i = 0; i < options.size(); ++i) {
      if (i > 0) cmd += ", ";
      cmd += QuoteIdent(options[i].first);
      cmd += ' ';
      cmd += QuoteLiteral(options[i].second);
    }
    cmd += ')';
  }
  return cmd;
}

std::string BuildCreateSlot(std::string_view slot, std::string_view plugin) {
  return "CREATE_REPLICATION_SLOT " + QuoteIdent(slot) + " LOGICAL " + QuoteIdent(plugin);
}

}  // namespace pgslotd
