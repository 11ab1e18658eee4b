#!/usr/bin/env bash
# For ThreadSanitizer builds: checks that each program given exports every
# C11 threads function (thrd_*, mtx_*, cnd_*, tss_*, call_once) that the
# librdkafka it loads imports, so that the dynamic linker hands librdkafka
# our pthread-based versions (src/util/tsan_c11_threads.cc), which TSan sees,
# and not glibc's, which it does not. Fails when librdkafka imports none:
# the shim would then be dead code.
#   tsan_c11_threads_test.sh PROGRAM...
set -euo pipefail

c11='^(thrd_|mtx_|cnd_|tss_|call_once$)'
failed=0
for program in "$@"; do
  lib=$(ldd "$program" | awk '$1 ~ /^librdkafka\.so/ { print $3 }')
  if [ -z "$lib" ]; then
    echo "FAIL $program: does not load librdkafka"
    failed=1
    continue
  fi
  # nm prints versioned names (thrd_create@GLIBC_2.34); the version goes.
  imports=$(nm -D --undefined-only "$lib" | awk '{ sub(/@.*/, "", $NF); print $NF }' |
    grep -E "$c11" | sort -u || true)
  if [ -z "$imports" ]; then
    echo "FAIL $lib imports no C11 threads function: is the shim still needed?"
    failed=1
    continue
  fi
  exports=$(nm -D --defined-only "$program" | awk '{ sub(/@.*/, "", $NF); print $NF }' | sort -u)
  missing=$(comm -23 <(printf '%s\n' "$imports") <(printf '%s\n' "$exports"))
  if [ -n "$missing" ]; then
    echo "FAIL $program does not define what $lib imports: ${missing//$'\n'/ }"
    failed=1
  else
    echo "ok   $program defines all $(wc -w <<<"$imports") C11 threads functions $lib imports"
  fi
done
exit "$failed"
