/* An LD_PRELOAD shim for the fault suite: makes fsync(2) and fdatasync(2)
 * fail with EIO, as a disk that has started to fail does, for the files of
 * one directory and from a moment the test chooses.
 *
 * Environment (read at every call, so nothing is cached across a fork):
 *
 *   PGSLOTD_FAULT_FSYNC_DIR      only descriptors whose path (readlink of
 *                                /proc/self/fd/N) lies strictly under this
 *                                directory are affected; the directory itself
 *                                and every other file (sockets, the state
 *                                directory, ...) are synced normally. Unset or
 *                                empty: the shim does nothing.
 *   PGSLOTD_FAULT_FSYNC_TRIGGER  a path: while no file exists there, calls pass
 *                                through; once it exists, every call on an
 *                                affected descriptor fails with EIO without
 *                                syncing anything. Unset or empty: fail at once.
 *   PGSLOTD_FAULT_FSYNC_LOG      optional: a file to which one line is appended
 *                                per call on an affected descriptor:
 *                                  "ok <size> <path>"   synced; <size> is the
 *                                                       file's size after the
 *                                                       sync (what is durable)
 *                                  "eio <size> <path>"  failed with EIO
 *                                  "err <size> <path>"  the real call failed
 *
 * The log lets a test know what was durable when the failure began, and that
 * the shim was loaded at all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

/* The path of `fd`, or "" when it has none (sockets, pipes) or is too long. */
static void fd_path(int fd, char *out, size_t size) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, size - 1);
  if (n < 0 || (size_t)n >= size - 1) n = 0;
  out[n] = '\0';
}

/* Whether `path` lies strictly under directory `dir`. */
static int is_under(const char *path, const char *dir) {
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') --len;
  return strncmp(path, dir, len) == 0 && path[len] == '/' && path[len + 1] != '\0';
}

static void log_call(const char *what, int fd, const char *path) {
  const char *log = getenv("PGSLOTD_FAULT_FSYNC_LOG");
  if (log == NULL || log[0] == '\0') return;
  struct stat st;
  long long size = fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
  char line[4200];
  int n = snprintf(line, sizeof line, "%s %lld %s\n", what, size, path);
  if (n <= 0) return;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  int saved = errno;
  int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (lfd >= 0) {
    /* One write of a short line with O_APPEND: lines never interleave. */
    ssize_t ignored = write(lfd, line, (size_t)n);
    (void)ignored;
    close(lfd);
  }
  errno = saved;
}

static int intercept(int fd, const char *name) {
  sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  const char *dir = getenv("PGSLOTD_FAULT_FSYNC_DIR");
  if (dir == NULL || dir[0] == '\0') return real(fd);
  char path[4096];
  fd_path(fd, path, sizeof path);
  if (!is_under(path, dir)) return real(fd);
  const char *trigger = getenv("PGSLOTD_FAULT_FSYNC_TRIGGER");
  if (trigger == NULL || trigger[0] == '\0' || access(trigger, F_OK) == 0) {
    log_call("eio", fd, path);
    errno = EIO;
    return -1;
  }
  int rc = real(fd);
  int err = errno;
  log_call(rc == 0 ? "ok" : "err", fd, path);
  errno = err;
  return rc;
}

int fsync(int fd) { return intercept(fd, "fsync"); }

int fdatasync(int fd) { return intercept(fd, "fdatasync"); }
