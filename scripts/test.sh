#!/usr/bin/env bash
# Test it: installs what is missing (Debian packages), builds pgslotd and its
# tests in ./build, and runs the whole test suite with ctest. Arguments are
# passed on to ctest, e.g.:
#   bash scripts/test.sh -L unit          # unit tests only (no server)
#   bash scripts/test.sh -L integration   # throwaway PostgreSQL 15 clusters
# With PGSLOTD_SYSTEM_TESTS=1 (CI sets it; needs root) it also runs the
# tests that change the machine: `service` boots a real systemd in
# systemd-nspawn, `package` installs and purges the .deb.
# Exits with ctest's exit code. Safe to run again and again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

ensure_packages "${PGSLOTD_BUILD_DEPS[@]}" "${PGSLOTD_SERVER_DEPS[@]}" \
  "${PGSLOTD_KAFKA_TEST_DEPS[@]}" "${PGSLOTD_DOC_DEPS[@]}"
ensure_locale de_DE.UTF-8
if [ "${PGSLOTD_SYSTEM_TESTS:-0}" = 1 ]; then
  ensure_packages "${PGSLOTD_SYSTEM_TEST_DEPS[@]}"
  export PGSLOTD_CMAKE_ARGS="${PGSLOTD_CMAKE_ARGS:-} -DPGSLOTD_SYSTEM_TESTS=ON"
else
  export PGSLOTD_CMAKE_ARGS="${PGSLOTD_CMAKE_ARGS:-} -DPGSLOTD_SYSTEM_TESTS=OFF"
fi
# The Kafka tests are always built here (try-it.sh turns them off in the
# same build directory).
export PGSLOTD_CMAKE_ARGS="$PGSLOTD_CMAKE_ARGS -DPGSLOTD_KAFKA_TESTS=ON"
build_pgslotd "$root"

say "running the tests: ctest --output-on-failure $*"
cd "$root/build"
exec ctest --output-on-failure "$@"
