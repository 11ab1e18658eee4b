#!/usr/bin/env bash
# Builds pgslotd and its tests with sanitizers in ./build-<name> and runs
# ctest there. Any sanitizer report fails the run: the test binaries and the
# daemon they start abort (UBSan, ASan) or exit non-zero (TSan, LSan).
#   bash scripts/sanitize.sh address,undefined -L 'unit|integration'
#   bash scripts/sanitize.sh thread -L integration
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

sanitizers=${1:?usage: sanitize.sh SANITIZERS [ctest args...]}
shift
dir="$root/build-${sanitizers//,/-}"
ensure_packages "${PGSLOTD_BUILD_DEPS[@]}" "${PGSLOTD_SERVER_DEPS[@]}" \
  "${PGSLOTD_KAFKA_TEST_DEPS[@]}"
ensure_locale de_DE.UTF-8
say "building with -fsanitize=$sanitizers in $dir"
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGSLOTD_SANITIZE="$sanitizers" \
  -DPGSLOTD_SYSTEM_TESTS=OFF -DPGSLOTD_KAFKA_TESTS=ON >/dev/null
make -C "$dir" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
say "running the tests under $sanitizers: ctest --output-on-failure $*"
cd "$dir"
exec ctest --output-on-failure "$@"
