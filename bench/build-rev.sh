#!/usr/bin/env bash
# Builds pgslotd as it was at a git revision, for bench/run.sh --compare:
#
#   bash bench/build-rev.sh REV OUTDIR   # then: bash bench/run.sh --compare OUTDIR/pgslotd
#
# REV is anything git understands (a hash, a branch, main~3). The revision is
# checked out with `git worktree add --detach` in a temporary directory and
# built there with this tree's scripts/lib.sh (build_pgslotd, target pgslotd
# only), so both binaries of a comparison get the same build settings
# (RelWithDebInfo; PGSLOTD_CMAKE_ARGS is passed on). The binary is copied to
# OUTDIR/pgslotd, and OUTDIR/pgslotd.rev says which revision it is (run.sh
# shows it in the report). The worktree and its build are removed afterwards,
# however the script ends. The compiler's output goes to a log shown only when
# the build fails; QUIET_BUILD=0 shows it as it comes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

if [[ $# -ne 2 || $1 == -h || $1 == --help ]]; then
  echo "usage: bash bench/build-rev.sh REV OUTDIR   (builds OUTDIR/pgslotd at git revision REV)" >&2
  [[ $# -eq 1 && ($1 == -h || $1 == --help) ]] && exit 0
  exit 2
fi
rev=$1
out=$2

sha=$(git -C "$root" rev-parse --verify --quiet "$rev^{commit}") ||
  die "$rev is not a commit in $root"
desc=$(git -C "$root" log -1 --format='git %h (%cs): %s' "$sha")

tmp=$(mktemp -d /tmp/pgslotd-build-rev-XXXXXX)
src=$tmp/src

# shellcheck disable=SC2317  # called from the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -e $src/.git ]]; then
    git -C "$root" worktree remove --force "$src" ||
      echo "build-rev: could not remove the worktree $src; see git worktree list" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

say "checking out $desc in $src"
git -C "$root" worktree add --detach --quiet "$src" "$sha"
QUIET_BUILD=${QUIET_BUILD:-1} build_pgslotd "$src" pgslotd
[[ -x $src/build/pgslotd ]] || die "the build made no $src/build/pgslotd"

mkdir -p "$out"
cp "$src/build/pgslotd" "$out/pgslotd.tmp"
mv "$out/pgslotd.tmp" "$out/pgslotd"
printf '%s\n' "$desc" >"$out/pgslotd.rev"
say "built $out/pgslotd ($desc)"
