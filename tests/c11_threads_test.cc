// The C11 threads functions librdkafka uses behave as glibc's: under
// ThreadSanitizer these tests run src/util/tsan_c11_threads.cc (compiled
// into this program), in every other build glibc's own, so the same
// expectations hold for both.
#include <gtest/gtest.h>
#include <threads.h>
#include <time.h>

namespace {

TEST(C11Threads, JoinGivesTheThreadsResultAndItsIdentity) {
  struct Arg {
    int in;
    thrd_t self;
  } arg{-42, {}};
  thrd_t t;
  ASSERT_EQ(thrd_create(
                &t,
                [](void* p) {
                  auto* a = static_cast<Arg*>(p);
                  a->self = thrd_current();
                  return a->in - 1;
                },
                &arg),
            thrd_success);
  int res = 0;
  ASSERT_EQ(thrd_join(t, &res), thrd_success);
  EXPECT_EQ(res, -43);
  EXPECT_TRUE(thrd_equal(arg.self, t));
  EXPECT_FALSE(thrd_equal(thrd_current(), t));
}

TEST(C11Threads, ARecursiveMutexLocksAgainInItsThread) {
  mtx_t mu;
  ASSERT_EQ(mtx_init(&mu, mtx_timed | mtx_recursive), thrd_success);
  EXPECT_EQ(mtx_lock(&mu), thrd_success);
  EXPECT_EQ(mtx_lock(&mu), thrd_success);
  EXPECT_EQ(mtx_unlock(&mu), thrd_success);
  EXPECT_EQ(mtx_unlock(&mu), thrd_success);
  mtx_destroy(&mu);
}

TEST(C11Threads, TimedWaitTimesOutAtItsUtcDeadline) {
  mtx_t mu;
  cnd_t cv;
  ASSERT_EQ(mtx_init(&mu, mtx_plain), thrd_success);
  ASSERT_EQ(cnd_init(&cv), thrd_success);
  timespec deadline;
  ASSERT_EQ(timespec_get(&deadline, TIME_UTC), TIME_UTC);
  deadline.tv_nsec += 20 * 1000 * 1000;
  if (deadline.tv_nsec >= 1000 * 1000 * 1000) {
    deadline.tv_nsec -= 1000 * 1000 * 1000;
    ++deadline.tv_sec;
  }
  ASSERT_EQ(mtx_lock(&mu), thrd_success);
  int r;
  do {
    r = cnd_timedwait(&cv, &mu, &deadline);  // nobody signals
  } while (r == thrd_success);               // a spurious wake-up
  EXPECT_EQ(r, thrd_timedout);
  timespec now;
  ASSERT_EQ(timespec_get(&now, TIME_UTC), TIME_UTC);
  EXPECT_TRUE(now.tv_sec > deadline.tv_sec ||
              (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec));
  EXPECT_EQ(mtx_unlock(&mu), thrd_success);
  cnd_destroy(&cv);
  mtx_destroy(&mu);
}

// A waiter woken by signal and by broadcast, each seeing what was written
// before under the mutex.
TEST(C11Threads, WaitersWakeOnSignalAndBroadcast) {
  struct Shared {
    mtx_t mu;
    cnd_t cv;
    int round = 0;
    int seen = 0;
  } s;
  ASSERT_EQ(mtx_init(&s.mu, mtx_plain), thrd_success);
  ASSERT_EQ(cnd_init(&s.cv), thrd_success);
  auto waiter = [](void* p) {
    auto* shared = static_cast<Shared*>(p);
    mtx_lock(&shared->mu);
    for (int want = 1; want <= 2; ++want) {
      while (shared->round < want) cnd_wait(&shared->cv, &shared->mu);
      shared->seen = shared->round;
      cnd_broadcast(&shared->cv);
    }
    mtx_unlock(&shared->mu);
    return 0;
  };
  thrd_t t;
  ASSERT_EQ(thrd_create(&t, waiter, &s), thrd_success);
  for (int round = 1; round <= 2; ++round) {
    mtx_lock(&s.mu);
    s.round = round;
    EXPECT_EQ(round == 1 ? cnd_signal(&s.cv) : cnd_broadcast(&s.cv), thrd_success);
    while (s.seen < round) cnd_wait(&s.cv, &s.mu);
    mtx_unlock(&s.mu);
  }
  ASSERT_EQ(thrd_join(t, nullptr), thrd_success);
  EXPECT_EQ(s.seen, 2);
  cnd_destroy(&s.cv);
  mtx_destroy(&s.mu);
}

int once_calls = 0;
once_flag once = ONCE_FLAG_INIT;

TEST(C11Threads, CallOnceRunsItsFunctionOnceForAllThreads) {
  auto call = [](void*) {
    call_once(&once, [] { ++once_calls; });
    return once_calls;
  };
  thrd_t threads[4];
  for (thrd_t& t : threads) ASSERT_EQ(thrd_create(&t, call, nullptr), thrd_success);
  for (thrd_t& t : threads) {
    int seen = 0;
    ASSERT_EQ(thrd_join(t, &seen), thrd_success);
    EXPECT_EQ(seen, 1);  // each returns only after the function has run
  }
  EXPECT_EQ(once_calls, 1);
}

}  // namespace
