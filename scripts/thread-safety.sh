#!/usr/bin/env bash
# Builds pgslotd with clang and its thread-safety analysis (-Wthread-safety,
# an error like every warning) in ./build-clang: a field marked
# GUARDED_BY(mu) touched without holding mu fails the build
# (src/util/mutex.h). Installs clang-14 when missing and running as root.
#   bash scripts/thread-safety.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v clang++-14 >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing clang-14" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 >&2
  else
    echo "$0: needs clang-14 (apt-get install clang-14)" >&2
    exit 2
  fi
fi
build=$root/build-clang
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="-Wthread-safety" >/dev/null
make -C "$build" -j"$(nproc)" --no-print-directory pgslotd
echo "thread-safety analysis: clean"
