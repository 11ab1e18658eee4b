// C11 threads (<threads.h>) on top of pthreads, for ThreadSanitizer builds
// only: CMakeLists.txt compiles this file into every program that links
// librdkafka when PGSLOTD_SANITIZE contains "thread", and into nothing else.
//
// Why: librdkafka starts its threads with thrd_create and locks with
// mtx_*/cnd_*. glibc 2.36 (Debian 12) implements those by calling its own
// internal __pthread_* functions, which no TSan runtime on Debian 12 (GCC
// 12's, clang 14's) intercepts: a thread TSan did not see start crashes in
// TSan's hooks, and locks it did not see make reports of races that are not
// there. Defined here, in the executable, these functions come first in the
// dynamic linker's lookup and so take librdkafka's calls (its references
// are versioned, thrd_create@GLIBC_2.34, which an unversioned definition
// satisfies, as TSan's own interceptors rely on); they call the pthread
// functions that TSan does intercept.
//
// They are exactly the C11 functions librdkafka 2.0.2 imports:
//   objdump -T /usr/lib/x86_64-linux-gnu/librdkafka.so.1 |
//     grep -E 'thrd_|mtx_|cnd_|tss_|call_once'
// and the test tsan_c11_threads (tests/tsan_c11_threads_test.sh) fails when
// the librdkafka a program loads imports one more, or when the program does
// not export these. Their semantics are glibc's own: a thrd_t is a
// pthread_t, an mtx_t a pthread_mutex_t, a cnd_t a pthread_cond_t, a
// once_flag a pthread_once_t, and error numbers become thrd_* results as
// glibc's thrd_err_map makes them.
//
// Also here, for the same programs: what TSan is told to ignore of
// librdkafka (__tsan_default_suppressions, below).
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <threads.h>

#include <new>

static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is a pthread_t");
static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t) &&
                  alignof(mtx_t) == alignof(pthread_mutex_t),
              "mtx_t is a pthread_mutex_t");
static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t) && alignof(cnd_t) == alignof(pthread_cond_t),
              "cnd_t is a pthread_cond_t");
static_assert(sizeof(once_flag) == sizeof(pthread_once_t) &&
                  alignof(once_flag) == alignof(pthread_once_t),
              "once_flag is a pthread_once_t");

namespace {

int FromErrno(int err) {
  switch (err) {
    case 0:
      return thrd_success;
    case ENOMEM:
      return thrd_nomem;
    case ETIMEDOUT:
      return thrd_timedout;
    case EBUSY:
      return thrd_busy;
    default:
      return thrd_error;
  }
}

pthread_mutex_t* Native(mtx_t* mtx) { return reinterpret_cast<pthread_mutex_t*>(mtx); }
pthread_cond_t* Native(cnd_t* cnd) { return reinterpret_cast<pthread_cond_t*>(cnd); }

struct Start {
  thrd_start_t func;
  void* arg;
};

// A C11 thread returns an int, a pthread a pointer: the int travels in the
// pointer (as with glibc's thrd_exit, which a thread started here may call).
void* RunThread(void* p) {
  Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  return reinterpret_cast<void*>(static_cast<intptr_t>(start.func(start.arg)));
}

}  // namespace

extern "C" {

int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  auto* start = new (std::nothrow) Start{func, arg};
  if (start == nullptr) return thrd_nomem;
  int err = pthread_create(thr, nullptr, RunThread, start);
  if (err != 0) delete start;
  return FromErrno(err);
}

int thrd_join(thrd_t thr, int* res) {
  void* result = nullptr;
  int err = pthread_join(thr, &result);
  if (err == 0 && res != nullptr) *res = static_cast<int>(reinterpret_cast<intptr_t>(result));
  return FromErrno(err);
}

thrd_t thrd_current(void) { return pthread_self(); }

int mtx_init(mtx_t* mtx, int type) {
  // mtx_timed needs nothing more: any pthread mutex can be waited for with
  // a timeout. Types C11 does not name are plain, as in glibc.
  bool recursive = type == (mtx_plain | mtx_recursive) || type == (mtx_timed | mtx_recursive);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_NORMAL);
  int err = pthread_mutex_init(Native(mtx), &attr);
  pthread_mutexattr_destroy(&attr);
  return FromErrno(err);
}

int mtx_lock(mtx_t* mtx) { return FromErrno(pthread_mutex_lock(Native(mtx))); }

int mtx_unlock(mtx_t* mtx) { return FromErrno(pthread_mutex_unlock(Native(mtx))); }

void mtx_destroy(mtx_t* mtx) { pthread_mutex_destroy(Native(mtx)); }

int cnd_init(cnd_t* cnd) { return FromErrno(pthread_cond_init(Native(cnd), nullptr)); }

int cnd_signal(cnd_t* cnd) { return FromErrno(pthread_cond_signal(Native(cnd))); }

int cnd_broadcast(cnd_t* cnd) { return FromErrno(pthread_cond_broadcast(Native(cnd))); }

int cnd_wait(cnd_t* cnd, mtx_t* mtx) {
  return FromErrno(pthread_cond_wait(Native(cnd), Native(mtx)));
}

// The time is absolute, on TIME_UTC: CLOCK_REALTIME, a pthread_cond_t's
// clock when made without attributes.
int cnd_timedwait(cnd_t* cnd, mtx_t* mtx, const struct timespec* time_point) {
  return FromErrno(pthread_cond_timedwait(Native(cnd), Native(mtx), time_point));
}

void cnd_destroy(cnd_t* cnd) { pthread_cond_destroy(Native(cnd)); }

void call_once(once_flag* flag, void (*func)(void)) {
  pthread_once(reinterpret_cast<pthread_once_t*>(flag), func);
}

// librdkafka is not instrumented, so TSan cannot see the atomics (reference
// counts, flags) that order much of its work; but it does see the libc
// calls librdkafka makes, and from those alone it reports races between
// librdkafka's own threads that the atomics rule out. Seen: a topic's
// rwlock, and the mutex of one of its averages, destroyed by one thread
// after a lock by another, when the topic's last reference, an atomic
// count, goes (rd_kafka_topic_destroy_final). TSan counts a destroy as a
// write to the lock, and cannot see what ordered it after that lock. So:
//   - called_from_lib: TSan ignores the memory accesses (not the
//     synchronization) of the libc calls librdkafka makes directly
//     (memcpy, free, pthread_rwlock_*);
//   - race:^mtx_destroy$, race:^cnd_destroy$: the same for the destroys
//     above, which reach TSan from here, not from librdkafka. They match a
//     report only when one of its two accesses is such a destroy, which
//     only librdkafka calls; every lock and wait stays checked.
// librdkafka's threads and locks, and all of our own code, stay checked.
// The runtime reads this hook at start-up, in addition to any suppressions
// file given in TSAN_OPTIONS.
const char* __tsan_default_suppressions(void) {
  return "called_from_lib:librdkafka.so.1\n"
         "race:^mtx_destroy$\n"
         "race:^cnd_destroy$\n";
}

}  // extern "C"
