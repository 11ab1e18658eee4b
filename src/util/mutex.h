// A mutex that clang's thread-safety analysis (-Wthread-safety) understands:
// fields marked GUARDED_BY(mu_) may be touched only while a MutexLock on
// mu_ is held, and a clang build refuses code that does otherwise
// (scripts/thread-safety.sh, run by CI). libstdc++'s std::mutex carries no
// annotations, hence this wrapper. Other compilers see plain code.
#pragma once

#include <mutex>

#if defined(__clang__)
#define PGSLOTD_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PGSLOTD_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) PGSLOTD_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY PGSLOTD_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) PGSLOTD_THREAD_ANNOTATION(guarded_by(x))
#define ACQUIRE(...) PGSLOTD_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) PGSLOTD_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define EXCLUDES(...) PGSLOTD_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

namespace pgslotd {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` from construction to the end of the scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

}  // namespace pgslotd
