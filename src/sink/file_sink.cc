#include "sink/file_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "util/fd.h"
#include "util/path.h"

namespace pgslotd {

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
}

Status FileSink::Open() {
  if (fd_ >= 0) return Status::Ok();
  Status refused;
  int fd = OpenSinkPath(path_, O_WRONLY | O_APPEND | O_CLOEXEC, 0, &refused);
  bool created = false;
  if (fd < 0 && errno == ENOENT) {
    // O_EXCL: never through a link, even one to nowhere.
    fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, mode_);
    if (fd >= 0) {
      created = true;
    } else if (errno == EEXIST) {
      fd = OpenSinkPath(path_, O_WRONLY | O_APPEND | O_CLOEXEC, 0, &refused);
    }
  }
  if (!refused.ok()) return refused;
  if (fd < 0 && errno == EISDIR) {
    // Not a condition time cures: stop the slot rather than retry forever.
    return Status::SlotFatal(path_ + " is a directory, not a regular file");
  }
  if (fd < 0) return PathError("cannot open " + path_, path_, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::Retryable(ErrnoMessage("cannot stat " + path_, err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::SlotFatal(path_ + " is not a regular file");
  }
  // The configured mode is exact: a restrictive umask must not narrow it.
  if (created && ::fchmod(fd, mode_) != 0) {
    int err = errno;
    ::close(fd);
    return Status::Retryable(ErrnoMessage("cannot chmod " + path_, err));
  }
  fd_ = fd;
  // A file this sink has not had open before (created here or by logrotate)
  // starts its age now.
  bool other_file =
      static_cast<uint64_t>(st.st_ino) != inode_ || static_cast<uint64_t>(st.st_dev) != device_;
  if (created || other_file || created_ == 0) created_ = static_cast<int64_t>(::time(nullptr));
  // Its directory entry may be new too (logrotate's create): make it
  // durable before anything written to it is acknowledged.
  if (other_file) dir_sync_pending_ = true;
  device_ = static_cast<uint64_t>(st.st_dev);
  inode_ = static_cast<uint64_t>(st.st_ino);
  poisoned_ = false;
  dir_sync_pending_ = dir_sync_pending_ || created;
  open_size_ = static_cast<uint64_t>(st.st_size);
  open_accepted_ = accepted();
  return Status::Ok();
}

Status FileSink::Write(const char* data, size_t len, size_t* written) {
  *written = 0;
  if (fd_ < 0) {
    Status s = Open();
    if (!s.ok()) return s;
  }
  int err = WriteFully(fd_, data, len, written);
  CountAccepted(*written);
  if (err != 0) return Status::Retryable(ErrnoMessage("cannot write to " + path_, err));
  return Status::Ok();
}

Status FileSink::Sync() {
  if (fd_ < 0 || (accepted() == durable() && !dir_sync_pending_)) return Status::Ok();
  if (poisoned_) {
    return Status::ProcessFatal("fsync of " + path_ +
                                " failed earlier; refusing to trust it again");
  }
  if (::fdatasync(fd_) != 0) {
    poisoned_ = true;
    return Status::ProcessFatal(ErrnoMessage("fsync of " + path_ + " failed", errno) +
                                "; what was written since the last fsync may be lost, so it is "
                                "not acknowledged and the process exits to start over");
  }
  if (dir_sync_pending_) {
    std::string dir = DirName(path_);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return Status::Retryable(ErrnoMessage("cannot open directory " + dir, errno));
    int rc = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (rc != 0) {
      poisoned_ = true;
      return Status::ProcessFatal(ErrnoMessage("fsync of directory " + dir + " failed", err));
    }
    dir_sync_pending_ = false;
  }
  CountDurableUpTo(accepted());
  return Status::Ok();
}

Status FileSink::Discard(uint64_t keep) {
  if (fd_ >= 0 && keep < accepted()) {
    if (keep < open_accepted_) {
      return Status::SlotFatal("cannot take back bytes of " + path_ +
                               " written before it was last reopened");
    }
    off_t size = static_cast<off_t>(open_size_ + (keep - open_accepted_));
    // Cutting must never lengthen the file (with zeros): a file shorter
    // than what this sink wrote was truncated under it.
    struct stat st;
    if (::fstat(fd_, &st) != 0)
      return Status::Retryable(ErrnoMessage("cannot stat " + path_, errno));
    if (st.st_size < size) {
      return Status::SlotFatal(path_ + " holds " + std::to_string(st.st_size) +
                               " bytes, fewer than pgslotd wrote: it was truncated under pgslotd "
                               "(copytruncate?); stopping rather than guess what it holds");
    }
    if (::ftruncate(fd_, size) != 0) {
      return Status::Retryable(ErrnoMessage("cannot truncate " + path_, errno));
    }
  }
  CountCutTo(keep);
  if (fd_ >= 0 && poisoned_) {
    // Only a new descriptor may be synced again.
    ::close(fd_);
    fd_ = -1;
  }
  return Status::Ok();
}

Status FileSink::Reopen() {
  Status s = Sync();
  if (!s.ok()) return s;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return Open();
}

Status FileSink::Close() {
  Status s = Sync();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  return s;
}

// Truncates `path` to `size` when it is longer, durably.
Status FileSink::CutTo(const std::string& path, uint64_t size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) <= size) {
    return Status::Ok();
  }
  Status refused;
  int fd = OpenSinkPath(path, O_WRONLY | O_CLOEXEC, 0, &refused);
  if (!refused.ok()) return refused;
  if (fd < 0) return Status::Retryable(ErrnoMessage("cannot open " + path, errno));
  int rc = ::ftruncate(fd, static_cast<off_t>(size));
  int err = errno;
  if (rc == 0 && ::fdatasync(fd) != 0) {
    err = errno;
    ::close(fd);
    return Status::ProcessFatal(ErrnoMessage("fsync of " + path + " failed", err));
  }
  ::close(fd);
  if (rc != 0) return Status::Retryable(ErrnoMessage("cannot truncate " + path, err));
  return Status::Ok();
}

namespace {

Status ShorterThanRecorded(const std::string& path, uint64_t size, const std::string& record,
                           uint64_t recorded) {
  return Status::SlotFatal(
      path + " holds " + std::to_string(size) + " bytes but its state record " + record + " says " +
      std::to_string(recorded) +
      ": the file was truncated (copytruncate?) or restored from an older copy, so it no "
      "longer holds what was acknowledged; move the file and the record aside to start again");
}

}  // namespace

Result<Lsn> FileSink::Recover(const StateKey& key, std::string* note, bool* warn) {
  note->clear();
  *warn = false;
  key_ = key;
  recovered_snapshot_.clear();
  SinkStateRecord rec;
  bool found = false;
  bool legacy = false;
  Status s = ReadStateRecord(key.file, &rec, &found, &legacy);
  if (!s.ok()) return s;
  std::string mismatch;
  if (found && rec.system_id != key.system_id) {
    mismatch = "another server (system identifier " + rec.system_id + "; this one is " +
               key.system_id + ")";
  } else if (found && rec.slot != key.slot) {
    mismatch = "slot " + rec.slot;
  } else if (found && rec.path != path_) {
    mismatch = "file " + rec.path;
  }
  if (!mismatch.empty()) {
    *note = "the state record " + key.file + " belongs to " + mismatch +
            "; not applied (it is replaced once this sink records its own)";
    *warn = true;
    found = false;
  }
  if (!found) {
    if (Status o = Open(); !o.ok()) return o;
    if (open_size_ > 0 && mismatch.empty()) {
      *note = "no state record for " + path_ + ", which already holds " +
              std::to_string(open_size_) +
              " bytes: they are kept as they are, and every transaction from here on is "
              "written once";
      *warn = true;
    }
    return kInvalidLsn;
  }
  // Before anything is cut: if the server was told more than the record
  // says the file holds, the file (or the record) is an older copy and the
  // changes between are gone from the server.
  if (key.confirmed != kInvalidLsn && key.confirmed > rec.lsn) {
    return Status::SlotFatal(
        "the server has been told that changes up to " + FormatLsn(key.confirmed) +
        " are stored, but " + Describe() + " holds them only up to " + FormatLsn(rec.lsn) +
        " (its state record says so): the file was replaced or restored from an older copy, and "
        "the server no longer has the changes between; stopping rather than skip them silently "
        "(move the file and its state record aside to start again from " +
        FormatLsn(key.confirmed) + ")");
  }
  if (Status a = ApplyRecord(rec, note, warn); !a.ok()) return a;
  recovered_snapshot_ = rec.snapshot;
  snapshot_ = rec.snapshot;
  if (legacy) {
    // Checked against the file like any other: from now on it has a checksum.
    if (Status w = WriteStateRecord(key.file, rec); !w.ok()) return w;
    *note += std::string(note->empty() ? "" : "; ") + "the state record " + key.file +
             " had no checksum (an older pgslotd wrote it): rewritten with one";
  }
  return rec.lsn;
}

Status FileSink::ApplyRecord(const SinkStateRecord& rec, std::string* note, bool* warn) {
  // Look at the file by path, with no descriptor of ours open on it, and
  // never through a link pgslotd would not follow.
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (Status l = CheckLink(path_); !l.ok()) return l;
  auto is_recorded = [&rec](const struct stat& st) {
    return static_cast<uint64_t>(st.st_ino) == rec.inode &&
           static_cast<uint64_t>(st.st_dev) == rec.device;
  };
  struct stat st;
  bool exists = ::stat(path_.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) {
    return Status::Retryable(ErrnoMessage("cannot stat " + path_, errno));
  }
  if (exists && is_recorded(st)) {
    if (static_cast<uint64_t>(st.st_size) < rec.size) {
      return ShorterThanRecorded(path_, static_cast<uint64_t>(st.st_size), key_.file, rec.size);
    }
    if (static_cast<uint64_t>(st.st_size) > rec.size) {
      if (Status c = CutTo(path_, rec.size); !c.ok()) return c;
      *note = "cut " + std::to_string(static_cast<uint64_t>(st.st_size) - rec.size) +
              " bytes of an unfinished transaction off the end of " + path_ +
              " (it is written again whole)";
    }
    created_ = rec.created;
    inode_ = rec.inode;
    device_ = rec.device;
  } else {
    // The recorded file has moved: to <path>.1 by our own rotation, or by
    // logrotate (with its default names) before pgslotd reopened. Its tail
    // is cut there, and everything at <path> now came after the record.
    struct stat moved;
    if (::stat(Numbered(1).c_str(), &moved) == 0 && is_recorded(moved)) {
      if (static_cast<uint64_t>(moved.st_size) < rec.size) {
        return ShorterThanRecorded(Numbered(1), static_cast<uint64_t>(moved.st_size), key_.file,
                                   rec.size);
      }
      Status c = CutTo(Numbered(1), rec.size);
      if (c.ok() && exists) c = CutTo(path_, 0);
      if (!c.ok()) return c;
    } else if (exists && st.st_size > 0) {
      return Status::SlotFatal(
          path_ + " is not the file its state record " + key_.file +
          " describes, and it is not empty: it was replaced or restored from a copy, so what it "
          "holds cannot be matched with the server's position; move the file and the record "
          "aside to start again");
    } else {
      // Moved away with a name we cannot know (logrotate dateext, an
      // operator): its tail cannot be checked from here.
      *note = path_ + (exists ? " was replaced by an empty file" : " is missing") +
              " since its state record was written; streaming resumes at " + FormatLsn(rec.lsn) +
              " into a new file there (the old file's last transaction, if a crash cut it, "
              "could not be checked)";
      *warn = true;
    }
    created_ = 0;
  }
  return Open();
}

Result<bool> FileSink::Checkpoint(uint64_t offset, Lsn lsn) {
  Status s = WriteRecord(offset, lsn);
  if (!s.ok()) return s;
  return true;
}

Status FileSink::WriteRecord(uint64_t offset, Lsn lsn) {
  if (key_.file.empty()) return Status::Ok();  // not recovered: nothing to keep
  if (fd_ < 0 || offset < open_accepted_ || offset > durable()) {
    return Status::SlotFatal("internal error: checkpoint of " + path_ + " at offset " +
                             std::to_string(offset) + " outside its durable bytes");
  }
  // Only this sink writes the file: any other size means it was truncated
  // (copytruncate) or appended to under us, and the record would lie.
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::Retryable(ErrnoMessage("cannot stat " + path_, errno));
  if (static_cast<uint64_t>(st.st_size) != FileSizeAt(accepted())) {
    return Status::SlotFatal(path_ + " holds " + std::to_string(st.st_size) +
                             " bytes where pgslotd wrote " +
                             std::to_string(FileSizeAt(accepted())) +
                             ": it was truncated (copytruncate?) or written by another program "
                             "while pgslotd had it open; stopping rather than record a size that "
                             "means nothing");
  }
  SinkStateRecord rec;
  rec.system_id = key_.system_id;
  rec.slot = key_.slot;
  rec.path = path_;
  rec.device = device_;
  rec.inode = inode_;
  rec.size = FileSizeAt(offset);
  rec.lsn = lsn;
  rec.created = created_;
  rec.snapshot = snapshot_;
  return WriteStateRecord(key_.file, rec);
}

bool FileSink::RotationDue(uint64_t offset) const {
  if (!rotate_.enabled() || fd_ < 0 || offset < open_accepted_) return false;
  uint64_t size = FileSizeAt(offset);
  if (size == 0) return false;
  if (rotate_.size > 0 && size >= rotate_.size) return true;
  if (rotate_.age.count() > 0) {
    int64_t age_s = static_cast<int64_t>(rotate_.age.count() / 1000);
    return static_cast<int64_t>(::time(nullptr)) - created_ >= std::max<int64_t>(age_s, 1);
  }
  return false;
}

Status FileSink::Rotate() {
  Status s = Sync();
  if (!s.ok()) return s;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  // path.<keep> goes; path.<n> becomes path.<n+1>; path becomes path.1.
  if (::unlink(Numbered(rotate_.keep).c_str()) != 0 && errno != ENOENT) {
    return Status::Retryable(ErrnoMessage("cannot remove " + Numbered(rotate_.keep), errno));
  }
  for (uint32_t n = rotate_.keep; n > 1; --n) {
    if (::rename(Numbered(n - 1).c_str(), Numbered(n).c_str()) != 0 && errno != ENOENT) {
      return Status::Retryable(
          ErrnoMessage("cannot rename " + Numbered(n - 1) + " to " + Numbered(n), errno));
    }
  }
  if (::rename(path_.c_str(), Numbered(1).c_str()) != 0 && errno != ENOENT) {
    return Status::Retryable(ErrnoMessage("cannot rename " + path_ + " to " + Numbered(1), errno));
  }
  created_ = 0;
  s = Open();  // creates the new file; Sync makes its directory entry durable
  if (s.ok()) s = Sync();
  return s;
}

}  // namespace pgslotd
