#!/usr/bin/env bash
# The checks run `bash -c '...' _ ARG`: single quotes on purpose.
# shellcheck disable=SC2016
#
# Package test: build the Debian package, install it, check what it put in
# place, purge it, check that it is gone.
#
#   bash tests/package/test_package.sh BUILD_DIR   # runs cpack -G DEB in BUILD_DIR
#   bash tests/package/test_package.sh --deb FILE  # tests an existing .deb
#
# BUILD_DIR must be a configured and built tree (cmake -S . -B BUILD_DIR &&
# make -C BUILD_DIR). Needs root, apt-get (dependencies of the .deb are
# resolved from the configured archive) and a machine where pgslotd is not
# installed: the test installs and purges the package for real, so it
# refuses to run where pgslotd is already installed.
#
# Works with or without a booted systemd (a container or chroot is fine):
# `systemd-analyze verify` only reads unit files. Where systemd is PID 1, it
# also checks that the service is enabled but not started by the install.
#
# Prints one PASS/FAIL line per check and "N passed, N failed" at the end;
# exits 0 only when every check passed, 1 when one failed, 77 when it cannot
# run here (not root, no apt-get, pgslotd already installed: ctest's
# SKIP_RETURN_CODE), 64 on a bad command line.
set -uo pipefail

usage() {
  echo "usage: $0 BUILD_DIR | --deb FILE" >&2
  exit 64
}
skip() {
  echo "$0: SKIP: $*" >&2
  exit 77
}

PKG=pgslotd
CONF=/etc/pgslotd/pgslotd.yaml
passed=0
failed=0

pass() {
  passed=$((passed + 1))
  printf 'PASS %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '     %s\n' "$line"; done
}
# check "<name>" command...: PASS when the command exits 0; its output is
# shown on failure.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name" "\$ $*" "${out:0:2000}"
  fi
}
note() { printf '     . %s\n' "$*"; }

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null)" = installed ]
}
# Package state as dpkg sees it: installed, config-files, not-installed.
pkg_state() {
  local s
  s=$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null) || s=not-installed
  echo "${s:-not-installed}"
}

# --- arguments ----------------------------------------------------------------

[ $# -ge 1 ] || usage
deb=""
build_dir=""
case "$1" in
  --deb)
    [ $# -eq 2 ] || usage
    deb=$(realpath -e "$2" 2>/dev/null) || { echo "no such file: $2" >&2; exit 64; }
    ;;
  -*) usage ;;
  *)
    [ $# -eq 1 ] || usage
    build_dir=$(realpath -e "$1" 2>/dev/null) || { echo "no such directory: $1" >&2; exit 64; }
    [ -f "$build_dir/CPackConfig.cmake" ] || {
      echo "$build_dir is not a configured build tree (no CPackConfig.cmake)" >&2
      exit 64
    }
    ;;
esac

[ "$(id -u)" -eq 0 ] || skip "needs root (installs and purges $PKG)"
command -v apt-get >/dev/null || skip "needs apt-get"
if [ "$(pkg_state)" != not-installed ]; then
  skip "$PKG is already on this machine ($(pkg_state)) and this test would" \
    "remove it; run it on a throwaway machine or container, or purge $PKG first"
fi

if [ -d /run/systemd/system ]; then booted=1; else booted=0; fi
# The package keeps its user on purge; a user this test made is removed at
# the end, so that the machine is left as it was.
if getent passwd pgslotd >/dev/null; then user_before=1; else user_before=0; fi
we_installed=0
cleanup() {
  if [ "$we_installed" = 1 ] && [ "$(pkg_state)" != not-installed ]; then
    echo "cleanup: purging $PKG" >&2
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "$PKG" >/dev/null 2>&1 || true
  fi
  if [ "$user_before" = 0 ] && getent passwd pgslotd >/dev/null; then
    userdel pgslotd >/dev/null 2>&1 || true
    if getent group pgslotd >/dev/null; then groupdel pgslotd >/dev/null 2>&1 || true; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build --------------------------------------------------------------------

if [ -n "$build_dir" ]; then
  out=$(cd "$build_dir" && cpack -G DEB 2>&1)
  rc=$?
  # The newest pgslotd_<version>_<arch>.deb in the build directory.
  # shellcheck disable=SC2012  # names are ours: pgslotd_<version>_<arch>.deb
  deb=$(ls -t "$build_dir"/${PKG}_*.deb 2>/dev/null | head -n 1)
  if [ $rc -eq 0 ] && [ -n "$deb" ]; then
    pass "cpack -G DEB builds $(basename "$deb")"
  else
    fail "cpack -G DEB builds the package" "${out: -2000}"
    printf '%d passed, %d failed\n' "$passed" "$failed"
    exit 1
  fi
fi

# --- the archive itself -------------------------------------------------------

name=$(dpkg-deb -f "$deb" Package 2>/dev/null)
version=$(dpkg-deb -f "$deb" Version 2>/dev/null)
arch=$(dpkg-deb -f "$deb" Architecture 2>/dev/null)
check "package is named $PKG" test "$name" = "$PKG"
check "file name is ${PKG}_<version>_<arch>.deb" \
  test "$(basename "$deb")" = "${PKG}_${version}_${arch}.deb"
contents=$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')
missing=()
for f in /usr/bin/pgslotd /usr/lib/systemd/system/pgslotd.service \
         /usr/lib/systemd/system/pgslotd@.service \
         /usr/lib/sysusers.d/pgslotd.conf /usr/lib/tmpfiles.d/pgslotd.conf \
         "$CONF" /etc/logrotate.d/pgslotd \
         /usr/share/man/man8/pgslotd.8.gz /usr/share/man/man5/pgslotd.yaml.5.gz \
         /usr/share/doc/pgslotd/copyright /usr/share/doc/pgslotd/changelog.gz \
         /usr/share/doc/pgslotd/README.md /usr/share/doc/pgslotd/config.md \
         /usr/share/doc/pgslotd/operations.md; do
  grep -qxF "$f" <<<"$contents" || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
  pass "archive holds the binary, units, sysusers, tmpfiles, config, logrotate, man pages, docs"
else
  fail "archive holds every expected file" "missing: ${missing[*]}"
fi
check "archive holds no /var/lib/pgslotd (tmpfiles creates it)" \
  bash -c '! grep -q "^/var/" <<<"$1"' _ "$contents"
ctl_conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null)
check "control archive lists the conffiles" \
  bash -c 'grep -qxF /etc/pgslotd/pgslotd.yaml <<<"$1" && grep -qxF /etc/logrotate.d/pgslotd <<<"$1"' _ "$ctl_conffiles"
depends=$(dpkg-deb -f "$deb" Depends)
check "Depends has the shared libraries (shlibdeps) and systemd-sysusers" \
  bash -c 'grep -q libpq5 <<<"$1" && grep -q librdkafka1 <<<"$1" && grep -q libc6 <<<"$1" && grep -q sysusers <<<"$1"' _ "$depends"

# --- install ------------------------------------------------------------------

# apt-get wants a path with a slash to take a file rather than a name.
out=$(cd "$(dirname "$deb")" && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q "./$(basename "$deb")" 2>&1)
rc=$?
we_installed=1
if [ $rc -eq 0 ] && installed; then
  pass "apt-get install -y ./$(basename "$deb")"
else
  fail "apt-get install -y ./$(basename "$deb")" "${out: -3000}"
  printf '%d passed, %d failed\n' "$passed" "$failed"
  exit 1
fi

check "pgslotd --version prints pgslotd $version" \
  bash -c '[ "$(/usr/bin/pgslotd --version)" = "pgslotd $1" ]' _ "$version"

# The user and group (systemd-sysusers in postinst).
pw=$(getent passwd pgslotd)
check "user pgslotd exists" test -n "$pw"
check "user pgslotd is a system user, home /var/lib/pgslotd, shell nologin" \
  bash -c 'IFS=: read -r _ _ uid _ _ home shell <<<"$1";
           [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/pgslotd ] &&
           [ "$shell" = /usr/sbin/nologin ]' _ "$pw"
check "group pgslotd exists" getent group pgslotd

# The directories (systemd-tmpfiles in postinst).
check "/var/lib/pgslotd is 750 pgslotd:pgslotd" \
  bash -c '[ "$(stat -c %a:%U:%G /var/lib/pgslotd)" = 750:pgslotd:pgslotd ]'
check "/etc/pgslotd is 755 root:root" \
  bash -c '[ "$(stat -c %a:%U:%G /etc/pgslotd)" = 755:root:root ]'

check "shipped config passes --check as the pgslotd user" \
  runuser -u pgslotd -- /usr/bin/pgslotd --config "$CONF" --check

unit=""
for d in /lib/systemd/system /usr/lib/systemd/system; do
  [ -f "$d/pgslotd.service" ] && { unit=$d/pgslotd.service; break; }
done
check "unit file installed" test -n "$unit"
if [ -n "$unit" ]; then
  # Without a booted systemd, verify still loads the unit from disk and checks
  # its settings and the ExecStart binary; it needs no running manager.
  check "systemd-analyze verify $unit" systemd-analyze verify "$unit"
  sec=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1 | tail -n 1)
  level=$(sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
  check "systemd-analyze security exposure ${level:-?} <= 2.5" \
    bash -c '[ -n "$1" ] && awk -v l="$1" "BEGIN { exit !(l <= 2.5) }"' _ "$level"
  # The template (pgslotd@NAME.service: /etc/pgslotd/NAME.yaml) is made from
  # the same source and sandboxed the same way.
  template=$(dirname "$unit")/pgslotd@.service
  check "systemd-analyze verify $template" systemd-analyze verify "$template"
  sec=$(systemd-analyze security --offline=true --no-pager "$template" 2>&1 | tail -n 1)
  level=$(sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$sec")
  check "template: systemd-analyze security exposure ${level:-?} <= 2.5" \
    bash -c '[ -n "$1" ] && awk -v l="$1" "BEGIN { exit !(l <= 2.5) }"' _ "$level"
  check "template runs /etc/pgslotd/%i.yaml in pgslotd/%i" \
    bash -c 'grep -q "^ExecStart=/usr/bin/pgslotd --config /etc/pgslotd/%i.yaml$" "$1" &&
             grep -q "^StateDirectory=pgslotd/%i$" "$1" && grep -q "^RuntimeDirectory=pgslotd/%i$" "$1"' \
    _ "$template"
fi

# Enabled by the install, not started (see packaging/debian/postinst).
check "pgslotd.service is enabled (multi-user.target.wants link)" \
  test -L /etc/systemd/system/multi-user.target.wants/pgslotd.service
if [ "$booted" = 1 ]; then
  check "pgslotd.service was not started by the install" \
    bash -c '! systemctl --quiet is-active pgslotd.service'
else
  note "no booted systemd: not checking the service state"
fi

if command -v man >/dev/null; then
  check "man -w pgslotd" man -w pgslotd
  check "man -w 5 pgslotd.yaml" man -w 5 pgslotd.yaml
else
  note "man-db is not installed: man page lookups not checked"
fi

conffiles=$(dpkg-query -W -f='${Conffiles}' "$PKG" 2>&1)
check "dpkg knows $CONF and /etc/logrotate.d/pgslotd as conffiles" \
  bash -c 'grep -q " /etc/pgslotd/pgslotd.yaml " <<<"$1" &&
           grep -q " /etc/logrotate.d/pgslotd " <<<"$1"' _ "$conffiles"

if command -v logrotate >/dev/null; then
  check "logrotate accepts /etc/logrotate.d/pgslotd" \
    logrotate -d /etc/logrotate.d/pgslotd
else
  note "logrotate is not installed (it is only recommended): snippet not checked"
fi

# --- purge --------------------------------------------------------------------

out=$(DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "$PKG" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ "$(pkg_state)" = not-installed ]; then
  pass "apt-get purge -y $PKG"
else
  fail "apt-get purge -y $PKG" "state: $(pkg_state)" "${out: -3000}"
fi
we_installed=0
check "/usr/bin/pgslotd is gone" test ! -e /usr/bin/pgslotd
check "the unit is gone" \
  bash -c '[ ! -e /lib/systemd/system/pgslotd.service ] && [ ! -e /usr/lib/systemd/system/pgslotd.service ]'
check "/etc/pgslotd is gone" test ! -e /etc/pgslotd
check "/var/lib/pgslotd is gone" test ! -e /var/lib/pgslotd
check "/etc/logrotate.d/pgslotd is gone" test ! -e /etc/logrotate.d/pgslotd
check "no enablement link or mask is left" \
  bash -c '[ ! -e /etc/systemd/system/multi-user.target.wants/pgslotd.service ] &&
           [ ! -L /etc/systemd/system/multi-user.target.wants/pgslotd.service ] &&
           [ ! -L /etc/systemd/system/pgslotd.service ]'
# The user stays on purge, on purpose (packaging/debian/postrm).
check "user pgslotd is kept after purge (documented)" getent passwd pgslotd

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
