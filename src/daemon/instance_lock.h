// One pgslotd per state directory.
//
// Two daemons sharing a state directory would overwrite each other's state
// records and remove each other's spool files. At start pgslotd takes an
// exclusive lock (flock) on <state_directory>/pgslotd.lock and writes its
// pid there; the lock goes with the process, however it ends, so a stale
// file never blocks a start. The file itself stays.
#pragma once

#include <memory>
#include <string>

#include "util/status.h"

namespace pgslotd {

class InstanceLock {
 public:
  // Creates the directory (one level, mode 0700) when missing, then takes
  // the lock. A lock held by another process is an error that names the
  // directory and that process's pid.
  static Result<std::unique_ptr<InstanceLock>> Acquire(const std::string& state_directory);

  ~InstanceLock();  // releases the lock
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  InstanceLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace pgslotd
