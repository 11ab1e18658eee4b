// Small helpers for file system paths and the errors of opening them.
#pragma once

#include <sys/types.h>

#include <cstdint>
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

// `path` (absolute) with its directory resolved by realpath(3) (symbolic
// links, ".."), and its last component as it is; a directory that does not
// exist is resolved through its nearest ancestor that does.
std::string RealName(const std::string& path);

// Where a path leads, to tell whether two paths name one file.
struct FileIdentity {
  std::string real_name;  // RealName(path)
  bool exists = false;    // stat(2) (following links) found it:
  uint64_t device = 0;
  uint64_t inode = 0;
  // The same real name, or the same existing file by device and inode.
  bool Same(const FileIdentity& o) const;
};
FileIdentity IdentifyFile(const std::string& path);

// The name of the user this process runs as ("uid 1234" when it has none).
std::string CurrentUserName();
// The name of user `uid` ("uid 1234" when it has none).
std::string UserName(uid_t uid);

// Sink paths and symbolic links. pgslotd follows a symbolic link at the
// last component of a sink's path only when it is not in a directory every
// user may write to (S_IWOTH, sticky or not: anyone could have planted it)
// and belongs to the user pgslotd runs as or to root (the rule of the
// kernel's fs.protected_symlinks, applied in every directory). Links in
// the directories above are the operator's business.
//
// Ok when `path` is no symbolic link (or does not exist) or one pgslotd
// may follow; else kSlotFatal saying why and what to do.
Status CheckLink(const std::string& path);
// open(2) of `path`, following a symbolic link at its last component only
// when CheckLink allows it. Returns the descriptor, or -1 with errno set;
// *refused is set when a link was refused (errno is ELOOP then). With
// O_CREAT, pass O_EXCL too: it never follows a link at all.
int OpenSinkPath(const std::string& path, int flags, mode_t mode, Status* refused);

// Creates `path` as a new, empty file of this process for writing, with
// O_EXCL and O_NOFOLLOW: whatever is there already (a temporary file a
// crash left, or a symbolic link someone planted) is unlinked first, which
// never follows a link. Returns the descriptor, or -1 with errno set.
int CreateFresh(const std::string& path, mode_t mode);

}  // namespace pgslotd
