#!/usr/bin/env bash
# Try it: builds pgslotd, starts a throwaway PostgreSQL 15 cluster in a
# temporary directory, streams two logical replication slots with pgslotd
# (one to this terminal, one into a file), makes a few changes and shows
# what came out. Everything it starts is stopped and the temporary directory
# removed when it ends, also on failure or Ctrl-C. Nothing else on the
# machine is touched, apart from installing missing Debian packages.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# The cluster listens only on a Unix socket in its own directory (no TCP),
# so this port number cannot clash with any other server on the machine.
port=54329
slots="'demo', 'demo_file'"

tmp=""
pgdir=""
cluster_started=0
daemon_pid=""

# Stops pgslotd with SIGTERM and waits for it (10 s, then SIGKILL). Sets
# daemon_rc to its exit code.
daemon_rc=""
stop_daemon() {
  [ -n "$daemon_pid" ] || return 0
  local pid=$daemon_pid i
  daemon_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf 'warning: pgslotd did not stop within 10 s; killing it\n' >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  daemon_rc=0
  wait "$pid" || daemon_rc=$?
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$daemon_pid" ]; then
    say "stopping pgslotd"
    stop_daemon
  fi
  if [ "$cluster_started" = 1 ]; then
    say "stopping the throwaway PostgreSQL cluster"
    pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 ||
      printf 'warning: pg_ctl stop failed (the server may already be down)\n' >&2
  fi
  if [ -n "$tmp" ]; then
    rm -rf "$tmp"
    say "removed $tmp"
  fi
  if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
    printf 'try-it.sh: interrupted\n' >&2
  elif [ "$rc" -ne 0 ]; then
    printf 'try-it.sh: failed (exit code %s)\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a PostgreSQL server program: as the `postgres` OS user when we are
# root (initdb and pg_ctl refuse to run as root), else as ourselves.
pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$pgdir" && runuser -u postgres -- "$@")
  else
    (cd "$pgdir" && "$@")
  fi
}

# Runs SQL on the throwaway cluster.
sql() {
  "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$pgdir" -p "$port" -U postgres \
    -d postgres "$@"
}

# The value of one SQL expression.
sql_value() {
  sql -At -c "$1"
}

# Waits up to $1 seconds for the SQL condition $2 to be true, checking that
# pgslotd is still running meanwhile.
wait_for() {
  local timeout=$1 condition=$2 i
  for ((i = 0; i < timeout * 10; i++)); do
    if [ "$(sql_value "SELECT ($condition)")" = t ]; then
      return 0
    fi
    if [ -n "$daemon_pid" ] && ! kill -0 "$daemon_pid" 2>/dev/null; then
      daemon_rc=0
      wait "$daemon_pid" || daemon_rc=$?
      daemon_pid=""
      die "pgslotd exited unexpectedly with code $daemon_rc (its messages are above)"
    fi
    sleep 0.1
  done
  return 1
}

# --- 1. Dependencies and build ---------------------------------------------

ensure_packages "${PGSLOTD_BUILD_DEPS[@]}" "${PGSLOTD_DOC_DEPS[@]}" postgresql-15
QUIET_BUILD=1 build_pgslotd "$root" pgslotd
bin=$root/build/pgslotd
say "built $("$bin" --version)"

# --- 2. A throwaway PostgreSQL cluster ---------------------------------------

tmp=$(mktemp -d /tmp/pgslotd-try.XXXXXX)
chmod 0755 "$tmp"
pgdir=$tmp/pg      # data directory, Unix socket and server log
outdir=$tmp/out    # the file sink's output
mkdir "$pgdir" "$outdir"
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' OS user to run the server as"
  chown postgres: "$pgdir"
fi

say "creating a throwaway PostgreSQL 15 cluster in $pgdir (wal_level = logical)"
if ! pg "$PG_BINDIR/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale \
  --no-sync >"$tmp/initdb.log" 2>&1; then
  cat "$tmp/initdb.log" >&2
  die "initdb failed"
fi
cat >>"$pgdir/data/postgresql.conf" <<EOF

# Added by scripts/try-it.sh
listen_addresses = ''
port = $port
unix_socket_directories = '$pgdir'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
EOF
if ! pg "$PG_BINDIR/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 start \
  >/dev/null 2>&1; then
  tail -n 20 "$pgdir/server.log" >&2 || true
  die "the PostgreSQL server did not start"
fi
cluster_started=1
say "server running; socket in $pgdir, port $port"

sql -c "CREATE TABLE fruit (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL)"
say "created table fruit (id int PRIMARY KEY, name text, qty int)"

# --- 3. pgslotd --------------------------------------------------------------

config=$tmp/pgslotd.yaml
sed -e "s|@SOCKET_DIR@|$pgdir|g" -e "s|@PORT@|$port|g" -e "s|@OUTDIR@|$outdir|g" \
  "$root/config/example.yaml" >"$config"
"$bin" --config "$config" --check

say "starting: pgslotd --config $config"
say "  slot 'demo'      -> this terminal (stdout)"
say "  slot 'demo_file' -> $outdir/demo_file.log"
say "  pgslotd's own log lines (timestamp, level) go to stderr"
"$bin" --config "$config" &
daemon_pid=$!

# pgslotd creates both slots (create: true) and starts streaming. Changes
# made before a slot exists are not in it, so wait until both are active.
wait_for 30 "(SELECT count(*) FROM pg_replication_slots
              WHERE slot_name IN ($slots) AND active) = 2" ||
  die "the slots did not become active within 30 s"
say "both slots exist and are being streamed"
echo

# --- 4. Some changes ---------------------------------------------------------

step() {
  sleep 0.5  # let pgslotd print the previous transaction first
  echo
  say "$1"
  say "  SQL: $2"
  sql -c "$2"
}
step "a transaction inserting two rows" \
  "INSERT INTO fruit VALUES (1, 'apple', 3), (2, 'pear', 5)"
step "an update" \
  "UPDATE fruit SET qty = qty + 1 WHERE id = 1"
step "a delete" \
  "DELETE FROM fruit WHERE id = 2"
step "a transaction that is rolled back: it must NOT appear below" \
  "BEGIN; INSERT INTO fruit VALUES (3, 'rolled-back plum', 1); ROLLBACK"
step "one more insert, to show the stream goes on after the rollback" \
  "INSERT INTO fruit VALUES (4, 'kiwi', 7)"

# Everything up to here is in the WAL; wait until pgslotd has written it,
# made it durable and acknowledged it to the server for both slots.
lsn=$(sql_value "SELECT pg_current_wal_lsn()")
if ! wait_for 20 "(SELECT bool_and(confirmed_flush_lsn >= '$lsn')
                   FROM pg_replication_slots WHERE slot_name IN ($slots))"; then
  printf 'warning: the slots had not acknowledged %s after 20 s\n' "$lsn" >&2
fi
sleep 0.2
echo

# --- 5. What came out --------------------------------------------------------

say "the file sink $outdir/demo_file.log holds (one line per message, as test_decoding wrote it):"
cat "$outdir/demo_file.log"
echo
commits=$(grep -c '^COMMIT' "$outdir/demo_file.log" || true)
if grep -q 'plum' "$outdir/demo_file.log"; then
  die "the rolled-back transaction appears in the output; that is a bug"
fi
if [ "$commits" -ne 4 ]; then
  die "expected 4 committed transactions in the file, found $commits"
fi
say "4 committed transactions, and no trace of the rolled-back one"

say "the slots on the server; confirmed_flush_lsn is what pgslotd acknowledged"
say "as durable, and where streaming resumes after a restart:"
sql -P footer=off -c "SELECT slot_name, plugin, active, confirmed_flush_lsn,
                             pg_current_wal_lsn() AS server_wal_lsn
                      FROM pg_replication_slots ORDER BY slot_name"

say "stopping pgslotd with SIGTERM (a clean stop: sync, final acknowledgement, end of stream)"
stop_daemon
say "pgslotd exited with code $daemon_rc (0 = clean stop)"
[ "$daemon_rc" -eq 0 ] || die "pgslotd did not stop cleanly"
echo
say "done. Next: README.md, docs/config.md and docs/operations.md"
