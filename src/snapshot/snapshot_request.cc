#include "snapshot/snapshot_request.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "snapshot/snapshot_progress.h"
#include "util/fd.h"
#include "util/log.h"
#include "util/path.h"

namespace pgslotd {

namespace {

constexpr char kHeader[] = "pgslotd-snapshot-request 1";
constexpr size_t kMaxRequestBytes = 1 << 20;

// One part of a qualified name from `pos`: quoted or not. Leaves `pos`
// after it.
bool ParsePart(const std::string& text, size_t* pos, std::string* part, std::string* err) {
  part->clear();
  size_t i = *pos;
  if (i < text.size() && text[i] == '"') {
    for (++i; i < text.size(); ++i) {
      if (text[i] != '"') {
        part->push_back(text[i]);
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        part->push_back('"');
        ++i;
      } else {
        break;
      }
    }
    if (i >= text.size()) {
      *err = "a quoted name is not closed";
      return false;
    }
    *pos = i + 1;
  } else {
    for (; i < text.size() && text[i] != '.'; ++i) {
      if (text[i] == '"') {
        *err = "a quote inside an unquoted name";
        return false;
      }
      part->push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i]))));
    }
    *pos = i;
  }
  if (part->empty()) {
    *err = "an empty name";
    return false;
  }
  return true;
}

Status SyncDirectory(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return PathError("cannot open " + dir, dir, errno);
  int rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0) return Status::Retryable(ErrnoMessage("cannot fsync " + dir, err));
  return Status::Ok();
}

// "<UTC nanoseconds, 20 digits>-<pid>": names that sort as they were made.
std::string NewRequestId() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  char id[64];
  std::snprintf(id, sizeof id, "%020" PRIu64 "-%d",
                static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec),
                static_cast<int>(::getpid()));
  return id;
}

// A regular file's text, `kMaxRequestBytes` at most (more: cut, and then
// no request); *gone when it does not exist.
Result<std::string> ReadSmallFile(const std::string& path, bool* gone) {
  *gone = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *gone = errno == ENOENT;
    return Status::Retryable(ErrnoMessage("cannot open " + path, errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return std::string();  // no request
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || text.size() > kMaxRequestBytes) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

}  // namespace

bool ParseQualifiedTable(const std::string& text, QualifiedTable* table, std::string* err) {
  size_t pos = 0;
  QualifiedTable t;
  std::string why;
  bool ok = ParsePart(text, &pos, &t.first, &why);
  if (ok && (pos >= text.size() || text[pos] != '.')) {
    why = "no schema: give the table as SCHEMA.TABLE (public.orders)";
    ok = false;
  }
  if (ok) {
    ++pos;
    ok = ParsePart(text, &pos, &t.second, &why);
  }
  if (ok && pos != text.size()) {
    why = "more than SCHEMA.TABLE (quote a name with a dot in it: \"my.table\")";
    ok = false;
  }
  if (!ok) {
    *err = "\"" + text + "\": " + why;
    return false;
  }
  *table = std::move(t);
  return true;
}

std::string SerializeSnapshotRequest(const std::vector<QualifiedTable>& tables) {
  std::string text = std::string(kHeader) + "\n";
  if (tables.empty()) text += "all\n";
  for (const QualifiedTable& t : tables) {
    std::string line;
    AppendToken("table", &line);
    AppendToken(t.first, &line);
    AppendToken(t.second, &line);
    text += line + "\n";
  }
  return text;
}

bool ParseSnapshotRequest(const std::string& text, std::vector<QualifiedTable>* tables,
                          std::string* err) {
  std::vector<QualifiedTable> out;
  bool all = false;
  size_t pos = 0;
  int number = 0;
  std::vector<std::string> tokens;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) {
      *err = "its last line is cut off";
      return false;
    }
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++number;
    bool ok;
    if (number == 1) {
      ok = line == kHeader;
    } else if (line == "all") {
      ok = number == 2;
      all = true;
    } else {
      ok = !all && SplitTokens(line, &tokens) && tokens.size() == 3 && tokens[0] == "table" &&
           !tokens[1].empty() && !tokens[2].empty();
      if (ok) out.emplace_back(tokens[1], tokens[2]);
    }
    if (!ok) {
      *err = "line " + std::to_string(number) + " is not what a request holds";
      return false;
    }
  }
  if (!all && out.empty()) {
    *err = number == 0 ? "it is empty" : "it names no table";
    return false;
  }
  *tables = std::move(out);
  return true;
}

Result<std::string> WriteSnapshotRequest(const std::string& directory, const std::string& slot,
                                         const std::vector<QualifiedTable>& tables,
                                         std::string* warning) {
  struct stat dir;
  if (::stat(directory.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode)) {
    return Status::Invalid("the state directory " + directory +
                           " does not exist (pgslotd creates it when it first starts; start it "
                           "once, or create it for the user it runs as)");
  }
  const std::string id = NewRequestId();
  const std::string name = slot + ".snapshot-request." + id;
  const std::string path = directory + "/" + name;
  const std::string temp = directory + "/." + name + ".tmp";
  int fd = CreateFresh(temp, 0644);
  if (fd < 0) return Status::Invalid(ErrnoMessage("cannot create " + temp, errno));
  const std::string text = SerializeSnapshotRequest(tables);
  size_t done = 0;
  int err = WriteFully(fd, text.data(), text.size(), &done);
  // The daemon's user must read it (whatever the umask), and deletes it
  // (its directory).
  if (err == 0 && ::fchmod(fd, 0644) != 0) err = errno;
  if (err == 0 && ::geteuid() == 0 && ::fchown(fd, dir.st_uid, dir.st_gid) != 0) err = errno;
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (err == 0 && ::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(temp.c_str());
    return Status::Retryable(ErrnoMessage("cannot write " + path, err));
  }
  if (Status s = SyncDirectory(directory); !s.ok()) {
    *warning = s.message() +
               ": the request is in place, but may not survive a crash of the "
               "machine";
  }
  return path;
}

SnapshotRequestFiles::SnapshotRequestFiles(std::string directory, std::string slot)
    : directory_(std::move(directory)), slot_(slot), prefix_(slot + ".snapshot-request.") {}

std::vector<std::string> SnapshotRequestFiles::List() const {
  std::vector<std::string> names;
  DIR* d = ::opendir(directory_.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, prefix_.size(), prefix_) != 0) continue;
    if (name.size() > 8 && name.compare(name.size() - 8, 8, ".invalid") == 0) continue;
    names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool SnapshotRequestFiles::AnyWaiting() const { return !List().empty(); }

std::vector<SnapshotRequestFiles::Request> SnapshotRequestFiles::TakeNew(
    std::vector<std::string>* errors) {
  std::vector<Request> taken;
  for (const std::string& name : List()) {
    const std::string path = directory_ + "/" + name;
    if (taken_.count(path)) continue;
    bool gone = false;
    Result<std::string> text = ReadSmallFile(path, &gone);
    if (!text.ok()) {
      if (!gone) errors->push_back(text.status().message() + " (tried again later)");
      continue;
    }
    Request r;
    r.path = path;
    r.id = name.substr(prefix_.size());
    std::string err;
    if (!ParseSnapshotRequest(text.value(), &r.tables, &err)) {
      std::string aside = path + ".invalid";
      if (::rename(path.c_str(), aside.c_str()) != 0) {
        taken_.insert(path);  // said once; it stays where it is
        errors->push_back("snapshot request " + path + " is no request (" + err + "); " +
                          ErrnoMessage("cannot move it aside", errno) + ": delete it");
        continue;
      }
      errors->push_back("snapshot request " + path + " is no request (" + err +
                        "): moved aside to " + aside + "; ask again with pgslotd --snapshot");
      continue;
    }
    taken_.insert(path);
    taken.push_back(std::move(r));
  }
  return taken;
}

void SnapshotRequestFiles::Queued(const Request& r, uint64_t records) {
  queued_.push_back(Queue{r.path, r.id, records});
}

std::vector<std::string> SnapshotRequestFiles::Missing(const std::vector<std::string>& ids) const {
  std::vector<std::string> missing;
  for (const std::string& id : ids) {
    const std::string path = directory_ + "/" + prefix_ + id;
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) missing.push_back(id);
  }
  return missing;
}

void SnapshotRequestFiles::Reset() {
  taken_.clear();
  queued_.clear();
}

bool SnapshotRequestFiles::Delete(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) {
    taken_.erase(path);
    return true;
  }
  // It stays taken: not carried out again in this run.
  Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
      ErrnoMessage("cannot delete the snapshot request " + path, errno) +
          " (it is queued; delete it by hand, or it is carried out again at the next start)");
  return false;
}

void SnapshotRequestFiles::SyncAfterDeleting() {
  if (Status s = SyncDirectory(directory_); !s.ok()) {
    Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
        "snapshot requests: " + s.message());
  }
}

bool SnapshotRequestFiles::Forget(const Request& r) {
  if (!Delete(r.path)) return false;
  SyncAfterDeleting();
  return true;
}

std::vector<std::string> SnapshotRequestFiles::Settle(bool keeps_position, uint64_t records,
                                                      bool finished) {
  std::vector<std::string> gone;
  std::vector<Queue> kept;
  for (Queue& q : queued_) {
    if (finished || (keeps_position && records > q.records)) {
      if (Delete(q.path)) gone.push_back(q.id);
    } else {
      kept.push_back(std::move(q));
    }
  }
  queued_ = std::move(kept);
  if (!gone.empty()) SyncAfterDeleting();
  return gone;
}

}  // namespace pgslotd
