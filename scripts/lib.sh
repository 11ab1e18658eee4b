# Shared helpers for scripts/try-it.sh and scripts/test.sh. Source it; it
# does nothing by itself.
# shellcheck shell=bash

# The variables are used by the scripts that source this file.
# shellcheck disable=SC2034
# The Debian packages needed to build pgslotd.
PGSLOTD_BUILD_DEPS=(cmake g++ make pkg-config libpq-dev libyaml-cpp-dev libspdlog-dev
  libfmt-dev libsystemd-dev librdkafka-dev libgtest-dev libgmock-dev)
# What the integration tests and try-it need on top: a PostgreSQL 15 server
# (binaries in /usr/lib/postgresql/15/bin), the wal2json plugin, and socat
# (the fault suite's TCP proxy).
PGSLOTD_SERVER_DEPS=(postgresql-15 postgresql-15-wal2json socat)
# What the Kafka tests need on top (Debian 12 has no Kafka broker; the
# build's librdkafka-dev brings librdkafka's mock cluster, tests/kafka/):
# kcat, the client that reads back what reached it.
PGSLOTD_KAFKA_TEST_DEPS=(kcat)
# What the README's own commands need beyond these: man-db for
# `man -l docs/pgslotd.8` (a minimal Debian 12 has no `man`; man-db depends
# on groff-base, which renders the page).
PGSLOTD_DOC_DEPS=(man-db)
# What the system tests need (PGSLOTD_SYSTEM_TESTS=1): a systemd to boot in
# systemd-nspawn, and CPack's .deb tools (dpkg-shlibdeps, file) and man-db
# for the package test.
PGSLOTD_SYSTEM_TEST_DEPS=(systemd systemd-container dpkg-dev file man-db)
# Where the server binaries live; they are not on PATH on Debian.
PG_BINDIR=/usr/lib/postgresql/15/bin

# Prints a progress line.
say() {
  printf '==> %s\n' "$*"
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $* (run as root or install sudo)"
  fi
}

# Installs the given Debian packages, but only those not installed yet; does
# nothing (not even apt-get update) when everything is there.
ensure_packages() {
  command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: these scripts expect Debian 12 (install the packages listed in scripts/lib.sh by hand)"
  local missing=() pkg
  for pkg in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  say "installing missing packages: ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# Makes the locale $1 (e.g. de_DE.UTF-8) available, generating it with
# Debian's locales package when missing. The integration tests run a server
# that speaks German, to show that pgslotd never reads the words of a
# server's message.
ensure_locale() {
  local name=$1 short
  short=$(printf '%s' "$name" | tr 'A-Z' 'a-z' | sed 's/utf-8/utf8/')
  if locale -a 2>/dev/null | tr 'A-Z' 'a-z' | grep -qx "$short"; then
    return 0
  fi
  ensure_packages locales
  say "generating the locale $name"
  as_root sed -i "s/^# *\($name UTF-8\)/\1/" /etc/locale.gen
  grep -q "^$name UTF-8" /etc/locale.gen || echo "$name UTF-8" | as_root tee -a /etc/locale.gen >/dev/null
  as_root locale-gen >/dev/null
}

# Configures and builds in <repo>/build. Extra arguments are make targets
# (default: everything, tests included). With QUIET_BUILD=1 the compiler's
# output goes to build/build.log and is only shown when the build fails.
build_pgslotd() {
  local root=$1
  shift
  say "building in $root/build"
  if [ "${QUIET_BUILD:-0}" = 1 ]; then
    mkdir -p "$root/build"
    local log=$root/build/build.log
    # shellcheck disable=SC2086 # PGSLOTD_CMAKE_ARGS is a list of arguments
    if ! { cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      ${PGSLOTD_CMAKE_ARGS:-} &&
      make -C "$root/build" -j"$(nproc)" "$@"; } >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      die "the build failed; the whole log is $log"
    fi
  else
    # shellcheck disable=SC2086 # PGSLOTD_CMAKE_ARGS is a list of arguments
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${PGSLOTD_CMAKE_ARGS:-}
    make -C "$root/build" -j"$(nproc)" "$@"
  fi
}
