// Small helpers for file system paths and the errors of opening them.
#pragma once

#include <sys/types.h>

#include <string>

#include "util/status.h"

namespace pgslotd {

// The directory part of `path`: "/a/b" -> "/a", "/a" -> "/", "a" -> ".".
std::string DirName(const std::string& path);

// The outcome of a failed open, create or mkfifo of `path` (what failed is
// in `what`, e.g. "cannot create /srv/out.log"): a missing directory, a
// permission the user pgslotd runs as lacks, or a path that cannot be one
// are mistakes only an operator fixes (kSlotFatal, with what to do); a
// read-only or full file system, or no descriptors left, can pass
// (kRetryable).
Status PathError(const std::string& what, const std::string& path, int err);

// The name of the user this process runs as ("uid 1234" when it has none).
std::string CurrentUserName();

// Creates `path` as a new, empty file of this process for writing, with
// O_EXCL and O_NOFOLLOW: whatever is there already (a temporary file a
// crash left, or a symbolic link someone planted) is unlinked first, which
// never follows a link. Returns the descriptor, or -1 with errno set.
int CreateFresh(const std::string& path, mode_t mode);

}  // namespace pgslotd
