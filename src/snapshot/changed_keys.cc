#include "snapshot/changed_keys.h"

#include <algorithm>

namespace pgslotd {

void ChangedKeys::Note(std::string_view key, uint32_t xid, bool lacks_toast) {
  // The stream gives commits in order: this change is the key's newest.
  keys_[std::string(key)] = Entry{xid, lacks_toast};
}

void ChangedKeys::NoteTruncate(uint32_t xid) {
  keys_.clear();
  truncated_ = true;
  truncate_xid_ = xid;
}

bool ChangedKeys::Changed(std::string_view key, const PgSnapshot& snapshot) const {
  if (TruncatedSince(snapshot)) return true;
  auto it = keys_.find(std::string(key));
  return it != keys_.end() && !snapshot.Sees(it->second.xid);
}

bool ChangedKeys::TruncatedSince(const PgSnapshot& snapshot) const {
  return truncated_ && !snapshot.Sees(truncate_xid_);
}

void ChangedKeys::NoteUnknown(uint32_t xid) { unknown_.push_back(xid); }

bool ChangedKeys::MustReadAgain(const PgSnapshot& snapshot) const {
  if (TruncatedSince(snapshot)) return true;
  for (uint32_t xid : unknown_) {
    if (!snapshot.Sees(xid)) return true;
  }
  return false;
}

std::vector<std::string> ChangedKeys::LackingToastUnseenBy(const PgSnapshot& snapshot) const {
  std::vector<std::string> keys;
  for (const auto& [key, entry] : keys_) {
    if (entry.lacks_toast && !snapshot.Sees(entry.xid)) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

void ChangedKeys::RaiseFloor(const PgSnapshot& snapshot) {
  auto below = [&](uint32_t xid) { return snapshot.Widen(xid) < snapshot.xmin(); };
  for (auto it = keys_.begin(); it != keys_.end();) {
    it = below(it->second.xid) ? keys_.erase(it) : std::next(it);
  }
  unknown_.erase(std::remove_if(unknown_.begin(), unknown_.end(), below), unknown_.end());
  if (truncated_ && below(truncate_xid_)) {
    truncated_ = false;
    truncate_xid_ = 0;
  }
}

void ChangedKeys::Clear() {
  keys_.clear();
  unknown_.clear();
  truncated_ = false;
  truncate_xid_ = 0;
}

}  // namespace pgslotd
