#!/usr/bin/env bash
# Try it: builds pgslotd, starts a throwaway PostgreSQL 15 cluster in a
# temporary directory, streams two logical replication slots with pgslotd
# (one to this terminal, one into a file), makes a few changes and shows
# what came out. Then it stops pgslotd, makes more changes while it is down,
# starts it again and checks that the file received exactly those changes:
# nothing lost, nothing repeated. Everything it starts is stopped and the
# temporary directory removed when it ends, also on failure or Ctrl-C.
# Nothing else on the machine is touched, apart from installing missing
# Debian packages: when postgresql-15 is not installed yet, it is installed
# without the cluster 15/main Debian would create and start on port 5432
# (see install_postgresql below); when it is installed already, its clusters
# are left alone.
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
dropin=""          # our postgresql-common drop-in, while it exists
dropin_dir_made=0  # whether we created its directory
common_dir_made=0  # and /etc/postgresql-common above it

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
  remove_dropin
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

# --- Installing postgresql-15 without Debian's cluster 15/main -------------
#
# When the postgresql-15 package is first installed, its postinst creates
# and starts a cluster "15/main" on port 5432, unless postgresql-common's
# create_main_cluster is off. It reads that setting with pg_conftool from
# /etc/postgresql-common/createcluster.conf, whose last line (as Debian
# ships it) includes every /etc/postgresql-common/createcluster.d/*.conf.
# The demo has its own cluster and does not want that one, so for the time
# of the install it puts create_main_cluster = false into a drop-in there,
# and removes the drop-in again right after (and in cleanup).

cc_conf=/etc/postgresql-common/createcluster.conf
cc_dir=/etc/postgresql-common/createcluster.d

# The value of create_main_cluster as postgresql-15's postinst would read it
# (on/off), or nothing when it is not set (the default: on) or
# postgresql-common is not installed yet.
create_main_cluster_setting() {
  if [ -f "$cc_conf" ] && command -v pg_conftool >/dev/null 2>&1; then
    pg_conftool "$cc_conf" show -bs create_main_cluster 2>/dev/null || true
  fi
}

remove_dropin() {
  [ -n "$dropin" ] || return 0
  as_root rm -f "$dropin"
  remove_dropin_dirs
  say "removed $dropin again"
  dropin=""
}

# Removes the directories we made for the drop-in, if they are empty (once
# postgresql-common is installed, /etc/postgresql-common is not).
remove_dropin_dirs() {
  if [ "$dropin_dir_made" = 1 ]; then
    as_root rmdir "$cc_dir" 2>/dev/null || true
  fi
  if [ "$common_dir_made" = 1 ]; then
    as_root rmdir "$(dirname "$cc_dir")" 2>/dev/null || true
  fi
}

main_cluster_exists() {
  [ -e /etc/postgresql/15/main/postgresql.conf ]
}

install_postgresql() {
  if [ "$(dpkg-query -W -f='${db:Status-Status}' postgresql-15 2>/dev/null)" = installed ]; then
    say "postgresql-15 is already installed: its clusters are not ours and are left"
    say "alone (the demo starts its own in a temporary directory)"
    if command -v pg_lsclusters >/dev/null 2>&1; then
      if [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
        pg_lsclusters | sed 's/^/    /'
      else
        say "  (it has no clusters here)"
      fi
    fi
    return 0
  fi

  local setting
  setting=$(create_main_cluster_setting)
  if [ -n "$setting" ]; then
    # The operator chose; we do not override it.
    say "create_main_cluster is set to '$setting' on this machine (postgresql-common);"
    say "leaving that setting as it is"
  else
    dropin=$cc_dir/pgslotd-try-it.conf
    if [ ! -d "$cc_dir" ]; then
      [ -d "$(dirname "$cc_dir")" ] || common_dir_made=1
      as_root mkdir -p "$cc_dir"
      dropin_dir_made=1
    fi
    printf '%s\n' "# Written by pgslotd's scripts/try-it.sh for the time of installing" \
      "# postgresql-15, and removed right after." "create_main_cluster = false" |
      as_root tee "$dropin" >/dev/null
    if [ -f "$cc_conf" ] && [ "$(create_main_cluster_setting)" != off ]; then
      # A createcluster.conf without the include of createcluster.d: the
      # drop-in would not be read, and we do not edit the operator's file.
      as_root rm -f "$dropin"
      remove_dropin_dirs
      dropin=""
      printf 'warning: %s does not read %s, and this script does not edit it:\n' \
        "$cc_conf" "$cc_dir" >&2
      printf '  the install will create and start the cluster 15/main on port 5432\n' >&2
    else
      say "installing postgresql-15 without Debian's default cluster 15/main:"
      say "  create_main_cluster = false in $dropin, for the time of the install"
    fi
  fi

  local had_main=0
  main_cluster_exists && had_main=1
  ensure_packages postgresql-15
  remove_dropin
  if [ "$had_main" = 0 ] && main_cluster_exists; then
    say "installing postgresql-15 created Debian's cluster 15/main (port 5432), which"
    say "stays after this demo; remove it with: pg_dropcluster --stop 15 main"
  elif [ "$had_main" = 0 ]; then
    say "postgresql-15 is installed, and no cluster 15/main was created"
  else
    say "postgresql-15 is installed; the cluster 15/main configured here before is left alone"
  fi
}

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

ensure_packages "${PGSLOTD_BUILD_DEPS[@]}" "${PGSLOTD_DOC_DEPS[@]}"
install_postgresql
# Only the daemon is built; the Kafka tests' kcat is not needed, so their
# part of the test tree is left out.
PGSLOTD_CMAKE_ARGS="${PGSLOTD_CMAKE_ARGS:-} -DPGSLOTD_KAFKA_TESTS=OFF" \
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
say "what the running daemon says of them (pgslotd --config $config --status):"
"$bin" --config "$config" --status || true
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

# --- 6. Stop, change, start: nothing lost, nothing repeated ------------------

log=$outdir/demo_file.log
say "stopping pgslotd with SIGTERM (a clean stop: sync, final acknowledgement, end of stream)"
stop_daemon
say "pgslotd exited with code $daemon_rc (0 = clean stop)"
[ "$daemon_rc" -eq 0 ] || die "pgslotd did not stop cleanly"
cp "$log" "$tmp/before.log"
lines_before=$(wc -l <"$tmp/before.log")
bytes_before=$(wc -c <"$tmp/before.log")
echo
say "BEFORE the stop: $log holds $commits transactions ($lines_before lines)"

# Runs one transaction while pgslotd is down and appends its id to down_xids.
down_xids=()
down_txn() {
  say "  SQL: BEGIN; $1; COMMIT"
  local xid
  xid=$(sql -At -c "BEGIN" -c "$1" -c "SELECT pg_current_xact_id()" -c "COMMIT")
  down_xids+=("$xid")
}
echo
say "while pgslotd is down, three more transactions:"
down_txn "INSERT INTO fruit VALUES (5, 'mango', 2), (6, 'fig', 9)"
down_txn "UPDATE fruit SET qty = 0 WHERE id = 4"
down_txn "DELETE FROM fruit WHERE id = 1"
lsn=$(sql_value "SELECT pg_current_wal_lsn()")
say "transactions ${down_xids[*]}; no one reads the slots now, and the server keeps"
say "what comes after their confirmed_flush_lsn for them:"
sql -P footer=off -c "SELECT slot_name, active, confirmed_flush_lsn,
                             pg_current_wal_lsn() AS server_wal_lsn
                      FROM pg_replication_slots ORDER BY slot_name"

echo
say "starting pgslotd again with the same configuration; each slot resumes at"
say "its confirmed_flush_lsn (the file sink at its state record)"
"$bin" --config "$config" &
daemon_pid=$!
if ! wait_for 30 "(SELECT bool_and(confirmed_flush_lsn >= '$lsn')
                   FROM pg_replication_slots WHERE slot_name IN ($slots))"; then
  die "the slots had not acknowledged $lsn 30 s after the restart"
fi
sleep 0.2
echo

# Check the promise: the file still begins with exactly what it held before
# the stop, and what follows is the three new transactions, each once.
lines_after=$(wc -l <"$log")
commits_after=$(grep -c '^COMMIT' "$log" || true)
say "AFTER the restart: $log holds $commits_after transactions ($lines_after lines); the new lines:"
tail -n +"$((lines_before + 1))" "$log"
echo
cmp -s -n "$bytes_before" "$tmp/before.log" "$log" ||
  die "the first $bytes_before bytes of the file changed across the restart; that is a bug"
new_xids=$(tail -c +"$((bytes_before + 1))" "$log" | sed -n 's/^BEGIN \([0-9]*\)$/\1/p' | paste -sd' ')
[ "$new_xids" = "${down_xids[*]}" ] ||
  die "the new part of the file holds transactions '$new_xids', expected '${down_xids[*]}'"
repeated=$(sed -n 's/^BEGIN \([0-9]*\)$/\1/p' "$log" | sort | uniq -d | paste -sd' ')
[ -z "$repeated" ] || die "transactions $repeated appear twice in the file; that is a bug"
[ "$commits_after" -eq $((commits + 3)) ] ||
  die "expected $((commits + 3)) committed transactions in the file, found $commits_after"
say "before the stop: $commits transactions, $lines_before lines"
say "after the restart: $commits_after transactions, $lines_after lines"
say "the first $lines_before lines are unchanged, and the $((lines_after - lines_before)) new lines are"
say "exactly the transactions ${down_xids[*]} made while pgslotd was down:"
say "nothing lost, nothing repeated"
state=$outdir/state/demo_file.state
say "its state record $state says that the first"
say "$(sed -n 's/^size //p' "$state") bytes of the file hold whole transactions, up to position $(sed -n 's/^lsn //p' "$state")"

echo
say "stopping pgslotd with SIGTERM"
stop_daemon
say "pgslotd exited with code $daemon_rc (0 = clean stop)"
[ "$daemon_rc" -eq 0 ] || die "pgslotd did not stop cleanly"
echo
say "done. Next: README.md, docs/config.md and docs/operations.md"
