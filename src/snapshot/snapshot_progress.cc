#include "snapshot/snapshot_progress.h"

#include <algorithm>
#include <cstddef>

namespace pgslotd {

namespace {

void PutToken(const std::string& s, std::string* out) {
  if (!out->empty()) out->push_back(' ');
  if (s.empty()) {
    *out += "\\e";
    return;
  }
  for (char c : s) {
    switch (c) {
      case '\\':
        *out += "\\\\";
        break;
      case ' ':
        *out += "\\s";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        out->push_back(c);
    }
  }
}

// Reads the tokens of a line back, in order.
class Tokens {
 public:
  explicit Tokens(const std::string& text) : text_(text) {}

  bool Next(std::string* out) {
    if (pos_ > text_.size()) return false;
    size_t end = text_.find(' ', pos_);
    if (end == std::string::npos) end = text_.size();
    std::string raw = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return Unescape(raw, out);
  }
  bool Expect(const char* word) {
    std::string t;
    return Next(&t) && t == word;
  }
  bool Count(uint64_t* n) {
    std::string t;
    if (!Next(&t) || t.empty() || t.size() > 19) return false;
    uint64_t v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    *n = v;
    return true;
  }
  bool Strings(std::vector<std::string>* out) {
    uint64_t n = 0;
    if (!Count(&n) || n > text_.size() - std::min(pos_, text_.size())) return false;
    out->resize(n);
    for (std::string& s : *out) {
      if (!Next(&s)) return false;
    }
    return true;
  }
  bool AtEnd() const { return pos_ > text_.size(); }

 private:
  static bool Unescape(const std::string& raw, std::string* out) {
    out->clear();
    if (raw == "\\e") return true;
    if (raw.empty()) return false;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '\\') {
        out->push_back(raw[i]);
        continue;
      }
      if (++i == raw.size()) return false;
      switch (raw[i]) {
        case '\\':
          out->push_back('\\');
          break;
        case 's':
          out->push_back(' ');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 't':
          out->push_back('\t');
          break;
        default:
          return false;
      }
    }
    return true;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

void PutStrings(const std::vector<std::string>& list, std::string* out) {
  PutToken(std::to_string(list.size()), out);
  for (const std::string& s : list) PutToken(s, out);
}

bool ParseQueue(Tokens* in, std::vector<SnapshotProgress::Item>* queue) {
  uint64_t n = 0;
  if (!in->Expect("queue") || !in->Count(&n)) return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::string kind;
    if (!in->Next(&kind)) return false;
    if (kind == "all") {
      queue->emplace_back();
    } else if (kind == "t") {
      SnapshotProgress::Item t;
      if (!in->Next(&t.first) || !in->Next(&t.second) || t.first.empty() || t.second.empty()) {
        return false;
      }
      queue->push_back(std::move(t));
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

bool SnapshotProgress::operator==(const SnapshotProgress& o) const {
  return queue == o.queue && started == o.started && rows == o.rows && after_key == o.after_key &&
         ranges_done == o.ranges_done && read_again == o.read_again &&
         tables_done == o.tables_done && rows_total == o.rows_total && requests == o.requests;
}

std::string SerializeSnapshotProgress(const SnapshotProgress& p) {
  std::string out;
  PutToken("queue", &out);
  PutToken(std::to_string(p.queue.size()), &out);
  for (const SnapshotProgress::Item& t : p.queue) {
    if (t.first.empty()) {
      PutToken("all", &out);
      continue;
    }
    PutToken("t", &out);
    PutToken(t.first, &out);
    PutToken(t.second, &out);
  }
  PutToken("started", &out);
  PutToken(p.started ? "1" : "0", &out);
  PutToken("rows", &out);
  PutToken(std::to_string(p.rows), &out);
  PutToken("after", &out);
  PutStrings(p.after_key, &out);
  PutToken("ranges", &out);
  PutToken(p.ranges_done ? "1" : "0", &out);
  PutToken("again", &out);
  PutToken(std::to_string(p.read_again.size()), &out);
  for (const std::vector<std::string>& key : p.read_again) PutStrings(key, &out);
  PutToken("done", &out);
  PutToken(std::to_string(p.tables_done), &out);
  PutToken("total", &out);
  PutToken(std::to_string(p.rows_total), &out);
  if (!p.requests.empty()) {
    PutToken("requests", &out);
    PutStrings(p.requests, &out);
  }
  return out;
}

bool ParseSnapshotProgress(const std::string& text, SnapshotProgress* progress, std::string* err) {
  Tokens in(text);
  SnapshotProgress p;
  uint64_t started = 0;
  uint64_t ranges = 0;
  uint64_t again = 0;
  bool ok = ParseQueue(&in, &p.queue) && in.Expect("started") && in.Count(&started) &&
            started <= 1 && in.Expect("rows") && in.Count(&p.rows) && in.Expect("after") &&
            in.Strings(&p.after_key) && in.Expect("ranges") && in.Count(&ranges) && ranges <= 1 &&
            in.Expect("again") && in.Count(&again) && again <= text.size();
  for (uint64_t i = 0; ok && i < again; ++i) {
    p.read_again.emplace_back();
    ok = in.Strings(&p.read_again.back());
  }
  ok = ok && in.Expect("done") && in.Count(&p.tables_done) && in.Expect("total") &&
       in.Count(&p.rows_total);
  // The request files the queue holds, when there are any (a record of an
  // earlier version has none).
  if (ok && !in.AtEnd()) ok = in.Expect("requests") && in.Strings(&p.requests);
  ok = ok && in.AtEnd();
  if (!ok || (started == 1 && (p.queue.empty() || p.queue.front().first.empty()))) {
    *err = "the snapshot's progress is malformed";
    return false;
  }
  p.started = started == 1;
  p.ranges_done = ranges == 1;
  *progress = std::move(p);
  return true;
}

void AppendToken(const std::string& s, std::string* out) { PutToken(s, out); }

bool SplitTokens(const std::string& line, std::vector<std::string>* tokens) {
  tokens->clear();
  Tokens in(line);
  std::string t;
  while (!in.AtEnd()) {
    if (!in.Next(&t)) return false;
    tokens->push_back(t);
  }
  return true;
}

}  // namespace pgslotd
