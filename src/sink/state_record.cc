#include "sink/state_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>

#include "util/crc32c.h"
#include "util/fd.h"
#include "util/path.h"

namespace pgslotd {

namespace {

// A snapshot's keys to read again can make a record long; no more than this.
constexpr size_t kMaxRecord = 64 << 20;

constexpr char kHeader[] = "# pgslotd file sink state: written by pgslotd, do not edit";

// Paths may hold any byte but NUL; newlines and backslashes are escaped so
// that the record stays one key per line.
std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool Unescape(const std::string& s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      *out += s[i];
      continue;
    }
    if (++i == s.size()) return false;
    if (s[i] == '\\') {
      *out += '\\';
    } else if (s[i] == 'n') {
      *out += '\n';
    } else {
      return false;
    }
  }
  return true;
}

bool ParseUnsigned(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t next = v * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != v) return false;
    v = next;
  }
  *out = v;
  return true;
}

std::string Hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// The "key value" lines of `text` (blank lines and comments skipped).
bool SplitLines(const std::string& text, std::map<std::string, std::string>* values,
                std::string* err) {
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      *err = "the last line is not complete";
      return false;
    }
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.find(' ');
    if (space == std::string::npos) {
      *err = "line " + std::to_string(line_no) + " has no value";
      return false;
    }
    std::string key = line.substr(0, space);
    if (!values->emplace(key, line.substr(space + 1)).second) {
      *err = "key " + key + " appears twice";
      return false;
    }
  }
  return true;
}

// Version 2 ends with "checksum <CRC-32C of every byte before that line>".
bool ChecksumMatches(const std::string& text, const std::map<std::string, std::string>& values,
                     std::string* err) {
  auto it = values.find("checksum");
  if (it == values.end()) {
    *err = "key checksum is missing";
    return false;
  }
  const std::string line = "checksum " + it->second + "\n";
  size_t body = text.size() - line.size();  // text ends with '\n', holds this line
  if (text.compare(body, line.size(), line) != 0 || (body > 0 && text[body - 1] != '\n')) {
    *err = "the checksum is not its last line";
    return false;
  }
  if (it->second != Hex32(Crc32c(std::string_view(text).substr(0, body)))) {
    *err = "its checksum does not match its contents: it was edited or damaged";
    return false;
  }
  return true;
}

// Every field of a record, from `values` (no other keys allowed).
bool ParseFields(std::map<std::string, std::string> values, SinkStateRecord* record,
                 std::string* err) {
  SinkStateRecord r;
  if (values["version"] == "3") {
    auto it = values.find("snapshot");
    if (it == values.end() || it->second.empty()) {
      *err = "key snapshot is missing";
      return false;
    }
    r.snapshot = it->second;
    values.erase(it);
  }
  static const char* const kKeys[] = {"version", "system_id", "slot", "path",   "device",
                                      "inode",   "size",      "lsn",  "created"};
  for (const char* k : kKeys) {
    if (values.count(k) == 0) {
      *err = std::string("key ") + k + " is missing";
      return false;
    }
  }
  if (values.size() != sizeof(kKeys) / sizeof(kKeys[0])) {
    *err = "it has keys this version does not know";
    return false;
  }
  r.system_id = values.at("system_id");
  r.slot = values.at("slot");
  uint64_t created = 0;
  std::optional<Lsn> lsn = ParseLsn(values.at("lsn"));
  if (r.system_id.empty() || r.slot.empty() || !Unescape(values.at("path"), &r.path) ||
      !ParseUnsigned(values.at("device"), &r.device) ||
      !ParseUnsigned(values.at("inode"), &r.inode) || !ParseUnsigned(values.at("size"), &r.size) ||
      !ParseUnsigned(values.at("created"), &created) || !lsn) {
    *err = "a value is malformed";
    return false;
  }
  r.lsn = *lsn;
  r.created = static_cast<int64_t>(created);
  *record = std::move(r);
  return true;
}

// A record that cannot be opened as a regular file of pgslotd's own.
Status RefusedRecord(const std::string& file, int err) {
  if (err == ELOOP || err == EINVAL) {
    return Status::SlotFatal("the state record " + file + " is " +
                             (err == ELOOP ? "a symbolic link" : "not a regular file") +
                             "; pgslotd reads only a record it wrote itself there, and "
                             "acknowledges nothing: see \"A refused state record\" in "
                             "operations.md");
  }
  return Status::SlotFatal(ErrnoMessage("cannot read the state record " + file, err));
}

}  // namespace

bool SinkStateRecord::operator==(const SinkStateRecord& o) const {
  return system_id == o.system_id && slot == o.slot && path == o.path && device == o.device &&
         inode == o.inode && size == o.size && lsn == o.lsn && created == o.created &&
         snapshot == o.snapshot;
}

std::string SerializeStateRecord(const SinkStateRecord& r) {
  std::string out = kHeader;
  out += std::string("\nversion ") + (r.snapshot.empty() ? "2" : "3") + "\nsystem_id " +
         r.system_id + "\nslot " + r.slot + "\npath " + Escape(r.path) + "\ndevice " +
         std::to_string(r.device) + "\ninode " + std::to_string(r.inode) + "\nsize " +
         std::to_string(r.size) + "\nlsn " + FormatLsn(r.lsn) + "\ncreated " +
         std::to_string(r.created) + "\n";
  // The progress is one line of escaped tokens (no newline in it).
  if (!r.snapshot.empty()) out += "snapshot " + r.snapshot + "\n";
  return out + "checksum " + Hex32(Crc32c(out)) + "\n";
}

bool ParseStateRecord(const std::string& text, SinkStateRecord* record, std::string* err,
                      bool* legacy) {
  std::map<std::string, std::string> values;
  if (!SplitLines(text, &values, err)) return false;
  if (values.count("version") == 0) {
    *err = "key version is missing";
    return false;
  }
  const std::string version = values["version"];
  if (version != "1" && version != "2" && version != "3") {
    *err = "version " + version + " is not one this pgslotd reads";
    return false;
  }
  // Version 1, written before records had a checksum, is read as it is.
  if (version != "1") {
    if (!ChecksumMatches(text, values, err)) return false;
    values.erase("checksum");
  }
  if (!ParseFields(values, record, err)) return false;
  if (legacy != nullptr) *legacy = version == "1";
  return true;
}

Status ReadStateRecord(const std::string& file, SinkStateRecord* record, bool* found,
                       bool* legacy) {
  *found = false;
  // Only a regular file pgslotd wrote (rename never leaves a link there),
  // and nothing that could block (a FIFO).
  int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return Status::Ok();
  struct stat st;
  if (fd >= 0 && ::fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
    ::close(fd);
    fd = -1;
    errno = EINVAL;
  }
  if (fd < 0) return RefusedRecord(file, errno);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::SlotFatal(ErrnoMessage("cannot read the state record " + file, err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxRecord) break;
  }
  ::close(fd);
  std::string err;
  if (!ParseStateRecord(text, record, &err, legacy)) {
    return Status::SlotFatal("the state record " + file + " is unreadable (" + err +
                             "); pgslotd will not guess what its file holds and acknowledges "
                             "nothing: move the file and the record aside to start a new file at "
                             "the slot's position (see \"A refused state record\" in "
                             "operations.md)");
  }
  *found = true;
  return Status::Ok();
}

Status WriteStateRecord(const std::string& file, const SinkStateRecord& record) {
  const std::string dir = DirName(file);
  const std::string tmp = file + ".tmp";
  const std::string text = SerializeStateRecord(record);
  if (text.size() > kMaxRecord) {
    // Never one that could not be read back: the slot stops instead.
    return Status::SlotFatal("the state record " + file + " would be " +
                             std::to_string(text.size() >> 20) +
                             " MiB, more than pgslotd reads back (a snapshot's keys to read "
                             "again keep growing: a long transaction holds back the server's "
                             "xmin); end that transaction and move the file and its record aside "
                             "for a new snapshot");
  }
  int fd = CreateFresh(tmp, 0600);
  if (fd < 0 && errno == ENOENT && ::mkdir(dir.c_str(), 0700) == 0) fd = CreateFresh(tmp, 0600);
  if (fd < 0) return Status::Retryable(ErrnoMessage("cannot write the state record " + tmp, errno));
  size_t done = 0;
  int err = WriteFully(fd, text.data(), text.size(), &done);
  if (err != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::Retryable(ErrnoMessage("cannot write the state record " + tmp, err));
  }
  if (::fsync(fd) != 0) {
    err = errno;
    ::close(fd);
    return Status::ProcessFatal(ErrnoMessage("fsync of the state record " + tmp + " failed", err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return Status::Retryable(ErrnoMessage("cannot rename " + tmp + " to " + file, err));
  }
  // From here on the new record may be the one on disk: a failure leaves
  // the worker unsure which one a restart finds, so it is fatal.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return Status::ProcessFatal(
        ErrnoMessage("cannot open directory " + dir + " to make the state record durable", errno));
  }
  int rc = ::fsync(dfd);
  err = errno;
  ::close(dfd);
  if (rc != 0) {
    return Status::ProcessFatal(ErrnoMessage("fsync of directory " + dir + " failed", err));
  }
  return Status::Ok();
}

}  // namespace pgslotd
