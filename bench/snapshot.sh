#!/usr/bin/env bash
# The snapshot benchmark of issue 16: a table of ROWS rows (1,000,000 by
# default) read by pgslotd's `snapshot: initial` into a file, against
# `psql -c "\copy (select row_to_json(t) from t) to FILE"` on the same
# table, in one run. Prints each run and the targets (PASS/FAIL):
#   wall  pgslotd's snapshot (from its log: the table's "done ... in N ms")
#         at most 1.5 times the \copy export's;
#   RSS   pgslotd's peak resident memory at most 64 MiB.
#
#   bash bench/snapshot.sh                 # 3 runs of 1,000,000 rows
#   ROWS=100000 RUNS=1 CHUNK=20000 bash bench/snapshot.sh
#   SINK=stdout bash bench/snapshot.sh     # stdout instead of a file sink
#
# It starts its own throwaway PostgreSQL 15 cluster in a temporary directory
# (as postgres when run as root) and removes everything when it ends. Not
# part of bench/run.sh --quick (CI); docs/performance.md has the results.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
rows=${ROWS:-1000000}
runs=${RUNS:-3}
chunk=${CHUNK:-10000}  # snapshot_chunk_rows (its default)
sink=${SINK:-file}     # file (exactly-once, fsynced, its record) or stdout
pgslotd=${PGSLOTD:-$root/build/pgslotd}
[ -x "$pgslotd" ] || { echo "no pgslotd at $pgslotd: build it first" >&2; exit 2; }

work=$(mktemp -d /tmp/pgslotd-snapbench.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"
port=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  as_pg "$pgbin/pg_ctl -D $work/data -m immediate -w stop" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg "$pgbin/initdb -D $work/data -A trust --no-sync" >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
wal_level = logical
port = $port
unix_socket_directories = '$work'
listen_addresses = ''
shared_buffers = 256MB
CONF
as_pg "$pgbin/pg_ctl -D $work/data -l $work/server.log -w start" >/dev/null
psql=(psql -h "$work" -p "$port" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE TABLE t (id int PRIMARY KEY, a text NOT NULL, b numeric, c timestamptz, d bool)"
"${psql[@]}" -c "INSERT INTO t SELECT i, md5(i::text), i / 7.0, now() - i * interval '1 s', i % 2 = 0 FROM generate_series(1, $rows) i"
"${psql[@]}" -c "CREATE PUBLICATION bench_pub FOR TABLE t" -c "VACUUM ANALYZE t"

now() { date +%s.%N; }
best_copy="" best_snap="" worst_rss=0
for run in $(seq 1 "$runs"); do
  start=$(now)
  "${psql[@]}" -c "\\copy (select row_to_json(t) from t) to $work/copy.json"
  copy=$(echo "$(now) - $start" | bc)

  rm -rf "$work/state" "$work/out.json" "$work/pgslotd.log"
  cat >"$work/pgslotd.yaml" <<YAML
connection: "host=$work port=$port user=postgres dbname=postgres"
state_directory: $work/state
runtime_directory: $work/state
slots:
  - name: bench_snap
    plugin: pgoutput
    create: true
    format: json
    snapshot: initial
    snapshot_chunk_rows: $chunk
    options: {publication_names: bench_pub}
YAML
  if [ "$sink" = file ]; then
    echo "    sink: {type: file, path: $work/out.json}" >>"$work/pgslotd.yaml"
    "$pgslotd" --config "$work/pgslotd.yaml" >/dev/null 2>"$work/pgslotd.log" &
  else
    echo "    sink: {type: stdout}" >>"$work/pgslotd.yaml"
    "$pgslotd" --config "$work/pgslotd.yaml" >"$work/out.json" 2>"$work/pgslotd.log" &
  fi
  daemon=$!
  until grep -qs "snapshot done" "$work/pgslotd.log"; do
    kill -0 "$daemon" 2>/dev/null || { cat "$work/pgslotd.log" >&2; exit 1; }
    sleep 0.02
  done
  rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$daemon/status")
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$daemon/stat")
  kill "$daemon"; wait "$daemon" || true; daemon=
  snap_ms=$(sed -n 's/.*snapshot of table public\.t done: [0-9]* rows in \([0-9]*\) ms.*/\1/p' "$work/pgslotd.log")
  snap=$(echo "scale=3; $snap_ms / 1000" | bc)
  lines=$(grep -c '"op":"read"' "$work/out.json")
  [ "$lines" = "$rows" ] || { echo "pgslotd wrote $lines read lines, not $rows" >&2; exit 1; }
  "${psql[@]}" -c "SELECT pg_drop_replication_slot('bench_snap')" >/dev/null
  printf 'run %d: \\copy %.2f s; pgslotd snapshot %.2f s (%.2fx), CPU %s s, peak RSS %d MiB\n' \
    "$run" "$copy" "$snap" "$(echo "$snap / $copy" | bc -l)" "$cpu" "$rss"
  if [ -z "$best_copy" ] || (( $(echo "$copy < $best_copy" | bc) )); then best_copy=$copy; fi
  if [ -z "$best_snap" ] || (( $(echo "$snap < $best_snap" | bc) )); then best_snap=$snap; fi
  (( rss > worst_rss )) && worst_rss=$rss
done

ratio=$(echo "$best_snap / $best_copy" | bc -l)
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
printf 'wall (best of %d): snapshot %.2f s / \\copy %.2f s = %.2f (target <= 1.50): %s\n' \
  "$runs" "$best_snap" "$best_copy" "$ratio" "$(verdict "$(echo "$ratio <= 1.5" | bc)")"
printf 'peak RSS (worst): %d MiB (target <= 64): %s\n' "$worst_rss" \
  "$(verdict "$(( worst_rss <= 64 ))")"
