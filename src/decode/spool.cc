#include "decode/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

namespace pgslotd {

namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kReadChunk = 64 * 1024;
// A replay buffer grown past this for one large record is released after.
constexpr size_t kKeepReadBuffer = 1 << 20;

struct RecordHeader {
  uint32_t subxid;
  uint32_t split;
  uint32_t length;
};

RecordHeader ReadHeader(const char* p) {
  RecordHeader h;
  std::memcpy(&h.subxid, p, 4);
  std::memcpy(&h.split, p + 4, 4);
  std::memcpy(&h.length, p + 8, 4);
  return h;
}

void WriteHeader(const RecordHeader& h, char* p) {
  std::memcpy(p, &h.subxid, 4);
  std::memcpy(p + 4, &h.split, 4);
  std::memcpy(p + 8, &h.length, 4);
}

// Parses a run of decimal digits as a whole; false if empty, not all digits
// or too large.
bool ParseDecimal(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t r = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    r = r * 10 + static_cast<uint64_t>(c - '0');
  }
  *v = r;
  return true;
}

}  // namespace

Spool::Spool(std::string dir, std::string slot, uint64_t memory_limit)
    : dir_(std::move(dir)),
      prefix_(slot.empty() ? "pgslotd-" : "pgslotd-" + slot + "-"),
      memory_limit_(memory_limit),
      pid_(::getpid()) {}

Spool::~Spool() { Clear(); }

std::string Spool::PathFor(uint32_t xid) const {
  return dir_ + "/" + prefix_ + std::to_string(pid_) + "-" + std::to_string(xid) + ".spool";
}

size_t Spool::files_open() const {
  size_t n = 0;
  for (const auto& entry : txns_) n += entry.second.fd >= 0 ? 1 : 0;
  return n;
}

Status Spool::Append(uint32_t xid, uint32_t subxid, uint32_t split, std::string_view line) {
  if (line.size() > UINT32_MAX - kHeaderSize) {
    return Status::Retryable("pgoutput: a change of " + std::to_string(line.size()) +
                             " bytes is too large to spool");
  }
  Txn& txn = txns_[xid];
  RecordHeader h{subxid, split, static_cast<uint32_t>(line.size())};
  size_t record = kHeaderSize + line.size();
  if (!dir_.empty() && memory_used_ + record > memory_limit_) {
    Status s = SpillToFile(xid, &txn);
    if (!s.ok()) return s;
    if (memory_used_ + record > memory_limit_) {
      for (auto& [other_xid, other] : txns_) {
        s = SpillToFile(other_xid, &other);
        if (!s.ok()) return s;
      }
    }
    if (record > memory_limit_) {
      char header[kHeaderSize];
      WriteHeader(h, header);
      s = WriteToFile(xid, &txn, header, sizeof header);
      if (s.ok()) s = WriteToFile(xid, &txn, line.data(), line.size());
      return s;
    }
  }
  size_t at = txn.memory.size();
  txn.memory.resize(at + kHeaderSize);
  WriteHeader(h, &txn.memory[at]);
  txn.memory.append(line.data(), line.size());
  memory_used_ += record;
  return Status::Ok();
}

Status Spool::SpillToFile(uint32_t xid, Txn* txn) {
  if (txn->memory.empty()) return Status::Ok();
  Status s = WriteToFile(xid, txn, txn->memory.data(), txn->memory.size());
  if (!s.ok()) return s;
  memory_used_ -= txn->memory.size();
  std::string().swap(txn->memory);  // give the memory back, not just the bytes
  return Status::Ok();
}

Status Spool::WriteToFile(uint32_t xid, Txn* txn, const char* data, size_t len) {
  if (txn->fd < 0) {
    std::string path = PathFor(xid);
    int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    txn->fd = ::open(path.c_str(), flags, 0600);
    if (txn->fd < 0 && errno == ENOENT && ::mkdir(dir_.c_str(), 0700) == 0) {
      txn->fd = ::open(path.c_str(), flags, 0600);
    }
    if (txn->fd < 0) {
      return Status::Retryable(ErrnoMessage("pgoutput: cannot create spool file " + path, errno));
    }
    txn->file_written = true;
    // Held until the file is closed (or this process ends, however it
    // ends): ClearStale leaves locked files alone. Best effort: a file
    // system without locks only loses that protection.
    (void)::flock(txn->fd, LOCK_EX | LOCK_NB);
  }
  while (len > 0) {
    ssize_t n = ::write(txn->fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Retryable(
          ErrnoMessage("pgoutput: cannot write spool file " + PathFor(xid), errno));
    }
    data += n;
    len -= static_cast<size_t>(n);
    txn->file_bytes += static_cast<uint64_t>(n);
    disk_used_ += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

void Spool::Abort(uint32_t xid, uint32_t subxid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return;
  if (subxid == xid) {
    Forget(xid);
    return;
  }
  Txn& txn = it->second;
  if (std::find(txn.aborted.begin(), txn.aborted.end(), subxid) == txn.aborted.end()) {
    txn.aborted.push_back(subxid);
  }
  // Records still in memory can go now; those on disk are skipped on replay.
  size_t out = 0;
  size_t in = 0;
  std::string& m = txn.memory;
  while (m.size() - in >= kHeaderSize) {
    RecordHeader h = ReadHeader(&m[in]);
    size_t record = kHeaderSize + h.length;
    if (h.subxid != subxid) {
      if (out != in) std::memmove(&m[out], &m[in], record);
      out += record;
    }
    in += record;
  }
  memory_used_ -= m.size() - out;
  m.resize(out);
}

size_t Spool::VisitRecords(const Txn& txn, const char* data, size_t len, Visitor* visitor,
                           size_t budget) {
  size_t pos = 0;
  while (pos < budget && len - pos >= kHeaderSize) {
    RecordHeader h = ReadHeader(data + pos);
    if (len - pos - kHeaderSize < h.length) break;
    if (std::find(txn.aborted.begin(), txn.aborted.end(), h.subxid) == txn.aborted.end()) {
      visitor->OnRecord(h.split, std::string_view(data + pos + kHeaderSize, h.length));
    }
    pos += kHeaderSize + h.length;
  }
  return pos;
}

Status Spool::Replay(uint32_t xid, Visitor* visitor) {
  BeginReplay(xid);
  bool done = false;
  while (!done) {
    Status s = ReplaySome(visitor, SIZE_MAX, &done);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

void Spool::BeginReplay(uint32_t xid) {
  replay_active_ = true;
  replay_xid_ = xid;
  replay_offset_ = 0;
  replay_have_ = 0;
  replay_file_done_ = false;
}

Status Spool::ReplaySome(Visitor* visitor, size_t budget, bool* done) {
  *done = false;
  auto it = txns_.find(replay_xid_);
  if (!replay_active_ || it == txns_.end()) {
    replay_active_ = false;
    *done = true;
    return Status::Ok();
  }
  Txn& txn = it->second;
  size_t visited = 0;
  Status status;
  if (txn.fd < 0) replay_file_done_ = true;
  if (!replay_file_done_) {
    if (read_buffer_.size() < kReadChunk) read_buffer_.resize(kReadChunk);
    while (visited < budget) {
      size_t used = VisitRecords(txn, read_buffer_.data(), replay_have_, visitor, budget - visited);
      visited += used;
      std::memmove(read_buffer_.data(), read_buffer_.data() + used, replay_have_ - used);
      replay_have_ -= used;
      if (visited >= budget) break;
      if (replay_have_ >= kHeaderSize) {
        size_t need = kHeaderSize + ReadHeader(read_buffer_.data()).length;
        if (need > read_buffer_.size()) read_buffer_.resize(need);
      }
      ssize_t n = ::pread(txn.fd, read_buffer_.data() + replay_have_,
                          read_buffer_.size() - replay_have_, replay_offset_);
      if (n < 0) {
        if (errno == EINTR) continue;
        status = Status::Retryable(
            ErrnoMessage("pgoutput: cannot read spool file " + PathFor(replay_xid_), errno));
        break;
      }
      if (n == 0) {
        if (replay_have_ != 0) {
          status = Status::Retryable("pgoutput: spool file " + PathFor(replay_xid_) +
                                     " ends mid-record");
        }
        replay_file_done_ = true;
        break;
      }
      replay_offset_ += n;
      replay_have_ += static_cast<size_t>(n);
    }
  }
  if (status.ok() && replay_file_done_ && visited < budget) {
    // The records still in memory (at most the memory limit) go in one call.
    VisitRecords(txn, txn.memory.data(), txn.memory.size(), visitor);
    *done = true;
  }
  if (!status.ok() || *done) {
    Forget(replay_xid_);
    replay_active_ = false;
    if (read_buffer_.size() > kKeepReadBuffer) std::vector<char>().swap(read_buffer_);
  }
  return status;
}

void Spool::Forget(uint32_t xid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return;
  Txn& txn = it->second;
  if (txn.fd >= 0) ::close(txn.fd);
  if (txn.file_written) ::unlink(PathFor(xid).c_str());
  memory_used_ -= txn.memory.size();
  disk_used_ -= txn.file_bytes;
  txns_.erase(it);
}

void Spool::Clear() {
  while (!txns_.empty()) Forget(txns_.begin()->first);
}

void Spool::ClearStale() {
  if (dir_.empty()) return;
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return;
  constexpr std::string_view kSuffix = ".spool";
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.size() <= prefix_.size() + kSuffix.size()) continue;
    if (name.substr(0, prefix_.size()) != prefix_) continue;
    if (name.substr(name.size() - kSuffix.size()) != kSuffix) continue;
    std::string_view middle =
        name.substr(prefix_.size(), name.size() - prefix_.size() - kSuffix.size());
    size_t dash = middle.find('-');
    uint64_t pid;
    uint64_t xid;
    if (dash == std::string_view::npos || !ParseDecimal(middle.substr(0, dash), &pid) ||
        !ParseDecimal(middle.substr(dash + 1), &xid)) {
      continue;
    }
    if (pid == static_cast<uint64_t>(pid_) && xid <= UINT32_MAX &&
        Contains(static_cast<uint32_t>(xid))) {
      continue;  // ours and in use
    }
    // A live owner holds a lock on its file; a file nobody can be holding
    // (its process ended, even as a zombie, or it was closed) is stale.
    int fd = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlinkat(::dirfd(d), e->d_name, 0);
    ::close(fd);
  }
  ::closedir(d);
}

}  // namespace pgslotd
