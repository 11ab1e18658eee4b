#include "snapshot/pg_snapshot.h"

#include <algorithm>
#include <string>

namespace pgslotd {

namespace {

// 32-bit ids below this are special (invalid, bootstrap, frozen): every
// snapshot sees them.
constexpr uint32_t kFirstNormalXid = 3;

// A decimal without sign, within 64 bits.
bool ParseId(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *out = value;
  return true;
}

// The ids of "a,b,c" ("" is none).
bool ParseList(std::string_view text, std::vector<uint64_t>* out) {
  while (!text.empty()) {
    size_t comma = text.find(',');
    uint64_t id = 0;
    if (!ParseId(text.substr(0, comma), &id)) return false;
    out->push_back(id);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return false;  // a trailing comma
  }
  return true;
}

Status Bad(std::string_view text, const std::string& why) {
  return Status::Retryable("invalid snapshot \"" + std::string(text) + "\": " + why);
}

}  // namespace

Result<PgSnapshot> PgSnapshot::Parse(std::string_view text) {
  size_t first = text.find(':');
  size_t second = first == std::string_view::npos ? first : text.find(':', first + 1);
  if (second == std::string_view::npos) return Bad(text, "not xmin:xmax:xip,...");
  PgSnapshot s;
  if (!ParseId(text.substr(0, first), &s.xmin_) ||
      !ParseId(text.substr(first + 1, second - first - 1), &s.xmax_) ||
      !ParseList(text.substr(second + 1), &s.xip_)) {
    return Bad(text, "not xmin:xmax:xip,... of decimal ids");
  }
  if (s.xmin_ > s.xmax_) return Bad(text, "xmin is above xmax");
  std::sort(s.xip_.begin(), s.xip_.end());
  s.xip_.erase(std::unique(s.xip_.begin(), s.xip_.end()), s.xip_.end());
  if (!s.xip_.empty() && (s.xip_.front() < s.xmin_ || s.xip_.back() >= s.xmax_)) {
    return Bad(text, "an in-progress id outside [xmin, xmax)");
  }
  return s;
}

bool PgSnapshot::Sees(uint32_t xid) const {
  if (xid < kFirstNormalXid) return true;
  return SeesFull(Widen(xid));
}

bool PgSnapshot::SeesFull(uint64_t full_xid) const {
  if (full_xid < xmin_) return true;
  if (full_xid >= xmax_) return false;
  return !std::binary_search(xip_.begin(), xip_.end(), full_xid);
}

uint64_t PgSnapshot::Widen(uint32_t xid) const {
  if (xid < kFirstNormalXid) return xid;
  // The full id nearest xmax: its 32-bit distance from xmax's low half, as
  // a signed number, as PostgreSQL compares xids (TransactionIdPrecedes).
  int32_t distance = static_cast<int32_t>(xid - static_cast<uint32_t>(xmax_));
  if (distance < 0 && static_cast<uint64_t>(-static_cast<int64_t>(distance)) > xmax_) {
    return xid;  // before epoch 0: only the first epoch has it
  }
  return xmax_ + static_cast<uint64_t>(static_cast<int64_t>(distance));
}

}  // namespace pgslotd
