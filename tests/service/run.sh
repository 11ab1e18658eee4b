#!/usr/bin/env bash
# Service test: pgslotd under a real systemd.
#
#   bash tests/service/run.sh <pgslotd binary> <pgslotd.service unit file>
#
# Boots a throwaway systemd container over this machine's /usr
# (systemd-nspawn --volatile=yes: the container's root is a tmpfs, /usr is
# the host's, read-only), installs the unit file in it as-is (a drop-in only
# points its Exec lines at the binary under test, bind-mounted read-only at
# /opt/pgslotd/pgslotd), and checks what an operator would check with
# systemctl and journalctl: Type=notify start, the file sink, journal fields,
# STATUS=, reload (a new slot starts, an unchanged one keeps its walsender), a
# broken config on reload, `pgslotd --status` from a shell, a second
# instance from the template unit pgslotd@.service (found next to the unit
# file) with directories of its own, the watchdog, and a clean stop.
#
# PostgreSQL 15 runs on the host, in a temporary directory, on 127.0.0.1 and a
# free port; the container shares the host's network, so the daemon reaches
# it over TCP.
#
# Needs root. Installs what is missing with apt-get (Debian 12). Prints one
# PASS/FAIL line per check and ends with "N passed, N failed"; exits 0 only
# when every check passed. Whatever happens, the container is powered off (or
# killed), the PostgreSQL cluster stopped and the temporary directory removed,
# also when this script is killed (a small guard process watches it).
set -uo pipefail
# CTest may give us a bare environment and no stdin.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
exec </dev/null

usage() {
  echo "error: $*" >&2
  echo "usage: $0 <pgslotd binary> <pgslotd.service unit file>" >&2
  echo "0 passed, 1 failed"
  exit 64
}
[ $# -eq 2 ] || usage "expected 2 arguments, got $#"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/lib.sh
source "$root/scripts/lib.sh"  # say, ensure_packages, PG_BINDIR

BIN=$(realpath -e "$1" 2>/dev/null) || usage "no such binary: $1"
UNIT=$(realpath -e "$2" 2>/dev/null) || usage "no such unit file: $2"
TEMPLATE=$(dirname "$UNIT")/pgslotd@.service
[ -f "$TEMPLATE" ] || usage "no template unit next to the unit file: $TEMPLATE"

# Inside the container.
C_BIN=/opt/pgslotd/pgslotd
C_CONF=/etc/pgslotd/pgslotd.yaml
C_STATE=/var/lib/pgslotd
C_DROPIN_DIR=/etc/systemd/system/pgslotd.service.d

# ---------------------------------------------------------------------------
# Results

passed=0
failed=0
declare -a results=()
check_reasons=()
skip_diagnostics=0  # set by a check whose failure adds nothing to the last dump

# Records a reason the current check fails; the check goes on collecting.
bad() {
  check_reasons+=("$*")
  printf '     ! %s\n' "$*"
}
info() {
  printf '     . %s\n' "$*"
}

# run_check "<number and name>" <function>: the function calls bad() for
# every broken expectation; the check passes when there is none.
run_check() {
  local name=$1 fn=$2 start=$SECONDS
  check_reasons=()
  skip_diagnostics=0
  say "check $name"
  "$fn"
  local took=$((SECONDS - start))
  if [ ${#check_reasons[@]} -eq 0 ]; then
    passed=$((passed + 1))
    results+=("PASS $name (${took}s)")
    printf 'PASS %s (%ss)\n' "$name" "$took"
  else
    failed=$((failed + 1))
    results+=("FAIL $name: ${check_reasons[0]}")
    printf 'FAIL %s (%ss): %s\n' "$name" "$took" "${check_reasons[0]}"
    [ "$skip_diagnostics" = 1 ] || diagnostics
  fi
}

# A failure outside the checks (setup): counted, then the script ends.
setup_failed() {
  failed=$((failed + 1))
  results+=("FAIL setup: $*")
  printf 'FAIL setup: %s\n' "$*"
  exit 1
}

# ---------------------------------------------------------------------------
# State and clean-up

WORK=""
PG_DATA=""
PORT=""
NSPAWN_PID=""
CPID=""  # the container's PID 1, as seen from the host
GUARD_PID=""
MACHINE="pgslotd-svc-$$"
CG_DIRS=()  # the container's own cgroup subtrees (see isolated_cgroups)
started_at=$SECONDS

stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    say "powering the container off"
    if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
      inside_t 15 systemctl poweroff --no-block >/dev/null 2>&1 || true
    else
      kill -TERM "$NSPAWN_PID" 2>/dev/null || true
    fi
    local i
    for ((i = 0; i < 200; i++)); do
      kill -0 "$NSPAWN_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
      say "the container did not power off within 20 s: killing it"
      # Killing the init of a PID namespace kills every process in it.
      [ -n "$CPID" ] && kill -KILL "$CPID" 2>/dev/null
      kill -KILL "$NSPAWN_PID" 2>/dev/null
    fi
  fi
  wait "$NSPAWN_PID" 2>/dev/null
  # systemd-nspawn leaves this (empty) directory behind when it is killed.
  rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null
  NSPAWN_PID=""
  CPID=""
  remove_cgroups
}

# Removes the cgroup subtrees made for the container, deepest first; their
# last processes may take a moment to be gone.
remove_cgroups() {
  local d i
  for d in "${CG_DIRS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      [ -d "$d" ] || break
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$d" ] || break
      sleep 0.1
    done
    [ -d "$d" ] && echo "warning: could not remove the cgroup $d" >&2
  done
  CG_DIRS=()
}

stop_postgres() {
  [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ] || return 0
  say "stopping PostgreSQL"
  runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w -t 20 stop >/dev/null 2>&1 ||
    runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
    true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_container
  stop_postgres
  if [ -n "$GUARD_PID" ]; then
    kill "$GUARD_PID" 2>/dev/null
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_WORK:-0}" = 1 ]; then
      say "keeping $WORK (KEEP_WORK=1)"
    else
      rm -rf "$WORK"
    fi
  fi
  echo
  say "results ($((SECONDS - started_at)) s):"
  local r
  for r in "${results[@]}"; do echo "  $r"; done
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # ended early without a recorded failure (a signal)
  fi
  echo "$passed passed, $failed failed"
  if [ "$failed" -ne 0 ]; then exit 1; fi
  exit 0
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM HUP

# If this script is killed outright (SIGKILL, e.g. a test timeout), the guard
# does the clean-up: it polls for our death in its own session, then kills the
# container, stops the server and removes the directory.
start_guard() {
  local parent=$$ work=$1
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c '
    parent=$1; work=$2; bindir=$3; machine=$4
    trap "" INT TERM HUP
    while kill -0 "$parent" 2>/dev/null; do sleep 1; done
    [ -d "$work" ] || exit 0
    for f in "$work"/container.pid "$work"/nspawn.pid; do
      p=$(cat "$f" 2>/dev/null) || continue
      [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
    done
    sleep 1
    while read -r d; do
      [ -n "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done <"$work/cgroups"
    if [ -f "$work/pg/data/postmaster.pid" ]; then
      runuser -u postgres -- "$bindir/pg_ctl" -D "$work/pg/data" -m immediate -w -t 10 stop
    fi
    rm -rf "$work"
    sleep 1
    rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null
  ' guard "$parent" "$work" "$PG_BINDIR" "$MACHINE" </dev/null >/dev/null 2>&1 &
  GUARD_PID=$!
}

# ---------------------------------------------------------------------------
# Helpers

# Runs a command inside the container (all its namespaces), with a clean
# environment and a time limit.
inside_t() {
  local limit=$1
  shift
  timeout -k 5 "$limit" nsenter -t "$CPID" -a -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb "$@"
}
inside() { inside_t 60 "$@"; }

# Writes stdin to a file inside the container.
put_file() {
  local path=$1 mode=${2:-0644} owner=${3:-root:root}
  # shellcheck disable=SC2016 # expanded by the inner sh
  inside sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1" && chown "$3" "$1"' \
    put "$path" "$mode" "$owner"
}

# One value of `systemctl show pgslotd`.
prop() {
  inside systemctl show pgslotd -p "$1" --value 2>/dev/null
}

sql() {
  "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres \
    -d postgres -c "$1"
}

slot_field() {  # slot_field <slot> <column of pg_replication_slots>
  sql "SELECT $2 FROM pg_replication_slots WHERE slot_name = '$1'" 2>/dev/null
}

# The container's realtime clock (the same as the host's), for --since.
now_epoch() { date +%s.%N | cut -c1-17; }

# Journal lines of the unit since a moment (epoch seconds), as text.
journal_since() {
  inside journalctl --no-pager -q -u pgslotd --since "@$1" "${@:2}" 2>/dev/null
}

# wait_until <seconds> <command...>: polls every 0.25 s; 0 once it succeeds.
wait_until() {
  local limit=$1 deadline
  shift
  deadline=$(($(date +%s%N) + limit * 1000000000))
  while :; do
    if "$@"; then return 0; fi
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

diagnostics() {
  [ -n "$CPID" ] || return 0
  echo "     --- systemctl status pgslotd ---"
  inside systemctl status pgslotd --no-pager -l -n 0 2>&1 | sed 's/^/     | /'
  echo "     --- journalctl -u pgslotd (last 25) ---"
  inside journalctl --no-pager -q -u pgslotd -n 25 2>&1 | sed 's/^/     | /'
}

write_config() {  # write_config <slot>...: svc_a, optionally svc_b
  {
    echo "# written by tests/service/run.sh"
    echo "connection: \"host=127.0.0.1 port=$PORT user=postgres dbname=postgres\""
    echo "slots:"
    local s
    for s in "$@"; do
      echo "  - name: $s"
      echo "    plugin: test_decoding"
      [ "$s" = svc_a ] || echo "    create: true"
      echo "    sink:"
      echo "      type: file"
      echo "      path: $C_STATE/$s.log"
    done
  } | put_file "$C_CONF" 0640 root:pgslotd
}

# The drop-in that points every Exec line of unit file $1 that runs the
# packaged binary at the binary under test, keeping its arguments and
# prefixes. Only the executable (the first word after the prefixes) is
# replaced.
exec_dropin() {
  awk -v newbin="$C_BIN" '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    # Joins backslash-continued lines.
    { line = pending $0; if (sub(/\\$/, "", line)) { pending = line " "; next } pending = "" }
    /^[ \t]*\[/ { section = trim(line); next }
    section != "[Service]" { next }
    {
      eq = index(line, "="); if (eq == 0) next
      key = trim(substr(line, 1, eq - 1)); val = trim(substr(line, eq + 1))
      if (key !~ /^Exec(Condition|StartPre|Start|StartPost|Reload|Stop|StopPost)$/) next
      if (val == "") { n[key] = 0; next }  # a reset in the unit itself
      n[key]++; v[key, n[key]] = val
      if (key == "ExecStart") start = val
    }
    END {
      cmd = start; while (cmd ~ /^[-@:+!]/) cmd = substr(cmd, 2)
      split(cmd, w, /[ \t]+/); oldbin = w[1]
      if (oldbin == "") { print "no ExecStart= in the unit" > "/dev/stderr"; exit 1 }
      print "# written by tests/service/run.sh: run the binary under test"
      print "[Service]"
      nk = split("ExecCondition ExecStartPre ExecStart ExecStartPost ExecReload ExecStop ExecStopPost", keys, " ")
      for (k = 1; k <= nk; k++) {
        key = keys[k]; out = ""; hit = 0
        for (i = 1; i <= n[key]; i++) {
          val = v[key, i]; match(val, /^[-@:+!]*/); pre = substr(val, 1, RLENGTH)
          rest = substr(val, RLENGTH + 1); split(rest, w, /[ \t]+/)
          if (w[1] == oldbin) { rest = newbin substr(rest, length(oldbin) + 1); hit = 1 }
          out = out key "=" pre rest "\n"
        }
        if (hit) printf "%s=\n%s", key, out
      }
    }
  ' "$1"
}

# ---------------------------------------------------------------------------
# Setup

if [ "$(id -u)" -ne 0 ]; then
  setup_failed "must run as root (systemd-nspawn, nsenter, the postgres user)"
fi

say "pgslotd service test: binary $BIN, unit $UNIT"
export DEBIAN_FRONTEND=noninteractive
ensure_packages systemd systemd-container postgresql-15 postgresql-client-15 procps util-linux ||
  setup_failed "could not install the packages this test needs"
[ -x "$PG_BINDIR/initdb" ] || setup_failed "no $PG_BINDIR/initdb"

dropin=$(exec_dropin "$UNIT") || setup_failed "cannot find the binary in the unit's ExecStart= ($UNIT)"
template_dropin=$(exec_dropin "$TEMPLATE") ||
  setup_failed "cannot find the binary in the template's ExecStart= ($TEMPLATE)"

WORK=$(mktemp -d /tmp/pgslotd-svc-XXXXXX) || setup_failed "mktemp failed"
chmod 0755 "$WORK"
start_guard "$WORK"

# PostgreSQL 15 on the host.
mkdir -p "$WORK/pg"
chown postgres: "$WORK/pg"
PG_DATA=$WORK/pg/data
say "initdb in $PG_DATA"
runuser -u postgres -- "$PG_BINDIR/initdb" -D "$PG_DATA" -U postgres -A trust --no-sync \
  -E UTF8 --locale=C >"$WORK/pg/initdb.log" 2>&1 ||
  { cat "$WORK/pg/initdb.log"; setup_failed "initdb failed"; }
pg_started=0
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 30000))
  if (: </dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then continue; fi  # taken
  cat >"$PG_DATA/postgresql.auto.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/pg'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
fsync = off
EOF
  say "starting PostgreSQL on 127.0.0.1:$PORT (attempt $attempt)"
  if runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/server.log" -w -t 30 \
    start >/dev/null 2>&1; then
    pg_started=1
    break
  fi
  tail -n 5 "$WORK/pg/server.log" 2>/dev/null
done
[ "$pg_started" = 1 ] || setup_failed "PostgreSQL did not start (see above)"
sql "CREATE TABLE svc_items (id serial PRIMARY KEY, note text NOT NULL)" ||
  setup_failed "CREATE TABLE failed"
sql "SELECT 1 FROM pg_create_logical_replication_slot('svc_a', 'test_decoding')" >/dev/null ||
  setup_failed "creating slot svc_a failed"

# The container gets cgroups of its own. With --keep-unit, systemd-nspawn
# puts the container under "<our cgroup>/payload"; on a host whose PID 1 is
# not systemd our cgroup is often the root, so every such container on the
# machine would share /payload/system.slice/... and each container's systemd
# would see (and fail to manage: "Input/output error") the others' processes.
# So the shell that becomes systemd-nspawn first moves into a fresh child of
# its cgroup, in the systemd-tracking hierarchies (name=systemd and the
# unified one).
isolated_cgroups() {
  local lines line ctrl path base
  mapfile -t lines </proc/self/cgroup
  for line in "${lines[@]}"; do
    ctrl=${line#*:}
    path=${ctrl#*:}
    ctrl=${ctrl%%:*}
    case $ctrl in
      "")
        if [ -f /sys/fs/cgroup/cgroup.controllers ]; then base=/sys/fs/cgroup; else base=/sys/fs/cgroup/unified; fi
        ;;
      name=systemd) base=/sys/fs/cgroup/systemd ;;
      *) continue ;;
    esac
    if ! [ -d "$base$path" ] || ! [ -w "$base$path" ]; then continue; fi
    CG_DIRS+=("$base${path%/}/$MACHINE")
  done
}
isolated_cgroups
printf '%s\n' "${CG_DIRS[@]}" >"$WORK/cgroups"

# The container.
BOOT_CMD=(systemd-nspawn --directory=/ --volatile=yes --machine="$MACHINE" --register=no
  --keep-unit --bind-ro="$BIN:$C_BIN" --boot -- systemd.firstboot=off)
say "booting: ${BOOT_CMD[*]}"
(
  for d in "${CG_DIRS[@]}"; do
    mkdir -p "$d" && echo "$BASHPID" >"$d/cgroup.procs" ||
      echo "warning: could not move into the cgroup $d" >&2
  done
  exec "${BOOT_CMD[@]}"
) </dev/null >"$WORK/container.log" 2>&1 &
NSPAWN_PID=$!
echo "$NSPAWN_PID" >"$WORK/nspawn.pid"
boot_start=$SECONDS
for ((i = 0; i < 150; i++)); do
  CPID=$(pgrep -P "$NSPAWN_PID" | head -n 1)
  [ -n "$CPID" ] && [ "$(cat "/proc/$CPID/comm" 2>/dev/null)" = systemd ] && break
  CPID=""
  kill -0 "$NSPAWN_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$CPID" ]; then
  tail -n 30 "$WORK/container.log"
  setup_failed "systemd-nspawn did not start a systemd (log above)"
fi
echo "$CPID" >"$WORK/container.pid"
state=""
for ((i = 0; i < 240; i++)); do
  state=$(inside_t 10 systemctl is-system-running 2>/dev/null)
  case $state in running | degraded) break ;; esac
  kill -0 "$CPID" 2>/dev/null || break
  sleep 0.25
done
case $state in
  running | degraded)
    say "container booted in $((SECONDS - boot_start)) s: system $state (host pid of its PID 1: $CPID, cgroup $(grep '^0::' "/proc/$CPID/cgroup" | cut -d: -f3))"
    ;;
  *)
    tail -n 30 "$WORK/container.log"
    setup_failed "the container's systemd did not finish booting within 60 s (state: ${state:-none})"
    ;;
esac
if [ "$state" = degraded ]; then
  info "failed units in the container: $(inside systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')"
fi

# Install pgslotd the way a package would.
say "installing pgslotd in the container"
# The package's sysusers.d snippet when the tree has one (in /etc/sysusers.d
# here: the container's /usr is read-only), else an equivalent line.
if [ -f "$root/packaging/pgslotd.sysusers.conf" ]; then
  info "user from packaging/pgslotd.sysusers.conf"
  put_file /etc/sysusers.d/pgslotd.conf <"$root/packaging/pgslotd.sysusers.conf" ||
    setup_failed "cannot write the sysusers.d snippet"
else
  printf 'u pgslotd - "pgslotd change-data-capture daemon" %s\n' "$C_STATE" |
    put_file /etc/sysusers.d/pgslotd.conf || setup_failed "cannot write the sysusers.d snippet"
fi
inside systemd-sysusers pgslotd.conf || setup_failed "systemd-sysusers failed"
inside id pgslotd >/dev/null || setup_failed "no pgslotd user after systemd-sysusers"
put_file /etc/systemd/system/pgslotd.service <"$UNIT" || setup_failed "cannot install the unit"
put_file /etc/systemd/system/pgslotd@.service <"$TEMPLATE" ||
  setup_failed "cannot install the template unit"
printf '%s\n' "$template_dropin" |
  put_file /etc/systemd/system/pgslotd@.service.d/10-binary-under-test.conf ||
  setup_failed "cannot write the template's drop-in"
printf '%s\n' "$dropin" | put_file "$C_DROPIN_DIR/10-binary-under-test.conf" ||
  setup_failed "cannot write the drop-in"
printf '%s\n' "$dropin" | sed 's/^/     | /'
if ! grep -qE '^[[:space:]]*StateDirectory[[:space:]]*=.*\bpgslotd\b' "$UNIT"; then
  # No StateDirectory= in the unit: make the directory like a package would.
  info "the unit has no StateDirectory=pgslotd: creating $C_STATE (pgslotd, 0750)"
  inside install -d -o pgslotd -g pgslotd -m 0750 "$C_STATE" || setup_failed "cannot create $C_STATE"
fi
write_config svc_a || setup_failed "cannot write $C_CONF"
inside "$C_BIN" --config "$C_CONF" --check || setup_failed "pgslotd --check refuses the test config"
inside systemctl daemon-reload || setup_failed "systemctl daemon-reload failed"
# (Documentation=man:... lines fail here: the man pages are not installed.)
verify=$(inside systemd-analyze verify /etc/systemd/system/pgslotd.service 2>&1 | grep -v "Command 'man ")
[ -z "$verify" ] || { info "systemd-analyze verify says:"; printf '%s\n' "$verify" | sed 's/^/     | /'; }

# ---------------------------------------------------------------------------
# Checks

insert_marker() {  # inserts a row whose note is $1
  sql "INSERT INTO svc_items (note) VALUES ('$1')"
}
file_has() { inside grep -qF -- "$2" "$1" 2>/dev/null; }
is_active() { [ "$(inside systemctl is-active pgslotd 2>/dev/null)" = active ]; }
# Checks after the first need a running service; without one they fail at
# once instead of waiting for things that cannot happen.
require_active() {
  is_active && return 0
  skip_diagnostics=1
  bad "pgslotd is not active (ActiveState=$(prop ActiveState), SubState=$(prop SubState), Result=$(prop Result)): cannot check this"
  return 1
}
# For the checks that do not depend on the earlier ones (watchdog, stop): a
# service left failed or stopped by an earlier check is started again first.
ensure_active() {
  is_active && return 0
  info "pgslotd is $(inside systemctl is-active pgslotd) (Result=$(prop Result)): starting it for this check"
  inside systemctl reset-failed pgslotd >/dev/null 2>&1
  inside_t 45 systemctl start pgslotd >/dev/null 2>&1
  require_active
}

check_start() {
  local out rc
  out=$(inside_t 45 systemctl start pgslotd 2>&1)
  rc=$?
  if [ "$rc" -eq 124 ]; then
    bad "systemctl start pgslotd did not return within 45 s (no READY=1?)"
  elif [ "$rc" -ne 0 ]; then
    bad "systemctl start pgslotd exited $rc: $out"
  fi
  local state
  state=$(inside systemctl is-active pgslotd)
  [ "$state" = active ] || bad "right after systemctl start, is-active says '$state', not 'active'"
  info "Type=$(prop Type), MainPID=$(prop MainPID), status: $(prop StatusText)"
}

check_file_sink() {
  require_active || return
  local marker="svc-a-first-$RANDOM$RANDOM"
  insert_marker "$marker" || { bad "INSERT on the host failed"; return; }
  if ! wait_until 20 file_has "$C_STATE/svc_a.log" "$marker"; then
    bad "the INSERT ('$marker') did not reach $C_STATE/svc_a.log within 20 s"
    info "$C_STATE: $(inside ls -la "$C_STATE" 2>&1 | tr '\n' ';')"
    return
  fi
  info "$(inside grep -F -- "$marker" "$C_STATE/svc_a.log")"
  local st
  st=$(inside stat -c '%U %a' "$C_STATE/svc_a.log")
  [ "$st" = "pgslotd 600" ] || bad "$C_STATE/svc_a.log is '$st' (owner, mode), expected 'pgslotd 600'"
}

journal_has_slot_a() {
  [ -n "$(inside journalctl --no-pager -q -u pgslotd SLOT=svc_a -o cat)" ]
}
check_journal() {
  require_active || return
  local n verbose ids
  # The daemon's entries reach journald right away, but give it a moment.
  wait_until 5 journal_has_slot_a
  n=$(inside journalctl --no-pager -q -u pgslotd SLOT=svc_a -o cat | wc -l)
  if [ "$n" -eq 0 ]; then
    bad "journalctl -u pgslotd SLOT=svc_a shows no entries"
    return
  fi
  info "journalctl -u pgslotd SLOT=svc_a: $n entries, e.g.: $(inside journalctl --no-pager -q -u pgslotd SLOT=svc_a -o cat -n 1)"
  verbose=$(inside journalctl --no-pager -q -u pgslotd SLOT=svc_a -o verbose)
  ids=$(grep -oE '^[[:space:]]+MESSAGE_ID=[0-9a-f]+' <<<"$verbose" | sort | uniq -c | sed 's/^ *//' | tr -s ' \n' ' ')
  if [ -z "$ids" ]; then
    bad "no MESSAGE_ID= field on any SLOT=svc_a entry (journalctl -u pgslotd -o verbose)"
  else
    info "MESSAGE_ID on SLOT=svc_a entries (count id): $ids"
  fi
  grep -qE '^[[:space:]]+SYSLOG_IDENTIFIER=pgslotd$' <<<"$verbose" ||
    bad "the SLOT=svc_a entries lack SYSLOG_IDENTIFIER=pgslotd"
}

status_mentions_svc_a() { [[ $(prop StatusText) == *svc_a* ]]; }
check_status() {
  require_active || return
  if ! wait_until 15 status_mentions_svc_a; then
    bad "systemctl show pgslotd -p StatusText does not mention svc_a within 15 s: 'StatusText=$(prop StatusText)'"
    return
  fi
  info "StatusText=$(prop StatusText)"
}

PID_A=""
slot_active() { [ "$(slot_field "$1" active)" = t ]; }
check_reload_new_slot() {
  require_active || return
  PID_A=$(slot_field svc_a active_pid)
  if [ -z "$PID_A" ]; then
    bad "svc_a has no active walsender on the server before the reload"
    return
  fi
  info "svc_a active_pid before the reload: $PID_A"
  [ -z "$(slot_field svc_b slot_name)" ] || info "slot svc_b already exists on the server"
  write_config svc_a svc_b || { bad "cannot write the config"; return; }
  local out rc
  out=$(inside_t 45 systemctl reload pgslotd 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || bad "systemctl reload pgslotd exited $rc: $out"
  if ! wait_until 20 slot_active svc_b; then
    bad "svc_b is not active on the server 20 s after the reload (slot exists: $([ -n "$(slot_field svc_b slot_name)" ] && echo yes || echo no))"
  else
    info "svc_b active, active_pid $(slot_field svc_b active_pid)"
    local marker="svc-b-first-$RANDOM$RANDOM"
    insert_marker "$marker" || bad "INSERT on the host failed"
    if wait_until 20 file_has "$C_STATE/svc_b.log" "$marker"; then
      info "$(inside grep -F -- "$marker" "$C_STATE/svc_b.log")"
    else
      bad "the INSERT ('$marker') did not reach $C_STATE/svc_b.log within 20 s"
    fi
    wait_until 20 file_has "$C_STATE/svc_a.log" "$marker" ||
      bad "after the reload, the INSERT ('$marker') did not reach svc_a.log within 20 s"
  fi
  local pid_after
  pid_after=$(slot_field svc_a active_pid)
  [ "$pid_after" = "$PID_A" ] ||
    bad "svc_a's walsender changed across the reload: active_pid $PID_A before, '$pid_after' after (the slot was restarted)"
  is_active || bad "after the reload, is-active says '$(inside systemctl is-active pgslotd)'"
  info "status: $(prop StatusText)"
}

config_error_logged() {
  journal_since "$1" -p warning -o cat | grep -qiE 'pgslotd\.yaml|config'
}
check_broken_reload() {
  require_active || return
  local pid_a pid_b since out rc
  pid_a=$(slot_field svc_a active_pid)
  pid_b=$(slot_field svc_b active_pid)
  [ -n "$pid_a" ] || bad "svc_a has no active walsender before the broken reload"
  local main_before
  main_before=$(prop MainPID)
  since=$(now_epoch)
  sleep 0.1
  printf 'connection: "host=127.0.0.1 port=%s user=postgres dbname=postgres"\nslots:\n  - name: [svc_a\n    sink: {type: file\n' \
    "$PORT" | put_file "$C_CONF" 0640 root:pgslotd || { bad "cannot write the broken config"; return; }
  out=$(inside_t 45 systemctl reload pgslotd 2>&1)
  rc=$?
  info "systemctl reload with invalid YAML exited $rc${out:+: $out}"
  if wait_until 10 config_error_logged "$since"; then
    info "journal: $(journal_since "$since" -p warning -o cat | grep -iE 'pgslotd\.yaml|config' | head -n 3 | tr '\n' '|')"
  else
    bad "no warning/error in journalctl -u pgslotd mentioning the config within 10 s of the broken reload"
    info "journal since the reload: $(journal_since "$since" -o cat | tail -n 5 | tr '\n' '|')"
  fi
  sleep 1
  is_active || bad "after the broken reload, is-active says '$(inside systemctl is-active pgslotd)', not 'active'"
  [ "$(prop MainPID)" = "$main_before" ] || bad "MainPID changed across the broken reload: $main_before -> $(prop MainPID)"
  local now_a now_b
  now_a=$(slot_field svc_a active_pid)
  now_b=$(slot_field svc_b active_pid)
  [ "$now_a" = "$pid_a" ] || bad "svc_a's active_pid changed across the broken reload: $pid_a -> '$now_a'"
  [ "$now_b" = "$pid_b" ] || bad "svc_b's active_pid changed across the broken reload: $pid_b -> '$now_b'"
  # Restore the good configuration and reload it: nothing changes.
  write_config svc_a svc_b || { bad "cannot restore the config"; return; }
  out=$(inside_t 45 systemctl reload pgslotd 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || bad "systemctl reload with the restored config exited $rc: $out"
  sleep 1
  is_active || bad "after restoring the config, is-active says '$(inside systemctl is-active pgslotd)'"
  now_a=$(slot_field svc_a active_pid)
  [ "$now_a" = "$pid_a" ] || bad "svc_a's active_pid changed when the unchanged good config was reloaded: $pid_a -> '$now_a'"
  local marker="svc-after-restore-$RANDOM$RANDOM"
  insert_marker "$marker" || bad "INSERT on the host failed"
  wait_until 20 file_has "$C_STATE/svc_a.log" "$marker" ||
    bad "after the restored config, an INSERT did not reach svc_a.log within 20 s"
}

status_lists() {  # status_lists <config> <word>...: --status from a shell shows each
  local out w
  out=$(inside "$C_BIN" --config "$1" --status 2>&1) || return 1
  for w in "${@:2}"; do [[ $out == *"$w"* ]] || return 1; done
}
check_status_from_a_shell() {
  require_active || return
  # A root shell has none of the unit's environment: the paths follow from
  # the config file's name alone.
  if ! wait_until 10 status_lists "$C_CONF" "svc_a: streaming;" "svc_b: streaming;"; then
    bad "pgslotd --config $C_CONF --status from a shell does not show svc_a and svc_b streaming: $(inside "$C_BIN" --config "$C_CONF" --status 2>&1 | tr '\n' '|')"
    return
  fi
  info "$(inside "$C_BIN" --config "$C_CONF" --status 2>&1 | head -n 1)"
  local sock
  sock=$(inside stat -c '%U:%G %a' /run/pgslotd/pgslotd.sock 2>&1)
  [ "$sock" = "pgslotd:pgslotd 660" ] || bad "/run/pgslotd/pgslotd.sock is '$sock', expected 'pgslotd:pgslotd 660'"
  inside "$C_BIN" --config "$C_CONF" --status --json | grep -q '"name":"svc_a","state":"streaming"' ||
    bad "--status --json does not show svc_a streaming"
}

C_CONF2=/etc/pgslotd/second.yaml
C_STATE2=$C_STATE/second
instance_active() { [ "$(inside systemctl is-active pgslotd@second 2>/dev/null)" = active ]; }
check_template_instance() {
  require_active || return
  {
    echo "# written by tests/service/run.sh"
    echo "connection: \"host=127.0.0.1 port=$PORT user=postgres dbname=postgres\""
    echo "slots:"
    echo "  - {name: svc_c, plugin: test_decoding, create: true, sink: {type: file, path: $C_STATE2/svc_c.log}}"
  } | put_file "$C_CONF2" 0640 root:pgslotd || { bad "cannot write $C_CONF2"; return; }
  local out rc
  out=$(inside_t 45 systemctl start pgslotd@second 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || { bad "systemctl start pgslotd@second exited $rc: $out"; return; }
  instance_active || { bad "pgslotd@second is $(inside systemctl is-active pgslotd@second)"; return; }
  local marker="svc-c-first-$RANDOM$RANDOM"
  insert_marker "$marker" || bad "INSERT on the host failed"
  wait_until 20 file_has "$C_STATE2/svc_c.log" "$marker" ||
    bad "the INSERT ('$marker') did not reach $C_STATE2/svc_c.log within 20 s"
  inside test -f "$C_STATE2/pgslotd.lock" || bad "no lock file in $C_STATE2"
  inside test -f "$C_STATE2/svc_c.state" || bad "no state record in $C_STATE2"
  wait_until 10 status_lists "$C_CONF2" "svc_c: streaming;" ||
    bad "pgslotd --config $C_CONF2 --status does not show svc_c streaming: $(inside "$C_BIN" --config "$C_CONF2" --status 2>&1 | tr '\n' '|')"
  status_lists "$C_CONF" "svc_a:" && ! status_lists "$C_CONF" "svc_c" ||
    bad "the main daemon's --status mixes in the instance's slots"
  # Stopping the main service leaves the instance's runtime directory (its
  # control socket) alone.
  out=$(inside_t 60 systemctl stop pgslotd 2>&1) || bad "systemctl stop pgslotd failed: $out"
  inside test -S /run/pgslotd/second/pgslotd.sock ||
    bad "stopping pgslotd.service removed /run/pgslotd/second/pgslotd.sock"
  status_lists "$C_CONF2" "svc_c: streaming;" ||
    bad "pgslotd@second does not answer --status after pgslotd.service stopped"
  instance_active || bad "pgslotd@second stopped with pgslotd.service"
  out=$(inside_t 45 systemctl start pgslotd 2>&1) || bad "systemctl start pgslotd failed: $out"
  out=$(inside_t 60 systemctl stop pgslotd@second 2>&1) || bad "systemctl stop pgslotd@second failed: $out"
  inside test ! -e /run/pgslotd/second || bad "/run/pgslotd/second stays after its instance stopped"
  status_lists "$C_CONF" "svc_a: streaming;" || bad "the main daemon does not answer --status after the instance stopped"
}

main_pid_changed() {
  local p
  p=$(prop MainPID)
  [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$1" ]
}
check_watchdog() {
  ensure_active || return
  printf '# written by tests/service/run.sh\n[Service]\nWatchdogSec=4s\n' |
    put_file "$C_DROPIN_DIR/20-watchdog.conf" || { bad "cannot write the watchdog drop-in"; return; }
  inside systemctl daemon-reload || bad "daemon-reload failed"
  local out rc
  out=$(inside_t 45 systemctl restart pgslotd 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || { bad "systemctl restart pgslotd exited $rc${out:+: $out} (124: did not return within 45 s)"; return; }
  info "WatchdogUSec=$(prop WatchdogUSec), Restart=$(prop Restart), RestartUSec=$(prop RestartUSec)"
  local pid0 n0
  pid0=$(prop MainPID)
  # First: a running daemon pings, so it must outlive a few watchdog periods.
  sleep 9
  if [ "$(prop MainPID)" != "$pid0" ] || ! is_active; then
    bad "with WatchdogSec=4s and nothing stopped, the service did not stay up for 9 s (MainPID $pid0 -> $(prop MainPID), NRestarts $(prop NRestarts)): it does not ping the watchdog"
    return
  fi
  info "the service kept MainPID $pid0 for 9 s under WatchdogSec=4s: it pings"
  n0=$(prop NRestarts)
  local since
  since=$(now_epoch)
  info "kill -STOP $pid0 (MainPID, NRestarts=$n0)"
  inside kill -STOP "$pid0" || { bad "kill -STOP $pid0 failed"; return; }
  local t0=$SECONDS
  if ! wait_until 20 main_pid_changed "$pid0"; then
    bad "20 s after kill -STOP, MainPID is still $(prop MainPID) (ActiveState=$(prop ActiveState), Result=$(prop Result), Restart=$(prop Restart))"
    inside kill -CONT "$pid0" 2>/dev/null
    return
  fi
  info "MainPID changed after $((SECONDS - t0)) s: $pid0 -> $(prop MainPID)"
  wait_until 20 is_active || bad "after the watchdog restart, is-active says '$(inside systemctl is-active pgslotd)'"
  local n1 wd
  n1=$(prop NRestarts)
  wd=$(inside journalctl --no-pager -q --since "@$since" -o cat _PID=1 | grep -i 'watchdog' | head -n 2 | tr '\n' '|')
  info "NRestarts $n0 -> $n1; systemd: ${wd:-(no watchdog message)}"
  if ! [ "${n1:-0}" -gt "${n0:-0}" ] && [ -z "$wd" ]; then
    bad "neither NRestarts increased ($n0 -> $n1) nor does the journal show a watchdog timeout"
  fi
  if inside kill -0 "$pid0" 2>/dev/null; then
    bad "the stopped process $pid0 is still there after the restart"
  fi
}

check_stop() {
  ensure_active || return
  local out rc
  out=$(inside_t 120 systemctl stop pgslotd 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || bad "systemctl stop pgslotd exited $rc: $out"
  local result state
  result=$(inside systemctl show pgslotd -p Result)
  [ "$result" = Result=success ] || bad "after the stop, systemctl show -p Result says '$result' (ExecMainStatus=$(prop ExecMainStatus), ExecMainCode=$(prop ExecMainCode))"
  state=$(inside systemctl is-active pgslotd)
  [ "$state" = inactive ] || bad "after the stop, is-active says '$state', not 'inactive'"
  info "server side: $(sql "SELECT string_agg(slot_name || ' active=' || active, ', ' ORDER BY slot_name) FROM pg_replication_slots")"
}

run_check "1 start (Type=notify): systemctl start returns 0, then is-active = active" check_start
run_check "2 file sink: an INSERT reaches svc_a.log, owned by pgslotd, mode 0600" check_file_sink
run_check "3 journal: SLOT=svc_a entries carry MESSAGE_ID=" check_journal
run_check "4 status: StatusText mentions svc_a" check_status
run_check "5 reload adds svc_b; svc_a keeps its walsender" check_reload_new_slot
run_check "6 reload with invalid YAML is survived" check_broken_reload
run_check "7 --status from a shell finds the daemon systemd started" check_status_from_a_shell
run_check "8 pgslotd@second: directories of its own, survives pgslotd.service's stop" check_template_instance
run_check "9 watchdog: a stopped daemon is restarted" check_watchdog
run_check "10 stop: systemctl stop, Result=success" check_stop
