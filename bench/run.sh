#!/usr/bin/env bash
# pgslotd benchmark: pgslotd against PostgreSQL's own pg_recvlogical (and, into
# librdkafka's mock Kafka cluster, against pg_recvlogical | kcat -P), on the
# same WAL, in one run. Prints a table and the ratios of the performance
# targets (PASS/FAIL). See docs/performance.md for what is measured.
#
#   bash bench/run.sh                 # the full benchmark over the Unix socket (about 7 minutes on 2 quiet cores)
#   bash bench/run.sh --tcp           # the same over TCP on 127.0.0.1 (each transport has its targets)
#   bash bench/run.sh --quick         # a smoke run for CI (well under a minute)
#   bash bench/run.sh --latency-only  # only the latency runs (about a minute)
#   bash bench/run.sh --kafka-exactly-once  # also pgslotd into Kafka with exactly_once: true
#   bash bench/run.sh --compare OLD   # this build against the pgslotd binary OLD, interleaved
#                                     # (bench/build-rev.sh builds OLD from a git revision)
#   bash bench/run.sh --help          # every option
#
# It starts its own throwaway PostgreSQL cluster in a temporary directory and
# removes everything when it ends, however it ends. The exit status is 0 when
# every measurement ran, whether or not the targets were met, and non-zero
# only when something broke.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}

for arg in "$@"; do
  if [[ $arg == -h || $arg == --help ]]; then
    exec python3 "$here/bench.py" --workdir /nonexistent --help
  fi
done

# The Kafka cases run unless --skip-kafka (and never with --compare or
# --latency-only).
kafka=1
for arg in "$@"; do
  case $arg in --skip-kafka | --compare | --compare=* | --latency-only) kafka= ;; esac
done

# Tools: GNU time for the clients' CPU and peak RSS; strace for the latency
# part and --profile; perf only for --profile; kcat for the Kafka cases.
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
command -v strace >/dev/null || missing+=(strace)
if [[ -n $kafka && " $* " != *" --kcat "* && " $* " != *" --kcat="* ]]; then
  command -v kcat >/dev/null || missing+=(kcat)
fi
if [[ " $* " == *" --profile "* ]]; then
  command -v perf >/dev/null || missing+=(linux-perf)
fi
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "bench: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bench: missing packages: ${missing[*]}" >&2
    exit 1
  fi
fi
for tool in python3 "$pgbin/initdb" "$pgbin/pg_ctl" "$pgbin/pg_recvlogical" "$pgbin/pgbench"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done

# pgslotd: --pgslotd PATH, else build/pgslotd, built if it is not there yet.
# With --compare OLD, that is the new build and OLD the old one.
pgslotd=$root/build/pgslotd
old=
for ((i = 1; i <= $#; i++)); do
  [[ ${!i} == --pgslotd ]] && { j=$((i + 1)); pgslotd=${!j}; }
  [[ ${!i} == --pgslotd=* ]] && pgslotd=${!i#--pgslotd=}
  [[ ${!i} == --compare ]] && { j=$((i + 1)); old=${!j:-}; compare=1; }
  [[ ${!i} == --compare=* ]] && { old=${!i#--compare=}; compare=1; }
done
if [[ -n ${compare:-} && ! ( -f $old && -x $old ) ]]; then
  echo "bench: --compare needs the old pgslotd binary; '$old' is not an executable file" \
    "(bench/build-rev.sh REV DIR builds one)" >&2
  exit 2
fi
if [[ ! -x $pgslotd && $pgslotd == "$root/build/pgslotd" ]]; then
  echo "bench: building pgslotd" >&2
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  make -C "$root/build" -j"$(nproc)" pgslotd >/dev/null
fi
# The Kafka mock (tests/kafka/): --mock-kafka PATH, else next to pgslotd in
# its build directory, else build/tests/, built there if it is not there yet.
# bench.py finds it the same way.
mock=
for ((i = 1; i <= $#; i++)); do
  [[ ${!i} == --mock-kafka ]] && { j=$((i + 1)); mock=${!j:-}; }
  [[ ${!i} == --mock-kafka=* ]] && mock=${!i#--mock-kafka=}
done
if [[ -n $kafka && -z $mock && ! -x $(dirname "$pgslotd")/tests/pgslotd-mock-kafka &&
      ! -x $root/build/tests/pgslotd-mock-kafka ]]; then
  echo "bench: building pgslotd-mock-kafka" >&2
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  make -C "$root/build" -j"$(nproc)" pgslotd-mock-kafka >/dev/null
fi

work=$(mktemp -d /tmp/pgslotd-bench-XXXXXX)
chmod 755 "$work"
py_pid=

# shellcheck disable=SC2317  # called from the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # bench.py cleans up after itself; this is for when it could not (killed).
  if [[ -n $py_pid ]] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$py_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$py_pid" 2>/dev/null || true
  fi
  # Clients: each is the leader of its own process group; only those whose
  # command line still names the work directory (the pid was not reused).
  if [[ -f $work/pids ]]; then
    while read -r pid; do
      if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF "$work"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$work/pids"
  fi
  if [[ -f $work/data/postmaster.pid ]]; then
    if [[ $(id -u) == 0 ]]; then
      runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
    else
      "$pgbin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# In the background so that a signal reaches the trap at once (bash runs a
# trap only after a foreground child ends); bench.py installs its own
# handlers, so it is not deaf to SIGINT as a background job would be.
python3 "$here/bench.py" --workdir "$work" --pgbin "$pgbin" --pgslotd "$pgslotd" "$@" &
py_pid=$!
set +e
wait "$py_pid"
rc=$?
set -e
py_pid=
exit "$rc"
