// Factories for the formatters of src/decode.
#include "decode/formatter.h"

#include "decode/pgoutput_formatter.h"

namespace pgslotd {

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "BEGIN" or "BEGIN <xid>..." (not "BEGINNING"): the word, then the end or a space.
bool IsWord(std::string_view s, std::string_view word) {
  return StartsWith(s, word) && (s.size() == word.size() || s[word.size()] == ' ');
}

bool IsTrue(const std::string& v) { return v == "1" || v == "true" || v == "on" || v == "yes"; }

}  // namespace

void RawFormatter::Frame(std::string_view payload) {
  ended_ = false;
  switch (framing_) {
    case RawFraming::kNone:
      break;
    case RawFraming::kTestDecoding:
      // Streamed blocks (stream-changes) are framed like transactions so
      // that a block is never cut in half; the server re-sends an
      // uncommitted streamed transaction whole, so its blocks are
      // at-least-once. Most messages are row changes ("table ..."): the
      // first byte rules them out without a comparison.
      switch (payload.empty() ? '\0' : payload[0]) {
        case 'B':
          if (IsWord(payload, "BEGIN")) in_txn_ = true;
          break;
        case 'o':
          if (StartsWith(payload, "opening a streamed block")) in_txn_ = true;
          break;
        case 'C':
        case 'P':
          // COMMIT also matches COMMIT PREPARED, a unit by itself.
          if (IsWord(payload, "COMMIT") || StartsWith(payload, "PREPARE TRANSACTION")) {
            in_txn_ = false;
            ended_ = true;
          }
          break;
        case 'c':
          if (StartsWith(payload, "closing a streamed block")) {
            in_txn_ = false;
          } else if (StartsWith(payload, "committing streamed transaction")) {
            ended_ = true;
          }
          break;
        case 'R':
          if (StartsWith(payload, "ROLLBACK PREPARED")) ended_ = true;
          break;
        default:
          break;
      }
      break;
    case RawFraming::kWal2jsonV1:
      // One message is one whole transaction, except a non-transactional
      // logical message (known by its first bytes).
      ended_ = payload.substr(0, 256).find("\"transactional\":false") == std::string_view::npos;
      break;
    case RawFraming::kWal2jsonV2:
      // {"action":"X" with X at index 11; only B and C need a comparison.
      if (payload.size() < 12 || (payload[11] != 'B' && payload[11] != 'C')) break;
      if (StartsWith(payload, "{\"action\":\"B\"")) {
        in_txn_ = true;
      } else if (StartsWith(payload, "{\"action\":\"C\"")) {
        in_txn_ = false;
        ended_ = true;
      }
      break;
    case RawFraming::kPgoutput:
      if (payload.empty()) break;
      // Two-phase: 'b' begins a prepared transaction and 'P' ends it; 'K'
      // (commit prepared) and 'r' (rollback prepared) are units by themselves.
      if (payload[0] == 'B' || payload[0] == 'S' || payload[0] == 'b') {
        in_txn_ = true;
      } else if (payload[0] == 'C' || payload[0] == 'P') {
        in_txn_ = false;
        ended_ = true;
      } else if (payload[0] == 'E') {
        in_txn_ = false;
      } else if (payload[0] == 'c' || payload[0] == 'K' || payload[0] == 'r') {
        ended_ = true;
      }
      break;
  }
}

RawFraming RawFramingFor(const std::string& plugin,
                         const std::vector<std::pair<std::string, std::string>>& options) {
  if (plugin == "test_decoding") return RawFraming::kTestDecoding;
  if (plugin == "pgoutput") return RawFraming::kPgoutput;
  if (plugin == "wal2json") {
    std::string version = "1";
    bool chunks = false;
    for (const auto& [name, value] : options) {
      if (name == "format-version") version = value;
      if (name == "write-in-chunks") chunks = IsTrue(value);
    }
    if (version == "2") return RawFraming::kWal2jsonV2;
    // In chunks, one transaction spans messages with no marker between.
    if (version == "1" && !chunks) return RawFraming::kWal2jsonV1;
  }
  return RawFraming::kNone;
}

std::unique_ptr<Formatter> MakePgoutputFormatter(const JsonOptions& options) {
  return std::make_unique<PgoutputFormatter>(options);
}

}  // namespace pgslotd
