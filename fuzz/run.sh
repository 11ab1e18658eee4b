#!/bin/sh
# Builds the pgoutput fuzzer with clang (libFuzzer, AddressSanitizer,
# UndefinedBehaviorSanitizer) and runs it for a bounded time over a copy of
# fuzz/corpus (the committed seeds are never modified).
#
#   fuzz/run.sh [SECONDS]      default 60
#
# Exits 0 when the run ended without a finding, non-zero on any crash,
# sanitizer report, leak, timeout or build failure; the failing input is kept
# and its path printed. Prints the number of executions either way.
#
# Needs clang-14 and libclang-rt-14-dev; installs them with apt-get when
# missing and running as root.
set -eu

seconds=${1:-60}
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cxx=clang++-14
have_runtime() { ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1; }
if ! command -v "$cxx" >/dev/null 2>&1 || ! have_runtime; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing clang-14 and libclang-rt-14-dev" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev >&2
  else
    echo "$0: needs clang-14 and libclang-rt-14-dev (apt-get install clang-14 libclang-rt-14-dev)" >&2
    exit 2
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pgslotd-fuzz.XXXXXX")
keep=0
cleanup() { [ "$keep" -eq 1 ] || rm -rf "$work"; }
trap cleanup EXIT

echo "building $work/pgoutput_fuzzer" >&2
"$cxx" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -I "$root/src" \
  "$root/fuzz/pgoutput_fuzzer.cc" \
  "$root/src/decode/json.cc" \
  "$root/src/decode/spool.cc" \
  "$root/src/decode/record_buffer.cc" \
  "$root/src/decode/pgoutput_formatter.cc" \
  "$root/src/pg/lsn.cc" \
  "$root/src/util/path.cc" \
  -o "$work/pgoutput_fuzzer"

mkdir -p "$work/corpus" "$work/artifacts"
cp "$root"/fuzz/corpus/* "$work/corpus/"

echo "fuzzing for ${seconds}s over $(find "$work/corpus" -type f | wc -l) seeds" >&2
set +e
TMPDIR=$work "$work/pgoutput_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus" >"$work/log" 2>&1
status=$?
set -e

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -n 1)
echo "executions: ${execs:-unknown} (${rate:-?}/s)"

findings=$(find "$work/artifacts" -type f | tr '\n' ' ')
if [ "$status" -ne 0 ] || [ -n "$findings" ]; then
  keep=1
  tail -n 60 "$work/log" >&2
  echo "FAILED (exit $status); inputs: $findings" >&2
  echo "log: $work/log" >&2
  [ "$status" -ne 0 ] || status=1
  exit "$status"
fi
echo "no findings"
