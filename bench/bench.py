#!/usr/bin/env python3
"""pgslotd benchmark: pgslotd against pg_recvlogical on the same WAL.

Start it through bench/run.sh, which makes the work directory, passes it as
--workdir and cleans up after this script whatever happens to it. What is
measured and why is described in docs/performance.md.

Exit status: 0 when every measurement ran (whether or not the targets were
met), 1 when something broke (a client failed, an output is wrong, the
cluster would not start, ...), 130 when interrupted, 2 for a bad command line.
"""

import argparse
import hashlib
import json
import os
import platform
import pwd
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone

CLK_TCK = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1
TIME = "/usr/bin/time"
MiB = 1024 * 1024

T_START = time.time()


class Broken(Exception):
    """Something did not work, so the run as a whole is not valid."""


class Refused(Broken):
    """pgslotd --check does not accept a config the script wrote; output is
    what it said."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class Interrupted(Exception):
    pass


def log(msg):
    sys.stderr.write("[%7.1fs] %s\n" % (time.time() - T_START, msg))
    sys.stderr.flush()


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid):
    """(utime+stime in ticks, starttime, state) of a process, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after
    # its last ')'. Then field 3 is at index 0, utime (14) at 11, stime (15)
    # at 12, starttime (22) at 19.
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12]), int(rest[19]), rest[0]


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key] = value.strip()
    except FileNotFoundError:
        pass
    return out


def kib(status_value):
    return int(status_value.split()[0]) if status_value else 0


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(8 * MiB)
            if not chunk:
                return n
            n += chunk.count(b"\n")


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(8 * MiB)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def read_file(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def tail(path, n=15):
    lines = read_file(path).splitlines()
    return "\n".join("    " + line for line in lines[-n:])


# What /usr/bin/time writes with this format, read by parse_time_file.
TIME_FORMAT = "%e %U %S %M %w %c"


def parse_time_file(path):
    """wall, user, sys, cpu (user + sys) in seconds, rss_mib (peak), vcsw and
    icsw (context switches) from a file /usr/bin/time -f TIME_FORMAT -o wrote;
    None for each when it holds no such line (the process was killed)."""
    lines = read_file(path).strip().splitlines()
    try:
        e, u, s, m, vcs, ics = lines[-1].split()
        return {"wall": float(e), "user": float(u), "sys": float(s), "cpu": float(u) + float(s),
                "rss_mib": int(m) / 1024.0, "vcsw": int(vcs), "icsw": int(ics)}
    except (IndexError, ValueError):
        return dict.fromkeys(("wall", "user", "sys", "cpu", "rss_mib", "vcsw", "icsw"))


def machine_info(pgbin):
    cpu = "unknown"
    for line in read_file("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in read_file("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    distro = ""
    for line in read_file("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            distro = line.split("=", 1)[1].strip('"')
    pg = subprocess.run([os.path.join(pgbin, "postgres"), "--version"], capture_output=True,
                        text=True).stdout.strip()
    return {
        "nproc": NPROC,
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": distro,
        "postgres": pg,
    }


def cpu_times():
    """Machine-wide /proc/stat cpu line: (busy, idle, iowait, steal) in ticks."""
    f = [int(x) for x in read_file("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return user + nice + system + irq + softirq, idle, iowait, steal


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_bytes(path):
    """The size of the files in a directory (not below it); 0 if it is not
    there. Files may go while it is read."""
    n = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        n += e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    pass
    except (FileNotFoundError, NotADirectoryError):
        pass
    return n


def wait_shares(waits):
    """{event: samples} -> (samples, [(event, percent)] largest first)."""
    n = sum(waits.values()) if waits else 0
    if not n:
        return 0, []
    return n, sorted(((e, 100.0 * c / n) for e, c in waits.items()), key=lambda x: -x[1])


def pct(values, q):
    """The q-th percentile (0..100) by nearest rank."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# --------------------------------------------------------------------------
# A psql session kept open, for frequent small queries (polling).


class Psql:
    MARK = "__pgslotd_bench_done__"

    def __init__(self, argv, errlog):
        self.err = open(errlog, "ab")
        self.p = subprocess.Popen(argv + ["-X", "-q", "-A", "-t"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1)

    def query(self, sql):
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.MARK + "\n")
        self.p.stdin.flush()
        rows = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise Broken("psql session ended unexpectedly")
            line = line.rstrip("\n")
            if line == self.MARK:
                return rows
            if line:
                rows.append(line)

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=5)
        except Exception:
            self.p.kill()
        self.err.close()


# --------------------------------------------------------------------------
# Walsender CPU: find each slot's walsender from pg_replication_slots.active_pid
# and read its utime+stime until it exits. The last value read is its total.


class WalsenderWatch(threading.Thread):
    """spool_dir: a directory whose size is sampled on the same beat (pgslotd's
    spool of streamed transactions); its largest size is spool_peak."""

    def __init__(self, bench, slots, spool_dir=None):
        super().__init__(daemon=True)
        self.bench = bench
        self.slots = list(slots)
        self.spool_dir = spool_dir
        self.spool_peak = 0
        self.st = {s: {"pid": None, "start": None, "last": 0, "done": 0, "pids": [],
                       "found": None, "gone": None, "waits": {}} for s in self.slots}
        self.stop_evt = threading.Event()
        self.error = None
        self.lock = threading.Lock()

    def run(self):
        try:
            psql = self.bench.psql_session()
            try:
                self.loop(psql)
            finally:
                psql.close()
        except Exception as e:  # reported by finish()
            self.error = e

    def loop(self, psql):
        names = ",".join("'%s'" % s for s in self.slots)
        sql = ("SELECT slot_name, active_pid FROM pg_replication_slots "
               "WHERE active_pid IS NOT NULL AND slot_name IN (%s)" % names)
        last_query = 0.0
        while True:
            stopping = self.stop_evt.is_set()
            now = time.time()
            with self.lock:
                untracked = [s for s in self.slots if self.st[s]["pid"] is None]
                never_found = [s for s in untracked if self.st[s]["found"] is None]
            # Poll every 10 ms until each walsender is found; after that only
            # every 250 ms, in case one comes back (a reconnect).
            if untracked and not stopping and (never_found or now - last_query >= 0.25):
                last_query = now
                for row in psql.query(sql):
                    name, pid = row.split("|")
                    pid = int(pid)
                    with self.lock:
                        s = self.st[name]
                        if s["pid"] is None and pid not in s["pids"]:
                            ps = proc_stat(pid)
                            if ps is not None:
                                s.update(pid=pid, start=ps[1], last=ps[0])
                                s["pids"].append(pid)
                                if s["found"] is None:
                                    s["found"] = time.time()
            # What each walsender is doing: its wait event, or CPU when it
            # waits for nothing (working, or in a system call that has no
            # wait event).
            with self.lock:
                live = {self.st[n]["pid"]: n for n in self.slots if self.st[n]["pid"] is not None}
            if live and not stopping:
                rows = psql.query("SELECT pid, coalesce(wait_event, 'CPU') FROM pg_stat_activity "
                                  "WHERE pid IN (%s)" % ",".join(str(p) for p in live))
                with self.lock:
                    for row in rows:
                        pid, event = row.split("|")
                        name = live.get(int(pid))
                        if name is not None and self.st[name]["pid"] == int(pid):
                            w = self.st[name]["waits"]
                            w[event] = w.get(event, 0) + 1
            with self.lock:
                for name in self.slots:
                    s = self.st[name]
                    if s["pid"] is None:
                        continue
                    ps = proc_stat(s["pid"])
                    if ps is None or ps[1] != s["start"] or ps[2] == "Z":
                        s["done"] += s["last"]
                        s.update(pid=None, start=None, last=0, gone=time.time())
                    else:
                        s["last"] = ps[0]
            if self.spool_dir:
                self.spool_peak = max(self.spool_peak, dir_bytes(self.spool_dir))
            if stopping:
                return
            self.stop_evt.wait(0.01 if never_found else 0.05)

    def finish(self, grace=10.0):
        """Wait (up to grace seconds) until every walsender found has exited."""
        deadline = time.time() + grace
        while time.time() < deadline and self.is_alive():
            with self.lock:
                if all(self.st[s]["pid"] is None for s in self.slots):
                    break
            time.sleep(0.05)
        self.stop_evt.set()
        self.join(10)
        if self.error:
            raise Broken("watching the walsenders: %s" % self.error)
        out = {}
        for name in self.slots:
            s = self.st[name]
            ticks = s["done"] + (s["last"] if s["pid"] is not None else 0)
            out[name] = {
                "cpu": ticks / CLK_TCK if s["found"] else None,
                "found": s["found"],
                "gone": s["gone"] if s["pid"] is None else None,
                "sessions": len(s["pids"]),
                "waits": dict(s["waits"]),
            }
        return out


# --------------------------------------------------------------------------
# Kafka: librdkafka's mock cluster (pgslotd-mock-kafka, tests/kafka/) and kcat.


class MockKafka:
    """One pgslotd-mock-kafka process: BROKERS brokers on 127.0.0.1 and the
    topics named, each with PARTITIONS partitions (partition p led by broker
    p % BROKERS + 1). It stops on end of its stdin, so it also goes when this
    script does. The mock keeps only the last 5 MiB or 100,000 batches of
    each partition (librdkafka's rdkafka_mock.c drops the oldest), but its
    high watermarks count every record ever appended, and it writes no
    transaction markers: the sum of a topic's high watermarks is the number
    of records produced to it."""

    BROKERS = 3
    PARTITIONS = 3

    def __init__(self, bench, topics, logpath):
        """topics: names, or (name, partitions) pairs."""
        self.bench = bench
        self.kcat = bench.a.kcat
        self.partitions = {}
        argv = [bench.a.mock_kafka, "--brokers", str(self.BROKERS)]
        for t in topics:
            name, parts = t if isinstance(t, tuple) else (t, self.PARTITIONS)
            self.partitions[name] = parts
            argv += ["--topic", "%s:%d" % (name, parts)]
        self.log = open(logpath, "ab")
        self.p = bench.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        ready, _, _ = select.select([self.p.stdout], [], [], 60)
        line = self.p.stdout.readline().decode("utf-8", "replace").strip() if ready else ""
        if not line.startswith("bootstrap ") or len(line.split()) != 2:
            self.stop()
            raise Broken("pgslotd-mock-kafka did not start (%r):\n%s" % (line, tail(logpath)))
        self.bootstrap = line.split()[1]

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        """End of input stops the mock; killed if it does not."""
        try:
            self.p.stdin.close()
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        self.log.close()

    def kcat_argv(self, args):
        # -F /dev/null: no kcat.conf of the user's comes into it.
        return [self.kcat, "-F", "/dev/null", "-b", self.bootstrap] + args

    def high_watermarks(self, topic):
        """{partition: high watermark} (kcat -Q, offset of timestamp -1)."""
        args = ["-Q"]
        parts = self.partitions.get(topic, self.PARTITIONS)
        for part in range(parts):
            args += ["-t", "%s:%d:-1" % (topic, part)]
        out = self.bench.run(self.kcat_argv(args), "kcat -Q " + topic, timeout=120)
        marks = {}
        for m in re.finditer(r"^(\S+) \[(\d+)\] offset (-?\d+)$", out, re.M):
            if m.group(1) == topic:
                marks[int(m.group(2))] = int(m.group(3))
        if sorted(marks) != list(range(parts)):
            raise Broken("kcat -Q %s: no offset for every partition:\n%s" % (topic, out))
        return marks

    def retained(self, topic):
        """{partition: [(offset, value)]}: what the mock still holds of the
        topic, read with kcat -C from the beginning to the end."""
        argv = self.kcat_argv(["-C", "-t", topic, "-o", "beginning", "-e", "-q",
                               "-X", "fetch.wait.max.ms=10", "-f", "%p %o %s\\n"])
        p = self.bench.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise Broken("kcat -C %s: did not finish within 300s" % topic)
        if p.returncode != 0:
            raise Broken("kcat -C %s failed (exit %d):\n%s" % (topic, p.returncode,
                                                              err.decode("utf-8", "replace")))
        recs = {}
        for line in out.split(b"\n")[:-1]:
            part, off, value = line.split(b" ", 2)
            recs.setdefault(int(part), []).append((int(off), value))
        for v in recs.values():
            v.sort()
        return recs


# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.a = args
        self.work = os.path.abspath(args.workdir)
        self.pgbin = args.pgbin
        self.sock = os.path.join(self.work, "sock")
        self.data = os.path.join(self.work, "data")
        self.pglog = os.path.join(self.work, "pglog", "postgres.log")
        self.out = os.path.join(self.work, "out")
        self.logs = os.path.join(self.work, "logs")
        self.state = os.path.join(self.work, "state")
        # Where pgslotd spools streamed transactions (format json): its size
        # is sampled during each run.
        self.spool_dir = os.path.join(self.state, "spool")
        self._replslot_stats = None  # whether pg_stat_replication_slots is there
        # The server listens on 127.0.0.1 too with --tcp, and with --compare
        # (which measures over both).
        self.listen_tcp = bool(args.tcp or args.compare)
        self.port = free_port() if self.listen_tcp else 5432
        self.db = "bench"
        # Clients connect through the Unix socket in the work directory, or
        # with --tcp through 127.0.0.1.
        self.conninfo = self.conninfo_for("tcp" if args.tcp else "unix")
        self.children = []  # Popen objects, each the leader of its own process group
        self.cluster_started = False
        self.problems = []  # things that broke; any makes the exit status 1
        self.as_root = os.geteuid() == 0
        self.results = {"mode": "quick" if args.quick else "full"}
        self.kafka_eo_skipped = None  # why the exactly_once Kafka case is not run
        self._ref_lines = (None, None)  # reference_lines' cache

    def transport_label(self):
        """Where the clients of the main comparison connect."""
        return "TCP on 127.0.0.1" if self.a.tcp else "the Unix socket"

    def conninfo_for(self, transport):
        """The clients' connection string over "unix" (the socket in the work
        directory) or "tcp" (127.0.0.1)."""
        host = "127.0.0.1" if transport == "tcp" else self.sock
        return "host=%s port=%d user=postgres dbname=%s" % (host, self.port, self.db)

    # -- processes ---------------------------------------------------------

    def pg_argv(self, argv):
        """initdb and pg_ctl refuse to run as root: run them as postgres."""
        return ["runuser", "-u", "postgres", "--"] + argv if self.as_root else argv

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.children.append(p)
        with open(os.path.join(self.work, "pids"), "a") as f:
            f.write("%d\n" % p.pid)
        return p

    def kill_children(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in self.children:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def run(self, argv, what, env=None, timeout=None, check=True):
        p = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise Broken("%s: did not finish within %ss" % (what, timeout))
        if check and p.returncode != 0:
            raise Broken("%s failed (exit %d):\n%s" % (what, p.returncode, out))
        return out

    def psql_argv(self, db=None):
        return [os.path.join(self.pgbin, "psql"), "-h", self.sock, "-p", str(self.port),
                "-U", "postgres", "-d", db or self.db]

    def sql(self, sql, db=None, env=None, timeout=None):
        argv = self.psql_argv(db) + ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return self.run(argv, "psql -c %r" % sql[:60], env=env, timeout=timeout).strip()

    def psql_session(self):
        return Psql(self.psql_argv(), os.path.join(self.logs, "psql-session.log"))

    # -- cluster -----------------------------------------------------------

    def make_dirs(self):
        for d in (self.out, self.logs, self.state):
            os.makedirs(d, exist_ok=True)
        for d in (self.sock, self.data, os.path.dirname(self.pglog)):
            os.makedirs(d, exist_ok=True)
            if self.as_root:
                pw = pwd.getpwnam("postgres")
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)

    def plugin_whitelist_line(self):
        """This PostgreSQL build may restrict output plugins to a list
        (output_plugin_libraries, default 'pgoutput, test_decoding'); stock
        PostgreSQL has no such setting and would refuse to start with it."""
        described = subprocess.run([os.path.join(self.pgbin, "postgres"), "--describe-config"],
                                   capture_output=True, text=True).stdout
        for line in described.splitlines():
            fields = line.split("\t")
            if fields[0] == "output_plugin_libraries":
                value = fields[4] if len(fields) > 4 else "pgoutput, test_decoding"
                if "wal2json" not in value:
                    value = (value + ", " if value else "") + "wal2json"
                return "output_plugin_libraries = '%s'\n" % value
        return ""

    def start_cluster(self):
        log("initdb into %s" % self.data)
        self.run(self.pg_argv([os.path.join(self.pgbin, "initdb"), "-D", self.data, "-U", "postgres",
                               "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
                               "--no-instructions"]), "initdb", timeout=300)
        conf = (
            "\n# pgslotd benchmark\n"
            "listen_addresses = '%s'\n"
            "unix_socket_directories = '%s'\n"
            "port = %d\n"
            "wal_level = logical\n"
            "max_replication_slots = 64\n"
            "max_wal_senders = 64\n"
            "shared_buffers = 256MB\n"
            "fsync = on\n"
            "synchronous_commit = on\n"   # the bulk workload sets it off for itself
            "max_wal_size = 4GB\n"
            "checkpoint_timeout = 1h\n"
            "autovacuum = off\n"          # no background noise while measuring
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
            "logging_collector = off\n"
            "log_min_messages = warning\n"
            % ("127.0.0.1" if self.listen_tcp else "", self.sock, self.port)
        ) + self.plugin_whitelist_line()
        # logical_decoding_work_mem keeps its default (64MB), which the big
        # transaction outgrows: the walsenders spill it, or stream it to a
        # client that asks for streaming (pgslotd json on its defaults). The
        # --quick run's 20,000 rows would fit, so there it is 1MB, for the
        # same paths to be taken.
        if self.a.quick:
            conf += "logical_decoding_work_mem = 1MB\n"
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(conf)
        self.cluster_started = True  # from here on, try to stop it
        self.run(self.pg_argv([os.path.join(self.pgbin, "pg_ctl"), "-D", self.data, "-l", self.pglog,
                               "-w", "-t", "120", "start"]), "pg_ctl start", timeout=180)
        log("cluster up: %s" % self.sql("SELECT version()", db="postgres"))

    def stop_cluster(self):
        if not self.cluster_started:
            return
        pg_ctl = os.path.join(self.pgbin, "pg_ctl")
        for mode in ("fast", "immediate"):
            rc = subprocess.run(self.pg_argv([pg_ctl, "-D", self.data, "-m", mode, "-w", "-t", "60",
                                              "stop"]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            if rc == 0 or not os.path.exists(os.path.join(self.data, "postmaster.pid")):
                break
        self.cluster_started = False

    # -- pgslotd configs -----------------------------------------------------

    def write_config(self, name, slots, fsync_interval="1s", binary=None, conninfo=None,
                     sinks=None):
        """slots: list of (slot name, plugin, format, options dict). binary
        checks the config (default: the pgslotd under test); conninfo
        defaults to the clients' connection string. sinks maps a slot to its
        sink's YAML flow map; the others get a file sink (outfile). Raises
        Refused (a Broken) when pgslotd --check does not accept it."""
        q = json.dumps
        binary = binary or self.a.pgslotd
        lines = [
            "# written by bench/bench.py",
            "connection: %s" % q(conninfo or self.conninfo),
            "state_directory: %s" % q(self.state),
            "runtime_directory: %s" % q(self.state),
            "log_level: info",
            "fsync_interval: %s" % fsync_interval,
            "slots:",
        ]
        for slot, plugin, fmt, options in slots:
            lines.append("  - name: %s" % slot)
            lines.append("    plugin: %s" % plugin)
            lines.append("    format: %s" % fmt)
            if options:
                lines.append("    options: {%s}" % ", ".join("%s: %s" % (q(k), q(v))
                                                            for k, v in options.items()))
            sink = (sinks or {}).get(slot) or "{type: file, path: %s}" % q(self.outfile(slot))
            lines.append("    sink: %s" % sink)
        path = os.path.join(self.work, name + ".yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = self.run([binary, "--config", path, "--check"], "pgslotd --check " + path,
                       check=False)
        if "config OK" not in out:
            raise Refused("pgslotd refuses the config %s:\n%s" % (path, out), out.strip())
        return path

    def outfile(self, slot):
        return os.path.join(self.out, slot + ".out")

    # -- one measured client run -------------------------------------------

    def wait_quiet(self, what):
        """Other programs on the machine (a build, a fuzzer) take CPU from the
        clients and the walsenders: wait (up to --wait-quiet seconds) until
        the machine is nearly idle before a measurement."""
        if self.a.wait_quiet <= 0:
            return
        deadline = time.time() + self.a.wait_quiet
        told = False
        while True:
            c0 = cpu_times()
            time.sleep(1)
            d = [b - a for a, b in zip(c0, cpu_times())]
            cores_busy = NPROC * d[0] / float(sum(d) or 1)
            if cores_busy <= self.a.quiet_cores:
                return
            if time.time() >= deadline:
                log("  the machine is still busy (%.2f cores) after waiting %ds; measuring anyway"
                    % (cores_busy, self.a.wait_quiet))
                self.results.setdefault("warnings", []).append(
                    "%s: measured while other programs kept %.2f cores busy" % (what, cores_busy))
                return
            if not told:
                log("  waiting for the machine to be quiet before %s (%.2f cores busy)"
                    % (what, cores_busy))
                told = True

    def timed_run(self, label, argv, slots, timeout, broker_pid=None):
        """Runs argv under /usr/bin/time while watching the slots' walsenders.
        broker_pid: a process that serves the client during the run (the
        Kafka mock); its CPU over the run is counted apart, not as other
        CPU."""
        self.wait_quiet(label)
        timefile = os.path.join(self.logs, label + ".time")
        logpath = os.path.join(self.logs, label + ".log")
        watch = WalsenderWatch(self, slots, spool_dir=self.spool_dir)
        with open(logpath, "wb") as lf:
            b0 = proc_stat(broker_pid) if broker_pid else None
            c0 = cpu_times()
            t0 = time.time()
            p = self.spawn([TIME, "-f", TIME_FORMAT, "-o", timefile] + argv, stdout=lf,
                           stderr=subprocess.STDOUT)
            watch.start()
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                rc = "timeout after %ds" % timeout
        t1 = time.time()
        c1 = cpu_times()
        b1 = proc_stat(broker_pid) if broker_pid else None
        ws = watch.finish()
        r = {"label": label, "rc": rc, "log": logpath, "t0": t0, "elapsed": t1 - t0, "ws": ws,
             "spool_peak": watch.spool_peak}
        if broker_pid:
            r["broker_cpu"] = (b1[0] - b0[0]) / CLK_TCK if b0 and b1 and b0[1] == b1[1] else None
        d = [b - a for a, b in zip(c0, c1)]
        total = float(sum(d)) or 1.0
        r["machine"] = {"busy_pct": 100 * d[0] / total, "idle_pct": 100 * d[1] / total,
                        "iowait_pct": 100 * d[2] / total, "steal_pct": 100 * d[3] / total}
        # The walsender's life within the run: from when it was first seen
        # active on the slot to when it exited.
        first = [v["found"] for v in ws.values() if v["found"]]
        last = [v["gone"] for v in ws.values() if v["gone"]]
        r["ws_seen_after"] = min(first) - t0 if first else None
        r["ws_exit_to_end"] = t1 - max(last) if last and len(last) == len(ws) else None
        r.update(parse_time_file(timefile))
        # CPU the machine spent on anything but the client and its walsenders:
        # the server's other processes, this script, the kernel's writeback,
        # and other programs. More than a fifth of a core on average (after a
        # tenth of a second for the fixed costs of a short run) means the run
        # was disturbed.
        if r.get("cpu") is not None:
            known = (r["cpu"] + sum(v["cpu"] or 0 for v in ws.values())
                     + (r.get("broker_cpu") or 0))
            r["other_cpu"] = max(0.0, d[0] / float(CLK_TCK) - known)
            r["disturbed"] = r["other_cpu"] > 0.1 + 0.2 * (t1 - t0)
        if rc != 0:
            r["error"] = "exit %s; last lines of %s:\n%s" % (rc, logpath, tail(logpath))
        return r

    # -- workload -----------------------------------------------------------

    def setup_schema(self):
        self.sql("CREATE DATABASE %s" % self.db, db="postgres")
        self.sql("CREATE TABLE t (id bigserial PRIMARY KEY, k int, v text, "
                 "ts timestamptz DEFAULT now());"
                 "CREATE TABLE lat (id bigserial PRIMARY KEY, k int, "
                 "ts timestamptz DEFAULT clock_timestamp());"
                 "CREATE PUBLICATION bench_pub FOR TABLE t;")

    def create_slots(self, slots):
        values = ",".join("('%s','%s')" % (s, p) for s, p in slots)
        self.sql("SELECT count(pg_create_logical_replication_slot(s, p)) FROM (VALUES %s) v(s, p)"
                 % values, timeout=120)

    def workload(self):
        a = self.a
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
        self.wait_quiet("the workload")
        log("workload: one transaction of %d rows" % a.rows)
        t0 = time.time()
        self.sql("INSERT INTO t (k, v) SELECT k, md5(k::text) FROM generate_series(1, %d) AS k"
                 % a.rows, env=env, timeout=3600)
        t1 = time.time()
        script = os.path.join(self.work, "insert.sql")
        with open(script, "w") as f:
            f.write("\\set k random(1, 1000000)\n"
                    "INSERT INTO t (k, v) VALUES (:k, md5(:k::text));\n")
        log("workload: pgbench -c %d -j %d -t %d (%d single-row transactions)"
            % (a.clients, a.threads, a.tx_per_client, a.clients * a.tx_per_client))
        out = self.run([os.path.join(self.pgbin, "pgbench"), "-n", "-c", str(a.clients), "-j",
                        str(a.threads), "-t", str(a.tx_per_client), "-f", script, "-h", self.sock,
                        "-p", str(self.port), "-U", "postgres", self.db], "pgbench", env=env,
                       timeout=3600)
        t2 = time.time()
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        done = int(m.group(1)) if m else 0
        if done != a.clients * a.tx_per_client:
            raise Broken("pgbench processed %d transactions, expected %d:\n%s"
                         % (done, a.clients * a.tx_per_client, out))
        # The insert position, not pg_current_wal_lsn(): that is the write
        # position, which with asynchronous commit can still be short of the
        # last commits (by up to a WAL page or two).
        end = self.sql("SELECT pg_current_wal_insert_lsn()")
        # Move the WAL on past the end position (nothing here is decoded into
        # any output), so that every client sees the server go beyond it, then
        # leave the table cleaned and the buffers written: no background work
        # while the clients are measured.
        self.sql("CHECKPOINT")
        self.sql("VACUUM ANALYZE t")
        self.sql("CHECKPOINT")
        tps = re.search(r"tps = ([\d.]+)", out)
        return {"end_lsn": end, "bulk_s": t1 - t0, "pgbench_s": t2 - t1,
                "pgbench_tps": float(tps.group(1)) if tps else None,
                "rows": a.rows + done, "transactions": 1 + done}

    # -- the main comparison -------------------------------------------------

    CONTENDERS = [
        # key, label, slot prefix, plugin
        ("rl_td", "pg_recvlogical + test_decoding", "rl_td", "test_decoding"),
        ("ps_td", "pgslotd raw + test_decoding", "ps_td", "test_decoding"),
        ("rl_w2j", "pg_recvlogical + wal2json v2", "rl_w2j", "wal2json"),
        ("ps_json", "pgslotd json + pgoutput", "ps_json", "pgoutput"),
        # Not in the targets: the json slot as it was configured before
        # pgslotd's defaults streamed (proto_version 1), to show what
        # streaming changes for the walsender on the same WAL.
        ("ps_json_v1", "pgslotd json + pgoutput, proto_version 1", "ps_json_v1", "pgoutput"),
    ]
    # pgoutput's options of the json slots. JSON_OPTIONS is all a json slot
    # needs to say, and so runs on pgslotd's defaults (proto_version 2 and
    # streaming on, on PostgreSQL 14 and later: src/pg/plugin_options.h);
    # JSON_V1_OPTIONS is the slot that asks for protocol 1 (no streaming).
    JSON_OPTIONS = {"publication_names": "bench_pub"}
    JSON_V1_OPTIONS = {"proto_version": "1", "publication_names": "bench_pub"}

    def file_contenders(self):
        """The file clients this run makes: all, or with --kafka-only only
        pgslotd raw + test_decoding (the file side of target 5a)."""
        if self.a.kafka_only:
            return [c for c in self.CONTENDERS if c[0] == "ps_td"]
        return self.CONTENDERS

    def contender_argv(self, key, slot, end):
        out = self.outfile(slot)
        rl = [os.path.join(self.pgbin, "pg_recvlogical"), "-d", self.conninfo, "-S", slot,
              "--start", "-f", out, "-F", "1", "--endpos", end, "--no-loop"]
        if key == "rl_td":
            return rl + ["-P", "test_decoding"]
        if key == "rl_w2j":
            return rl + ["-P", "wal2json", "-o", "format-version=2"]
        if key == "ps_td":
            cfg = self.write_config(slot, [(slot, "test_decoding", "raw", {})])
        else:
            cfg = self.write_config(slot, [(slot, "pgoutput", "json",
                                            self.JSON_V1_OPTIONS if key == "ps_json_v1"
                                            else self.JSON_OPTIONS)])
        return [self.a.pgslotd, "--config", cfg, "--end-lsn", end, "--log-target", "stderr"]

    def measure_output(self, r, slot):
        path = self.outfile(slot)
        if os.path.exists(path):
            r["bytes"] = os.path.getsize(path)
            r["lines"] = count_lines(path)
        else:
            r["bytes"] = r["lines"] = None

    def run_contenders(self, end, expect):
        """Each repetition runs every client once, in the order of
        CONTENDERS and then of the Kafka cases, each on its own slot."""
        kafka = self.kafka_contenders()
        files = self.file_contenders()
        runs = {k: [] for k, *_ in files + kafka}
        timeout = self.a.timeout
        for rep in range(1, self.a.reps + 1):
            for key, label, prefix, _ in files:
                slot = "%s_%d" % (prefix, rep)
                log("run %d/%d: %s (slot %s)" % (rep, self.a.reps, label, slot))
                r = self.timed_run(slot, self.contender_argv(key, slot, end), [slot], timeout)
                r.update(key=key, rep=rep, slot=slot)
                self.record_run(r, slot, "%s run %d" % (label, rep))
                if key == "ps_json" and "error" not in r:
                    self.check_streamed(r, "%s run %d" % (label, rep))
                runs[key].append(r)
            self.check_outputs(rep, expect)
            for key, label, prefix, _ in kafka:
                if key == "ps_kafka_eo" and self.kafka_eo_skipped:
                    continue
                slot = "%s_%d" % (prefix, rep)
                log("run %d/%d: %s (slot %s)" % (rep, self.a.reps, label, slot))
                r = self.kafka_run(key, label, slot, end, expect, rep)
                if r is not None:
                    runs[key].append(r)
            if not self.a.keep:
                for _, _, prefix, _ in files:
                    try:
                        os.unlink(self.outfile("%s_%d" % (prefix, rep)))
                    except FileNotFoundError:
                        pass
        return runs

    # -- Kafka: the same WAL into the mock cluster ------------------------------

    KAFKA_CONTENDERS = [
        # key, label, slot prefix (and topic), plugin
        ("rl_kcat", "pg_recvlogical + test_decoding, piped to kcat -P", "rl_kcat",
         "test_decoding"),
        ("ps_kafka", "pgslotd raw + test_decoding, Kafka sink", "ps_kafka", "test_decoding"),
        ("ps_kafka_eo", "pgslotd raw + test_decoding, Kafka sink, exactly_once", "ps_kafka_eo",
         "test_decoding"),
    ]
    # What each side promises, for the report (docs/performance.md says why).
    GUARANTEES = {
        "rl_kcat": "kcat: acks=all, not idempotent, records spread over the partitions (no "
                   "order across them); pg_recvlogical acknowledges what it wrote into the pipe, "
                   "so what kcat has not delivered is lost if kcat or the host dies",
        "ps_kafka": "at least once (exactly_once: false): acks=all, idempotent producer, "
                    "acknowledged only once delivered; every record in partition 0, in commit "
                    "order",
        "ps_kafka_eo": "exactly once (exactly_once: true): whole PostgreSQL transactions in "
                       "Kafka transactions, each ending with the slot's position record in "
                       "pgslotd_positions, acknowledged once committed; every record in "
                       "partition 0, in commit order",
    }
    KAFKA_SINK = "{type: kafka, brokers: %s, exactly_once: %s}"
    POSITION_TOPIC = "pgslotd_positions"  # pgslotd's default position_topic

    def kafka_contenders(self):
        """The Kafka cases this run makes: none with --skip-kafka; the
        exactly_once one only with --kafka-exactly-once."""
        if self.a.skip_kafka:
            return []
        return [c for c in self.KAFKA_CONTENDERS
                if c[0] != "ps_kafka_eo" or self.a.kafka_exactly_once]

    def check_kafka_eo_config(self):
        """Whether pgslotd takes a kafka sink with exactly_once: true; if not,
        the exactly_once case is skipped, and the report says why."""
        slot = "ps_kafka_eo_check"
        try:
            self.write_config(slot, [(slot, "test_decoding", "raw", {})],
                              sinks={slot: self.KAFKA_SINK % ('"127.0.0.1:9"', "true")})
            return True
        except Refused as e:
            self.skip_kafka_eo("pgslotd --check refuses exactly_once: true: %s" % e.output)
            return False

    def skip_kafka_eo(self, why):
        self.kafka_eo_skipped = why
        self.results["kafka_eo_skipped"] = why
        log("  the exactly_once case is skipped: " + why.splitlines()[0])

    def pipeline_argv(self, slot, topic, end, mock):
        """pg_recvlogical -f - | kcat -P, each under its own /usr/bin/time
        (the outer one times the whole pipeline): the argv and the time
        files of the two."""
        rl = [os.path.join(self.pgbin, "pg_recvlogical"), "-d", self.conninfo, "-S", slot,
              "--start", "-f", "-", "-F", "1", "--endpos", end, "--no-loop", "-P", "test_decoding"]
        kc = mock.kcat_argv(["-P", "-t", topic])
        tf = {n: os.path.join(self.logs, "%s.%s.time" % (slot, n))
              for n in ("pg_recvlogical", "kcat")}
        timed = lambda name, argv: " ".join(
            shlex.quote(x) for x in [TIME, "-f", TIME_FORMAT, "-o", tf[name]] + argv)
        script = "set -o pipefail; %s | %s" % (timed("pg_recvlogical", rl), timed("kcat", kc))
        return ["bash", "-c", script], tf

    def kafka_run(self, key, label, slot, end, expect, rep):
        """One timed run into a mock cluster of its own (its topic is the
        slot's name), checked against what the topic holds afterwards.
        Returns the run, or None when the exactly_once case is skipped."""
        what = "%s run %d" % (label, rep)
        # With exactly_once: true every Kafka transaction ends with the
        # slot's position record in partition 0 of pgslotd_positions (the
        # default position_topic): made here with that one partition.
        topics = [slot] + ([(self.POSITION_TOPIC, 1)] if key == "ps_kafka_eo" else [])
        mock = MockKafka(self, topics, os.path.join(self.logs, slot + ".mock-kafka.log"))
        try:
            parts = None
            if key == "rl_kcat":
                argv, parts = self.pipeline_argv(slot, slot, end, mock)
            else:
                eo = key == "ps_kafka_eo"
                try:
                    cfg = self.write_config(slot, [(slot, "test_decoding", "raw", {})], sinks={
                        slot: self.KAFKA_SINK % (json.dumps(mock.bootstrap),
                                                 "true" if eo else "false")})
                except Refused as e:
                    if not eo:
                        raise
                    self.skip_kafka_eo("pgslotd --check refuses exactly_once: true: %s"
                                       % e.output)
                    return None
                argv = [self.a.pgslotd, "--config", cfg, "--end-lsn", end, "--log-target",
                        "stderr"]
            r = self.timed_run(slot, argv, [slot], self.a.timeout, broker_pid=mock.pid)
            r.update(key=key, rep=rep, slot=slot, kafka=True)
            if key == "ps_kafka_eo" and r["rc"] == 78:  # EX_CONFIG: the daemon refused it
                self.skip_kafka_eo("pgslotd refused exactly_once: true when it started (exit 78):"
                                   "\n%s" % tail(r["log"]))
                return None
            if parts:
                # The pipeline's CPU is the two programs' (the outer time adds
                # bash and the two time processes); their peaks add up, since
                # both run for the whole run.
                p = {n: parse_time_file(f) for n, f in parts.items()}
                r["parts"] = p
                if all(x["cpu"] is not None for x in p.values()):
                    r["outer_cpu"] = r["cpu"]
                    for f in ("user", "sys", "cpu", "rss_mib", "vcsw", "icsw"):
                        r[f] = sum(x[f] for x in p.values())
            if "error" not in r:
                self.check_kafka(r, key, slot, mock, expect, rep, what)
                if key == "ps_kafka_eo":
                    # One position record per committed Kafka transaction:
                    # none means pgslotd ran no transactions.
                    r["position_records"] = mock.high_watermarks(self.POSITION_TOPIC)[0]
            self.record_run(r, slot, what)
            return r
        finally:
            mock.stop()

    def check_kafka(self, r, key, topic, mock, expect, rep, what):
        """The topic must hold one record per test_decoding line (the sum of
        its high watermarks); pgslotd's all in partition 0. What the mock
        still holds of it (its last 5 MiB or so per partition) must be, for
        pgslotd, the end of pg_recvlogical's file of this repetition byte for
        byte and in order; for the pipeline, lines of that file."""
        want = expect["td_lines"]
        marks = mock.high_watermarks(topic)
        total = sum(marks.values())
        r.update(lines=total, records=total, partitions=marks)
        if total != want:
            self.problems.append(
                "%s: topic %s holds %d records (high watermarks %s), expected %d%s"
                % (what, topic, total, marks, want,
                   " (duplicates)" if total > want else ""))
        ordered = key != "rl_kcat"
        if ordered and any(n for part, n in marks.items() if part != 0):
            self.problems.append("%s: records outside partition 0: high watermarks %s"
                                 % (what, marks))
        held = mock.retained(topic)
        n_held = sum(len(v) for v in held.values())
        r["retained"] = n_held
        for part, recs in held.items():
            offs = [o for o, _ in recs]
            if offs != list(range(offs[0], offs[0] + len(offs))) or offs[-1] != marks[part] - 1:
                self.problems.append("%s: partition %d holds offsets %d..%d with gaps, high "
                                     "watermark %d" % (what, part, offs[0], offs[-1], marks[part]))
        if total and not n_held:
            self.problems.append("%s: kcat -C read nothing back from topic %s" % (what, topic))
        ref = self.outfile("rl_td_%d" % rep)
        if not os.path.exists(ref):  # --kafka-only: pgslotd's file, the same bytes
            ref = self.outfile("ps_td_%d" % rep)
        if not os.path.exists(ref):
            r["content_check"] = "not checked (no test_decoding file in this repetition)"
            return
        if ordered:
            expected_tail = b"".join(v + b"\n" for _, v in held.get(0, []))
            with open(ref, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                start = size - len(expected_tail)
                f.seek(max(0, start - 1))
                got = f.read()
            whole = start == 0 or (start > 0 and got[:1] == b"\n")
            if start < 0 or not whole or got[-len(expected_tail):] != expected_tail:
                self.problems.append("%s: the %d records the mock still holds are not the last "
                                     "%d lines of %s" % (what, n_held, n_held, ref))
            r["content_check"] = "last %d records = last %d lines of the file, in order" % (
                n_held, n_held)
        else:
            lines = self.reference_lines(ref)
            foreign = sum(1 for recs in held.values() for _, v in recs if hash(v) not in lines)
            if foreign:
                self.problems.append("%s: %d of the %d records the mock still holds are no line "
                                     "of %s" % (what, foreign, n_held, ref))
            r["content_check"] = "last %d records each a line of the file" % n_held

    def reference_lines(self, path):
        """The hashes of path's lines (kept for the last path asked)."""
        if self._ref_lines[0] != path:
            with open(path, "rb") as f:
                self._ref_lines = (path, {hash(x) for x in f.read().split(b"\n")})
        return self._ref_lines[1]

    def record_run(self, r, slot, what):
        """Adds the walsender's figures and the output's size to a timed run
        of one slot, logs it, and counts a failure or a reconnect as a
        problem (what names the run in the message)."""
        ws = r["ws"][slot]
        r["ws_cpu"] = ws["cpu"]
        r["ws_sessions"] = ws["sessions"]
        r["ws_waits"] = ws["waits"]
        r["host_cpu"] = (r["cpu"] + r["ws_cpu"] if r.get("cpu") is not None
                         and r["ws_cpu"] is not None else None)
        r["slot_stats"] = self.slot_stats(slot)
        m = re.search(r"\(plugin ([^;]+);", read_file(r["log"]))
        r["session"] = m.group(1) if m else None
        if not r.get("kafka"):
            self.measure_output(r, slot)
        else:
            r.setdefault("lines", None)
            r["bytes"] = None
        if "error" in r:
            self.problems.append("%s: %s" % (what, r["error"]))
            log("  FAILED: " + r["error"])
        else:
            log("  wall %.2fs, client CPU %.2fs, RSS %.1f MiB, walsender CPU %s, %s %s%s"
                % (r["wall"], r["cpu"], r["rss_mib"],
                   "%.2fs" % r["ws_cpu"] if r["ws_cpu"] is not None else "n/a", r["lines"],
                   "records" if r.get("kafka") else "lines",
                   ", broker CPU %.2fs" % r["broker_cpu"] if r.get("broker_cpu") is not None
                   else ""))
        if ws["sessions"] > 1:
            self.problems.append("%s: the client connected %d times (a reconnect?)"
                                 % (what, ws["sessions"]))

    def check_streamed(self, r, what):
        """pgslotd json on its defaults should have had the big transaction
        streamed, not spilled (PostgreSQL 14 and later); a warning if not."""
        st = r.get("slot_stats")
        if st and (st["stream_txns"] == 0 or st["spill_txns"] > 0):
            self.results.setdefault("warnings", []).append(
                "%s: the walsender streamed %d and spilled %d transactions (session: %s); "
                "pgslotd's defaults should stream the big one" % (
                    what, st["stream_txns"], st["spill_txns"], r.get("session")))

    def slot_stats(self, slot):
        """What the slot's walsender did with transactions larger than
        logical_decoding_work_mem, from pg_stat_replication_slots (PostgreSQL
        14 and later; {} before): spilled to disk and read back at the
        commit (spill_*), or streamed while still running (stream_*). The
        walsender writes them into shared memory as it decodes, so they are
        complete once it has exited."""
        if self._replslot_stats is False:
            return {}
        cols = ("spill_txns", "spill_bytes", "stream_txns", "stream_bytes", "total_txns",
                "total_bytes")
        try:
            row = self.sql("SELECT %s FROM pg_stat_replication_slots WHERE slot_name = '%s'"
                           % (", ".join(cols), slot))
        except Broken:
            self._replslot_stats = False
            return {}
        self._replslot_stats = True
        if not row:
            return {}
        return {c: int(v) for c, v in zip(cols, row.split("|"))}

    def check_outputs(self, rep, expect):
        """pgslotd raw must write exactly what pg_recvlogical writes; pgslotd
        json one line per row."""
        a, b = self.outfile("rl_td_%d" % rep), self.outfile("ps_td_%d" % rep)
        if os.path.exists(a) and os.path.exists(b):
            if os.path.getsize(a) != os.path.getsize(b) or md5_file(a) != md5_file(b):
                self.problems.append(
                    "run %d: pgslotd raw output differs from pg_recvlogical's (%d vs %d bytes)"
                    % (rep, os.path.getsize(b), os.path.getsize(a)))
            elif count_lines(a) != expect["td_lines"]:
                self.problems.append("run %d: test_decoding output has %d lines, expected %d"
                                     % (rep, count_lines(a), expect["td_lines"]))
        elif os.path.exists(b) and count_lines(b) != expect["td_lines"]:  # --kafka-only
            self.problems.append("run %d: pgslotd raw output has %d lines, expected %d"
                                 % (rep, count_lines(b), expect["td_lines"]))
        for key in ("ps_json", "ps_json_v1"):
            j = self.outfile("%s_%d" % (key, rep))
            if os.path.exists(j):
                n = count_lines(j)
                if n != expect["rows"]:
                    self.problems.append("run %d: %s wrote %d lines, expected one per row (%d)"
                                         % (rep, key, n, expect["rows"]))
        # Streamed or not, the json lines should be the same (a warning, not a
        # failure, if not: output-formats.md says where they may differ).
        j, j1 = self.outfile("ps_json_%d" % rep), self.outfile("ps_json_v1_%d" % rep)
        if os.path.exists(j) and os.path.exists(j1):
            same = os.path.getsize(j) == os.path.getsize(j1) and md5_file(j) == md5_file(j1)
            self.results.setdefault("json_same_as_v1", []).append(same)
            if not same:
                self.results.setdefault("warnings", []).append(
                    "run %d: pgslotd json's output on its defaults differs from proto_version "
                    "1's (%d vs %d bytes)" % (rep, os.path.getsize(j), os.path.getsize(j1)))

    # -- two pgslotd builds, interleaved (--compare) ---------------------------

    COMPARE_CASES = [
        # key, label, plugin, format, options, transport
        ("raw_unix", "raw + test_decoding, Unix socket", "test_decoding", "raw", {}, "unix"),
        ("json_unix", "json + pgoutput, Unix socket", "pgoutput", "json", JSON_OPTIONS, "unix"),
        ("raw_tcp", "raw + test_decoding, TCP", "test_decoding", "raw", {}, "tcp"),
        ("json_tcp", "json + pgoutput, TCP", "pgoutput", "json", JSON_OPTIONS, "tcp"),
    ]
    BUILDS = ("old", "new")  # the order within each pair of runs
    NOISE = 1.10  # a new/old ratio above this is outside the run-to-run noise

    def compare_cases(self):
        """Every case, or with --tcp only those over TCP."""
        return [c for c in self.COMPARE_CASES if not self.a.tcp or c[5] == "tcp"]

    @staticmethod
    def compare_slot(key, build, rep):
        return "cmp_%s_%s_%d" % (key, build, rep)

    def run_compare(self, end, expect):
        """Each case with the old build, then with the new one, then the next
        case; then the next repetition. Each run drains its own slot to end."""
        binaries = {"old": self.a.compare, "new": self.a.pgslotd}
        cases = self.compare_cases()
        runs = {key: {b: [] for b in self.BUILDS} for key, *_ in cases}
        for rep in range(1, self.a.reps + 1):
            for key, label, plugin, fmt, options, transport in cases:
                for build in self.BUILDS:
                    slot = self.compare_slot(key, build, rep)
                    cfg = self.write_config(slot, [(slot, plugin, fmt, options)],
                                            binary=binaries[build],
                                            conninfo=self.conninfo_for(transport))
                    log("run %d/%d: %s, %s build (slot %s)"
                        % (rep, self.a.reps, label, build, slot))
                    argv = [binaries[build], "--config", cfg, "--end-lsn", end, "--log-target",
                            "stderr"]
                    r = self.timed_run(slot, argv, [slot], self.a.timeout)
                    r.update(key=key, build=build, rep=rep, slot=slot)
                    self.record_run(r, slot, "%s, %s build, run %d" % (label, build, rep))
                    runs[key][build].append(r)
                self.check_compare_outputs(key, fmt, rep, expect)
        return runs

    def check_compare_outputs(self, key, fmt, rep, expect):
        """Both builds' raw outputs must be the same bytes, with rows + 2 x
        transactions lines; json outputs one line per row each. json outputs
        that differ between the builds are a warning (a format change?)."""
        paths = {b: self.outfile(self.compare_slot(key, b, rep)) for b in self.BUILDS}
        if not all(os.path.exists(p) for p in paths.values()):
            return  # the failed run is already a problem
        want = expect["td_lines"] if fmt == "raw" else expect["rows"]
        for build, path in paths.items():
            n = count_lines(path)
            if n != want:
                self.problems.append("%s, %s build, run %d: %d lines, expected %d"
                                     % (key, build, rep, n, want))
        same = (os.path.getsize(paths["old"]) == os.path.getsize(paths["new"])
                and md5_file(paths["old"]) == md5_file(paths["new"]))
        if not same:
            what = "%s run %d: the old and the new build's outputs differ (%d vs %d bytes)" % (
                key, rep, os.path.getsize(paths["old"]), os.path.getsize(paths["new"]))
            if fmt == "raw":
                self.problems.append(what)
            else:
                self.results.setdefault("warnings", []).append(what + "; a json format change?")
        if not self.a.keep:
            for path in paths.values():
                os.unlink(path)

    # -- 8 busy slots in one process ------------------------------------------

    def run_busy(self, end, n):
        slots = ["busy_%d" % i for i in range(1, n + 1)]
        cfg = self.write_config("busy", [(s, "test_decoding", "raw", {}) for s in slots])
        log("busy: %d slots in one pgslotd over the same WAL" % n)
        r = self.timed_run("busy", [self.a.pgslotd, "--config", cfg, "--end-lsn", end,
                                    "--log-target", "stderr"], slots, self.a.timeout * 2)
        if "error" in r:
            self.problems.append("busy slots: " + r["error"])
        per = []
        for s in slots:
            ws = r["ws"][s]
            size = os.path.getsize(self.outfile(s)) if os.path.exists(self.outfile(s)) else None
            per.append({"slot": s, "ws_cpu": ws["cpu"], "ws_waits": ws["waits"],
                        "done_s": ws["gone"] - r["t0"] if ws["gone"] else None, "bytes": size})
        sizes = {p["bytes"] for p in per}
        if len(sizes) != 1:
            self.problems.append("busy slots: the outputs differ in size: %s" % sorted(
                x for x in sizes if x is not None))
        if not self.a.keep:
            for s in slots:
                if os.path.exists(self.outfile(s)):
                    os.unlink(self.outfile(s))
        r["per_slot"] = per
        return r

    # -- idle ----------------------------------------------------------------

    def run_idle(self, n, seconds):
        slots = ["idle_%02d" % i for i in range(1, n + 1)]
        self.create_slots([(s, "test_decoding") for s in slots])
        cfg = self.write_config("idle", [(s, "test_decoding", "raw", {}) for s in slots])
        logpath = os.path.join(self.logs, "idle.log")
        log("idle: %d idle slots in one pgslotd, %ds" % (n, seconds))
        with open(logpath, "wb") as lf:
            p = self.spawn([self.a.pgslotd, "--config", cfg, "--log-target", "stderr"], stdout=lf,
                           stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        active = 0
        while time.time() < deadline and p.poll() is None:
            active = int(self.sql("SELECT count(*) FROM pg_replication_slots "
                                  "WHERE slot_name LIKE 'idle\\_%' AND active"))
            if active == n:
                break
            time.sleep(0.2)
        if active != n:
            p.terminate()
            p.wait()
            raise Broken("idle: only %d of %d slots became active:\n%s" % (active, n, tail(logpath)))
        time.sleep(3)  # let the start-up settle
        self.wait_quiet("the idle measurement")
        s0, t0 = proc_stat(p.pid), time.time()
        time.sleep(seconds)
        s1, t1 = proc_stat(p.pid), time.time()
        status = proc_status(p.pid)
        os.kill(p.pid, signal.SIGTERM)
        rc = p.wait(30)
        if rc != 0:
            self.problems.append("idle: pgslotd exited %d after SIGTERM:\n%s" % (rc, tail(logpath)))
        cpu = (s1[0] - s0[0]) / CLK_TCK
        return {"slots": n, "seconds": t1 - t0, "cpu_s": cpu, "cpu_pct": 100.0 * cpu / (t1 - t0),
                "rss_mib": kib(status.get("VmRSS")) / 1024.0,
                "hwm_mib": kib(status.get("VmHWM")) / 1024.0,
                "threads": int(status.get("Threads", "0"))}

    # -- latency ---------------------------------------------------------------

    def run_latency(self, fsync_interval, rate, seconds):
        slot = "lat_fsync_%s" % fsync_interval.replace("ms", "").replace("s", "")
        self.create_slots([(slot, "test_decoding")])
        cfg = self.write_config(slot, [(slot, "test_decoding", "raw",
                                        {"include-timestamp": "1"})],
                                fsync_interval=fsync_interval)
        trace = os.path.join(self.logs, slot + ".strace")
        logpath = os.path.join(self.logs, slot + ".log")
        log("latency: fsync_interval %s, pgbench --rate %d for %ds" % (fsync_interval, rate, seconds))
        # Only these syscalls stop the process (seccomp-bpf): the writes and
        # syncs of the sink, to know when each line was written and synced,
        # and the state record's steps (openat of <slot>.state.tmp, its
        # write and fsync, the rename to <slot>.state, openat and fsync of
        # the state directory), to know when it became acknowledgeable.
        # "?rename": not an error where the architecture has no rename(2).
        with open(logpath, "wb") as lf:
            p = self.spawn(["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-s", "0",
                            "-e", "trace=openat,write,fdatasync,fsync,?rename,renameat,renameat2",
                            "-o", trace,
                            self.a.pgslotd, "--config", cfg, "--log-target", "stderr"],
                           stdout=lf, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if self.sql("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'"
                        % slot) == "t":
                break
            time.sleep(0.1)
        else:
            raise Broken("latency: pgslotd did not start streaming:\n%s" % tail(logpath))
        time.sleep(1)
        self.wait_quiet("the latency measurement")
        script = os.path.join(self.work, "lat.sql")
        with open(script, "w") as f:
            f.write("\\set k random(1, 1000000)\nINSERT INTO lat (k) VALUES (:k);\n")
        out = self.run([os.path.join(self.pgbin, "pgbench"), "-n", "-c", "4", "-j", "2",
                        "--rate", str(rate), "-T", str(seconds), "-f", script, "-h", self.sock,
                        "-p", str(self.port), "-U", "postgres", self.db], "pgbench --rate",
                       timeout=seconds + 120)
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        done = int(m.group(1)) if m else 0
        end = self.sql("SELECT pg_current_wal_insert_lsn()")
        self.sql("CHECKPOINT")  # WAL beyond the end, so keepalives pass it
        deadline = time.time() + 30
        acked = False
        while time.time() < deadline:
            if self.sql("SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots "
                        "WHERE slot_name = '%s'" % (end, slot)) == "t":
                acked = True
                break
            time.sleep(0.1)
        # SIGTERM to pgslotd itself (strace's child): it stops cleanly, and
        # strace exits with its status.
        children = read_file("/proc/%d/task/%d/children" % (p.pid, p.pid)).split()
        os.kill(int(children[0]) if children else p.pid, signal.SIGTERM)
        try:
            rc = p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise Broken("latency (%s): pgslotd did not stop within 60s of SIGTERM"
                         % fsync_interval)
        if rc != 0:
            self.problems.append("latency (%s): pgslotd under strace exited %d:\n%s"
                                 % (fsync_interval, rc, tail(logpath)))
        if not acked:
            self.problems.append("latency (%s): the slot was not acknowledged up to %s within 30s"
                                 % (fsync_interval, end))
        r = self.latency_from_trace(trace, self.outfile(slot), slot)
        r.update(fsync_interval=fsync_interval, target_rate=rate, seconds=seconds, committed=done,
                 rate=done / float(seconds))
        if r["commits"] != done:
            self.problems.append("latency (%s): %d COMMIT lines in the file, pgbench committed %d"
                                 % (fsync_interval, r["commits"], done))
        # pgslotd stopped cleanly: every line was synced and recorded.
        if r["synced"] != r["commits"] or r["acknowledgeable"] != r["commits"]:
            self.problems.append("latency (%s): of %d COMMIT lines, %d were followed by an "
                                 "fdatasync of the file and %d by a state record in the trace"
                                 % (fsync_interval, r["commits"], r["synced"],
                                    r["acknowledgeable"]))
        return r

    @staticmethod
    def parse_strace(trace):
        """[(syscall, fd, ret, start, end, args)] from strace -f -ttt -T output,
        in the order of their start times; fd is the first argument when it is
        a number, args the text between the parentheses. A call that another
        thread's call interrupted in the trace is written as "<unfinished
        ...>" and "<... name resumed>": put back together."""
        calls, pending = [], {}
        head = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
        body = re.compile(r"^(\w+)\((.*)\)\s*=\s*(-?\d+)[^<]*<([\d.]+)>\s*$")
        with open(trace) as f:
            for line in f:
                m = head.match(line.rstrip("\n"))
                if not m:
                    continue
                pid, ts, rest = m.group(1), float(m.group(2)), m.group(3)
                if rest.endswith("<unfinished ...>"):
                    pending[pid] = (ts, rest[:-len("<unfinished ...>")])
                    continue
                if rest.startswith("<..."):
                    if pid not in pending:
                        continue
                    ts, start_text = pending.pop(pid)
                    rest = start_text + rest.split("resumed>", 1)[1]
                b = body.match(rest)
                if not b:
                    continue
                args = b.group(2)
                fd = re.match(r"(\d+)\b", args)
                calls.append((b.group(1), int(fd.group(1)) if fd else None, int(b.group(3)), ts,
                              ts + float(b.group(4)), args))
        calls.sort(key=lambda c: c[3])
        return calls

    @staticmethod
    def strace_paths(args):
        """The quoted paths among a call's arguments (strace prints file names
        in full whatever -s says)."""
        return [p.encode("latin-1", "backslashreplace").decode("unicode_escape")
                for p in re.findall(r'"((?:[^"\\]|\\.)*)"', args)]

    def latency_from_trace(self, trace, outfile, slot):
        """When each COMMIT line of outfile was written, made durable (the data
        file's fdatasync) and acknowledgeable (the state record that covers it
        renamed into place and its directory synced), from pgslotd's trace."""
        calls = self.parse_strace(trace)
        state_dir = os.path.normpath(self.state)
        record = os.path.join(state_dir, slot + ".state")
        tmp = record + ".tmp"
        # Which path each descriptor was opened on: close() is not traced (it
        # would stop the process twice more per record), so a descriptor
        # keeps its last openat's path until an openat hands it out again.
        # Everything that matters here is opened with openat.
        fd_path = {}
        writes, syncs = [], []
        rec_syncs, renames, dir_syncs = [], [], []
        offset = 0
        opened_out = False
        for name, cfd, ret, start, end, args in calls:
            if ret < 0:
                continue
            if name == "openat":
                paths = self.strace_paths(args)
                if paths:
                    path = os.path.normpath(paths[0])
                    fd_path[ret] = path
                    opened_out = opened_out or path == outfile
                continue
            if name in ("rename", "renameat", "renameat2"):
                paths = [os.path.normpath(x) for x in self.strace_paths(args)]
                if paths[:1] == [tmp] and paths[1:2] == [record]:
                    renames.append((start, end))
                continue
            path = fd_path.get(cfd)
            if path == outfile:
                if name == "write":
                    offset += ret
                    writes.append((offset, end))  # bytes [.., offset) are in the file at `end`
                elif name in ("fdatasync", "fsync"):
                    syncs.append((start, end))
            elif name in ("fdatasync", "fsync"):
                if path == tmp:
                    rec_syncs.append((start, end))
                elif path == state_dir:
                    dir_syncs.append((start, end))
        if not opened_out:
            raise Broken("latency: no openat of %s in %s" % (outfile, trace))
        # The record that follows a data sync: the first rename of the record
        # that started after the sync ended, then the first fsync of the state
        # directory that started after that rename ended. Only then may the
        # flush position be acknowledged.
        ack_after = []  # per data sync: when its record was durable, or None
        ri = di = 0
        for _, s_end in syncs:
            while ri < len(renames) and renames[ri][0] < s_end:
                ri += 1
            if ri == len(renames):
                ack_after.append(None)
                continue
            while di < len(dir_syncs) and dir_syncs[di][0] < renames[ri][1]:
                di += 1
            ack_after.append(dir_syncs[di][1] if di < len(dir_syncs) else None)
        commit_re = re.compile(rb"^COMMIT \d+ \(at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?"
                               rb"([+-]\d\d)(?::?(\d\d))?\)$")
        visible, durable, ackable = [], [], []
        wi = si = 0
        pos = 0
        with open(outfile, "rb") as f:
            for line in f:
                pos += len(line)
                m = commit_re.match(line.rstrip(b"\n"))
                if not m:
                    continue
                base = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S")
                frac = float(m.group(2) or b"0")
                off = timedelta(hours=int(m.group(3)), minutes=int(m.group(4) or b"0")
                                * (1 if m.group(3)[0:1] == b"+" else -1))
                commit = (base - off).replace(tzinfo=timezone.utc).timestamp() + frac
                while wi < len(writes) and writes[wi][0] < pos:
                    wi += 1
                if wi == len(writes):
                    break
                written = writes[wi][1]
                while si < len(syncs) and syncs[si][0] < written:
                    si += 1
                visible.append(written - commit)
                if si < len(syncs):
                    durable.append(syncs[si][1] - commit)
                    if ack_after[si] is not None:
                        ackable.append(ack_after[si] - commit)
        ms = lambda v: 1000.0 * v
        return {"commits": len(visible), "synced": len(durable), "acknowledgeable": len(ackable),
                "writes": len(writes), "syncs": len(syncs), "records": len(renames),
                "record_fsyncs": len(rec_syncs), "dir_fsyncs": len(dir_syncs),
                "visible_p50_ms": ms(pct(visible, 50)), "visible_p99_ms": ms(pct(visible, 99)),
                "durable_p50_ms": ms(pct(durable, 50)), "durable_p99_ms": ms(pct(durable, 99)),
                "durable_max_ms": ms(max(durable)) if durable else float("nan"),
                "ack_p50_ms": ms(pct(ackable, 50)), "ack_p99_ms": ms(pct(ackable, 99)),
                "ack_max_ms": ms(max(ackable)) if ackable else float("nan")}

    # -- profile ---------------------------------------------------------------

    PROFILE_SLOTS = ["prof_ps_perf", "prof_rl_perf", "prof_ps_strace", "prof_rl_strace"]

    def profile_argv(self, slot, end):
        if "_rl_" in slot:
            return [os.path.join(self.pgbin, "pg_recvlogical"), "-d", self.conninfo, "-S", slot,
                    "--start", "-f", self.outfile(slot), "-F", "1", "--endpos", end, "--no-loop"]
        cfg = self.write_config(slot, [(slot, "test_decoding", "raw", {})])
        return [self.a.pgslotd, "--config", cfg, "--end-lsn", end, "--log-target", "stderr"]

    @staticmethod
    def perf_lines(text):
        out = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            out.append(re.sub(r"(\s+-)+\s*$", "", line.rstrip()))
        return "\n".join(out)

    def run_profile(self, end):
        """Both test_decoding clients under perf (cpu-clock sampling), then under
        strace -c -f. Not timed: where the CPU time goes, and how many system
        calls each makes per message."""
        res = {}
        for slot, who in (("prof_ps_perf", "pgslotd"), ("prof_rl_perf", "pg_recvlogical")):
            data = os.path.join(self.logs, slot + ".perf.data")
            self.wait_quiet(slot)
            log("profile: perf record -e cpu-clock %s" % who)
            self.run(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-o", data, "--"]
                     + self.profile_argv(slot, end), "perf record", timeout=self.a.timeout)
            rep = lambda sort, limit: self.perf_lines(self.run(
                ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                 "-g", "none", "--percent-limit", limit], "perf report", timeout=600))
            res[slot] = {"dso": rep("dso", "0.5"), "sym": rep("dso,sym", "1")}
            with open(os.path.join(self.logs, slot + ".perf-report.txt"), "w") as f:
                f.write(res[slot]["dso"] + "\n\n" + rep("dso,sym", "0.1") + "\n")
            if not self.a.keep:
                os.unlink(self.outfile(slot))
                os.unlink(data)
        for slot, who in (("prof_ps_strace", "pgslotd"), ("prof_rl_strace", "pg_recvlogical")):
            summary = os.path.join(self.logs, slot + ".strace-c")
            self.wait_quiet(slot)
            log("profile: strace -c -f %s" % who)
            self.run(["strace", "-c", "-f", "-o", summary] + self.profile_argv(slot, end),
                     "strace -c", timeout=self.a.timeout * 3)
            msgs = count_lines(self.outfile(slot))
            res[slot] = {"messages": msgs, "summary": read_file(summary),
                         "per_1000": self.syscalls_per_1000(read_file(summary), msgs)}
            if not self.a.keep:
                os.unlink(self.outfile(slot))
        return res

    @staticmethod
    def syscalls_per_1000(summary, msgs):
        out = {}
        for line in summary.splitlines():
            f = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                try:
                    calls = int(f[3])
                except ValueError:
                    continue
                out[f[-1]] = round(1000.0 * calls / msgs, 2) if msgs else None
        return out

    # -- report ------------------------------------------------------------------

    def workload_text(self, wl):
        a = self.a
        return ("One transaction inserting %d rows (%.1f s), then %d single-row transactions from "
                "pgbench -c %d -j %d (%.1f s, %.0f tps); %s of WAL from the slots' start to the "
                "end position %s. Each output holds %d rows in %d transactions."
                % (a.rows, wl["bulk_s"], a.clients * a.tx_per_client, a.clients, a.threads,
                   wl["pgbench_s"], wl["pgbench_tps"] or 0, "%.0f MiB" % (wl["wal_bytes"] / MiB),
                   wl["end_lsn"], wl["rows"], wl["transactions"]))

    @staticmethod
    def best_run(runs, prefer_calm=True):
        """The run with the shortest wall time among those that worked and
        were not disturbed; a disturbed one only when no other is left (or
        with prefer_calm False, among all that worked)."""
        ok = [r for r in runs if "error" not in r and r["wall"] is not None]
        calm = [r for r in ok if not r.get("disturbed")] if prefer_calm else []
        return min(calm or ok, key=lambda r: r["wall"]) if ok else None

    def compare_report(self, cmp):
        """The --compare tables: best of N per case and build, the new/old
        ratios with those above NOISE flagged, and every run."""
        o = []
        w = o.append
        runs = cmp["runs"]
        cases = [c for c in self.compare_cases() if c[0] in runs]

        def f(v, fmt="%.2f"):
            return fmt % v if v is not None else "n/a"

        flagged = []

        def ratio(label, what, old, new):
            if old is None or new is None or old <= 0:
                return "n/a"
            q = new / old
            if q > self.NOISE:
                flagged.append("%s: %s %.2f" % (label, what, q))
                return "**%.2f WORSE**" % q
            return "%.2f" % q

        w("## Old build against new build, interleaved (best of %d by wall time)\n" % self.a.reps)
        w("Each case ran with the old build, then at once with the new one, on the same WAL "
          "(each run its own slot). A new/old ratio above %.2f is marked WORSE: outside the "
          "run-to-run noise. Runs that other programs disturbed count only when one of the "
          "builds has no other run in the case; then every run of both builds counts.\n"
          % self.NOISE)
        w("| case | wall s old | wall s new | wall new/old | client CPU s old | client CPU s new "
          "| CPU new/old | peak RSS MiB old | peak RSS MiB new | RSS new/old |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, label, *_ in cases:
            # Both builds by the same rule: undisturbed runs only if each
            # build has one, else the best of all runs of each.
            b = {build: self.best_run(runs[key][build]) for build in self.BUILDS}
            if any(r is None or r.get("disturbed") for r in b.values()):
                b = {build: self.best_run(runs[key][build], prefer_calm=False)
                     for build in self.BUILDS}
            g = lambda build, field: b[build][field] if b[build] else None
            marks = {build: " (disturbed)" if b[build] and b[build].get("disturbed") else ""
                     for build in self.BUILDS}
            w("| %s | %s%s | %s%s | %s | %s | %s | %s | %s | %s | %s |"
              % (label, f(g("old", "wall")), marks["old"], f(g("new", "wall")), marks["new"],
                 ratio(label, "wall", g("old", "wall"), g("new", "wall")),
                 f(g("old", "cpu")), f(g("new", "cpu")),
                 ratio(label, "client CPU", g("old", "cpu"), g("new", "cpu")),
                 f(g("old", "rss_mib"), "%.1f"), f(g("new", "rss_mib"), "%.1f"),
                 ratio(label, "peak RSS", g("old", "rss_mib"), g("new", "rss_mib"))))
        w("")
        if flagged:
            w("**%d ratio(s) outside the noise (> %.2f):** %s.\n"
              % (len(flagged), self.NOISE, "; ".join(flagged)))
        else:
            w("Every ratio is within the noise (<= %.2f).\n" % self.NOISE)
        if self.a.quick:
            w("(--quick: each run takes a fraction of a second and CPU is counted in 10 ms "
              "ticks, so these ratios mean little.)\n")
        w("Every run, in the order they ran:\n")
        w("| run | case | build | wall s | user s | sys s | peak RSS MiB | walsender CPU s "
          "| other CPU s | exit |")
        w("|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
        every = sorted((r for key, *_ in cases for build in self.BUILDS for r in runs[key][build]),
                       key=lambda r: r["t0"])
        label_of = {c[0]: c[1] for c in cases}
        for r in every:
            w("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
              % (r["rep"], label_of[r["key"]], r["build"], f(r["wall"]), f(r["user"]), f(r["sys"]),
                 f(r["rss_mib"], "%.1f"), f(r.get("ws_cpu")),
                 f(r.get("other_cpu")) + (" (disturbed)" if r.get("disturbed") else ""), r["rc"]))
        w("")
        return o

    def kafka_report(self, res):
        """The Kafka section: best run of each case, what each guarantees,
        every run, and what the topics held."""
        runs = res["runs"]
        cases = [c for c in self.KAFKA_CONTENDERS if c[0] in runs]
        o = []
        w = o.append
        if not cases:
            return o

        def f(v, fmt="%.2f"):
            return fmt % v if v is not None else "n/a"

        w("## Kafka: the same WAL into librdkafka's mock cluster (best of %d by wall time)\n"
          % self.a.reps)
        w("Each run has a mock cluster of its own (pgslotd-mock-kafka: %d brokers on 127.0.0.1, "
          "the slot's topic with %d partitions, partition p led by broker p %% %d + 1). Client "
          "CPU and peak RSS of the pipeline are those of pg_recvlogical and kcat added up; "
          "broker CPU is the mock's over the run (it shares the 2 cores, and is not client "
          "CPU). The topic is checked afterwards: the sum of its high watermarks must be one "
          "record per test_decoding line, and what the mock still holds of it (its last 5 MiB "
          "or so per partition) must match pg_recvlogical's file of the same repetition.\n"
          % (MockKafka.BROKERS, MockKafka.PARTITIONS, MockKafka.BROKERS))
        w("| client | wall s | client CPU s (user+sys) | client CPU µs/record | peak RSS MiB "
          "| walsender CPU s | walsender waiting for the client | broker CPU s | records |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, label, _, _ in cases:
            r = self.best_run(runs[key])
            if r is None:
                w("| %s | %s | | | | | | | |"
                  % (label, "skipped" if key == "ps_kafka_eo" and self.kafka_eo_skipped
                     else "FAILED"))
                continue
            waits = dict(wait_shares(r.get("ws_waits"))[1])
            rss = f(r["rss_mib"], "%.1f")
            if r.get("parts"):
                rss += " (%s)" % " + ".join(f(x["rss_mib"], "%.1f") for x in r["parts"].values())
            w("| %s%s | %.2f | %.2f | %s | %s | %s | %.0f%% | %s | %s |"
              % (label, " (disturbed)" if r.get("disturbed") else "", r["wall"], r["cpu"],
                 f(1e6 * r["cpu"] / r["records"] if r.get("records") else None),
                 rss, f(r["ws_cpu"]), waits.get("WalSenderWriteData", 0), f(r.get("broker_cpu")),
                 r.get("records", "n/a")))
        w("")
        w("What each side guarantees:\n")
        for key, label, _, _ in cases:
            if runs[key]:
                w("- %s: %s." % (label, self.GUARANTEES[key]))
        w("")
        if self.kafka_eo_skipped:
            w("The exactly_once case was skipped: %s\n"
              % " ".join(x.strip() for x in self.kafka_eo_skipped.splitlines()))
        eo = [r for r in runs.get("ps_kafka_eo", []) if "error" not in r]
        if eo:
            counts = [r.get("position_records") for r in eo]
            w("Kafka transactions committed in the exactly_once runs (position records in %s; "
              "the mock writes no transaction markers, so these are what shows that pgslotd "
              "used transactions): %s.%s\n"
              % (self.POSITION_TOPIC, ", ".join(str(c) for c in counts),
                 " **None: this build ran exactly_once: true without transactions.**"
                 if not any(counts) else ""))
        w("Every Kafka run (pipeline: client CPU and RSS of pg_recvlogical + kcat):\n")
        w("| client | run | wall s | user s | sys s | client CPU s | peak RSS MiB "
          "| context switches (vol. + invol.) | walsender CPU s | broker CPU s | records "
          "(per partition) | content check | other CPU s | exit |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
        for key, label, _, _ in cases:
            for r in runs[key]:
                cpu, rss = f(r["cpu"]), f(r["rss_mib"], "%.1f")
                if r.get("parts"):
                    cpu += " (%s)" % " + ".join(f(x["cpu"]) for x in r["parts"].values())
                    rss += " (%s)" % " + ".join(f(x["rss_mib"], "%.1f")
                                                for x in r["parts"].values())
                parts = r.get("partitions") or {}
                w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                  % (label, r["rep"], f(r["wall"]), f(r["user"]), f(r["sys"]), cpu, rss,
                     "%d + %d" % (r["vcsw"], r["icsw"]) if r.get("vcsw") is not None else "n/a",
                     f(r["ws_cpu"]), f(r.get("broker_cpu")),
                     "%s (%s)" % (r.get("records"), " / ".join(str(parts[p])
                                                              for p in sorted(parts)))
                     if parts else "n/a",
                     r.get("content_check", "n/a"),
                     f(r.get("other_cpu")) + (" (disturbed)" if r.get("disturbed") else ""),
                     r["rc"]))
        w("")
        return o

    def report(self, res):
        a = self.a
        o = []
        w = o.append
        m = res["machine"]
        w("## Machine\n")
        w("| | |\n|---|---|")
        w("| CPU | %s, %d cores (nproc) |" % (m["cpu"], m["nproc"]))
        w("| RAM | %.1f GiB |" % m["ram_gib"])
        w("| kernel | %s (%s) |" % (m["kernel"], m["os"]))
        w("| PostgreSQL | %s |" % m["postgres"])
        if "compare" in res:
            w("| pgslotd, old build | %s |" % res["compare"]["old_version"])
            w("| pgslotd, new build | %s |" % res["pgslotd_version"])
        else:
            w("| pgslotd | %s |" % res["pgslotd_version"])
        w("| date | %s |" % res["date"])
        w("")
        if "compare" in res:
            w("## Workload (%s, clients connect through %s)\n"
              % (res["mode"], "TCP on 127.0.0.1" if a.tcp else
                 "the Unix socket and TCP on 127.0.0.1"))
            w(self.workload_text(res["workload"]))
            w("")
            o.extend(self.compare_report(res["compare"]))
        if "runs" in res:  # not with --latency-only or --compare
            w("## Workload (%s, clients connect through %s)\n"
              % (res["mode"], "TCP on 127.0.0.1" if a.tcp else "the Unix socket"))
            w(self.workload_text(res["workload"]))
            w("")
            runs = res["runs"]
            files = [c for c in self.CONTENDERS if c[0] in runs]
            best = {key: self.best_run(runs.get(key, [])) for key, *_ in self.CONTENDERS}

            def f(v, fmt="%.2f"):
                return fmt % v if v is not None else "n/a"

            w("## Draining the same WAL, one client at a time, over %s (best of %d by wall "
              "time)\n" % (self.transport_label(), a.reps))
            w("Host CPU is the client's and its walsender's together: what the client costs the "
              "database host. Runs that other programs disturbed (see \"other CPU\" below) are "
              "only used when no other run is left.\n")
            w("| client | wall s | client CPU s (user+sys) | walsender CPU s "
              "| host CPU s (walsender + client) | client CPU µs/line | peak RSS MiB "
              "| output MiB | lines |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for key, label, _, _ in files:
                r = best[key]
                if r is None:
                    w("| %s | FAILED | | | | | | | |" % label)
                    continue
                w("| %s%s | %.2f | %.2f | %s | %s | %.2f | %.1f | %.1f | %d |"
                  % (label, " (disturbed)" if r.get("disturbed") else "", r["wall"], r["cpu"],
                     f(r["ws_cpu"]), f(r.get("host_cpu")),
                     1e6 * r["cpu"] / r["lines"] if r["lines"] else 0,
                     r["rss_mib"], r["bytes"] / MiB, r["lines"]))
            w("")
            w("What each walsender did with the transactions larger than "
              "logical_decoding_work_mem (pg_stat_replication_slots after the best run): "
              "*spilled* to files under the data directory and read back at the commit, or "
              "*streamed* to the client while still running (pgslotd json on its defaults), "
              "which then keeps them in its spool (its size on disk sampled every 50 ms) until "
              "the commit:\n")
            w("| client | session | spilled: transactions, MiB | streamed: transactions, MiB "
              "| decoded MiB | pgslotd's spool on disk, peak MiB |")
            w("|---|---|---:|---:|---:|---:|")
            for key, label, _, _ in files:
                r = best[key]
                if r is None:
                    continue
                st = r.get("slot_stats") or {}
                g_ = lambda c: st.get(c)
                w("| %s | %s | %s | %s | %s | %s |"
                  % (label, r.get("session") or ("pg_recvlogical" if key.startswith("rl_")
                                                 else "n/a"),
                     "%d, %.1f" % (g_("spill_txns"), g_("spill_bytes") / MiB) if st else "n/a",
                     "%d, %.1f" % (g_("stream_txns"), g_("stream_bytes") / MiB) if st else "n/a",
                     "%.1f" % (g_("total_bytes") / MiB) if st else "n/a",
                     "%.1f" % (r.get("spool_peak", 0) / MiB) if key.startswith("ps_json")
                     else ""))
            w("")
            same = res.get("json_same_as_v1")
            if same:
                w("pgslotd json's output on its defaults is %s proto_version 1's%s.\n"
                  % ("byte for byte" if all(same) else "**not** byte for byte",
                     " in every repetition" if all(same) else
                     " (in %d of %d repetitions)" % (sum(same), len(same))))
            w("Every run:\n")
            w("| client | run | wall s | user s | sys s | peak RSS MiB | context switches "
              "(voluntary + involuntary) | walsender CPU s | host CPU s | walsender seen after s "
              "| machine busy % | other CPU s | steal % | exit |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for key, label, _, _ in files:
                for r in runs.get(key, []):
                    mc = r.get("machine", {})
                    w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                      % (label, r["rep"], f(r["wall"]), f(r["user"]), f(r["sys"]),
                         f(r["rss_mib"], "%.1f"),
                         "%d + %d" % (r["vcsw"], r["icsw"]) if r.get("vcsw") is not None else "n/a",
                         f(r["ws_cpu"]), f(r.get("host_cpu")), f(r.get("ws_seen_after")),
                         f(mc.get("busy_pct"), "%.0f"),
                         f(r.get("other_cpu")) + (" (disturbed)" if r.get("disturbed") else ""),
                         f(mc.get("steal_pct"), "%.1f"), r["rc"]))
            w("")
            w("What each walsender was doing while it served the best run (pg_stat_activity."
              "wait_event sampled every 50 ms; CPU means no wait event: decoding, or a system call "
              "that has none). WalSenderWriteData means its output is full and it waits for the "
              "client to read:\n")
            w("| client | samples | CPU | WalSenderWriteData (waiting for the client) | other |")
            w("|---|---:|---:|---:|---|")
            for key, label, _, _ in files:
                r = best[key]
                if r is None:
                    continue
                n, shares = wait_shares(r.get("ws_waits"))
                d = dict(shares)
                other = ", ".join("%s %.0f%%" % (e, v) for e, v in shares
                                  if e not in ("CPU", "WalSenderWriteData") and v >= 1)
                w("| %s | %d | %.0f%% | %.0f%% | %s |" % (label, n, d.get("CPU", 0),
                                                         d.get("WalSenderWriteData", 0), other))
            w("")

            o.extend(self.kafka_report(res))

            # Targets
            targets = []

            def ratio(x, y):
                return x / y if x is not None and y not in (None, 0) else None

            b = best
            g = lambda k, f_: b[k][f_] if b[k] else None
            # Issue 17 states the client ratios per transport: over the Unix
            # socket both test_decoding clients pay the same kernel cost of
            # many small receives (about 0.26 of pg_recvlogical's CPU), so 1a
            # allows more there. Each run measures one transport.
            tcp = bool(a.tcp)
            targets.append(("1a", "pgslotd raw client CPU / pg_recvlogical + test_decoding "
                            "client CPU",
                            ratio(g("ps_td", "cpu"), g("rl_td", "cpu")), "<=",
                            0.30 if tcp else 0.40, "%.3f"))
            targets.append(("1b", "pgslotd raw wall / its walsender's CPU",
                            ratio(g("ps_td", "wall"), g("ps_td", "ws_cpu")), "<=", 1.10, "%.3f"))
            targets.append(("1c", "pgslotd raw wall / pg_recvlogical + test_decoding wall",
                            ratio(g("ps_td", "wall"), g("rl_td", "wall")), "<=", 1.05, "%.3f"))
            targets.append(("2a", "pgslotd json wall / pg_recvlogical + wal2json wall",
                            ratio(g("ps_json", "wall"), g("rl_w2j", "wall")), "<=", 0.60, "%.3f"))
            targets.append(("2b", "pgslotd json client CPU / pg_recvlogical + wal2json client CPU",
                            ratio(g("ps_json", "cpu"), g("rl_w2j", "cpu")), "<=", 1.0, "%.3f"))
            targets.append(("2c", "pgslotd json host CPU (walsender + client) / pg_recvlogical "
                            "+ wal2json host CPU",
                            ratio(g("ps_json", "host_cpu"), g("rl_w2j", "host_cpu")), "<=", 0.40,
                            "%.3f"))
            # pgslotd's runs on its defaults, raw and json; the json slot's
            # spool of the streamed transaction is in its memory up to 4 MiB.
            rss = [r["rss_mib"] for k in ("ps_td", "ps_json") for r in runs.get(k, [])
                   if r.get("rss_mib") is not None and "error" not in r]
            targets.append(("3", "pgslotd peak RSS over the %d-row transaction, raw and json "
                            "(spool included; MiB, worst run)" % a.rows,
                            max(rss) if rss else None, "<=", 64.0, "%.1f"))
            for key, suffix in (("ps_kafka", ""), ("ps_kafka_eo", " (exactly_once)")):
                if not runs.get(key):  # not run, or the exactly_once case skipped
                    continue
                k = self.best_run(runs[key])
                kg = lambda f_: k[f_] if k else None
                tid = lambda n: n + ("-eo" if suffix else "")
                targets.append((tid("5a"), "pgslotd -> Kafka%s wall / pgslotd -> file wall "
                                "(test_decoding)" % suffix,
                                ratio(kg("wall"), g("ps_td", "wall")), "<=", 1.15, "%.3f"))
                pipe = self.best_run(runs.get("rl_kcat", []))
                targets.append((tid("5b"), "pgslotd -> Kafka%s client CPU / pg_recvlogical + kcat "
                                "client CPU" % suffix,
                                ratio(kg("cpu"), pipe["cpu"] if pipe else None), "<=", 0.5,
                                "%.3f"))
                krss = [r["rss_mib"] for r in runs[key]
                        if r.get("rss_mib") is not None and "error" not in r]
                targets.append((tid("5c"), "pgslotd -> Kafka%s peak RSS (MiB, worst run)" % suffix,
                                max(krss) if krss else None, "<=", 128.0, "%.1f"))
            idle = res.get("idle")
            if idle:
                targets.append(("4a", "%d idle slots: CPU, %% of one core" % idle["slots"],
                                idle["cpu_pct"], "<", 1.0, "%.2f"))
                targets.append(("4b", "%d idle slots: RSS (MiB)" % idle["slots"], idle["rss_mib"],
                                "<", 64.0, "%.1f"))
            if a.kafka_only:  # only 5a.. can be measured
                targets = [t for t in targets if t[0].startswith("5")]
            over = "TCP" if tcp else "Unix socket"
            w("## Targets, over %s\n" % self.transport_label())
            w("Every client of this run connected through %s: each value is for that transport "
              "(`--tcp` measures TCP, a run without it the Unix socket).\n"
              % self.transport_label())
            w("| # | measure | over | value | target | result |")
            w("|---|---|---|---:|---:|---|")
            verdicts = []
            for tid, what, v, op, lim, fmt in targets:
                if v is None:
                    verdict = "n/a (no measurement)"
                else:
                    ok = v <= lim if op == "<=" else v < lim
                    verdict = "PASS" if ok else "FAIL"
                verdicts.append((tid, verdict))
                w("| %s | %s | %s | %s | %s %s | %s |"
                  % (tid, what, over, fmt % v if v is not None else "n/a", op, lim, verdict))
            w("")
            res["transport"] = "tcp" if tcp else "unix"
            res["targets"] = [{"id": t[0], "what": t[1], "over": res["transport"],
                               "value": t[2], "op": t[3], "limit": t[4], "verdict": v}
                              for t, (_, v) in zip(targets, verdicts)]

            busy = res.get("busy")
            if busy:
                w("## %d busy slots in one pgslotd process\n" % len(busy["per_slot"]))
                w("All slots drain the same WAL to its end at once (%d walsenders and pgslotd share "
                  "%d cores). pgslotd: wall %s s, CPU %s s, peak RSS %s MiB. Other CPU during the "
                  "run: %s s%s.\n"
                  % (len(busy["per_slot"]), NPROC, f(busy.get("wall")), f(busy.get("cpu")),
                     f(busy.get("rss_mib"), "%.1f"), f(busy.get("other_cpu")),
                     " (disturbed)" if busy.get("disturbed") else ""))
                w("| slot | done after s | walsender CPU s | walsender CPU / done time "
                  "| walsender waiting for pgslotd (WalSenderWriteData) |")
                w("|---|---:|---:|---:|---:|")
                tot = 0.0
                for p in busy["per_slot"]:
                    tot += p["ws_cpu"] or 0
                    d = dict(wait_shares(p.get("ws_waits"))[1])
                    w("| %s | %s | %s | %s | %.0f%% |"
                      % (p["slot"], f(p["done_s"]), f(p["ws_cpu"]), f(ratio(p["ws_cpu"], p["done_s"])),
                         d.get("WalSenderWriteData", 0)))
                if busy.get("wall"):
                    used = tot + (busy.get("cpu") or 0)
                    w("\nWalsenders %.1f s + pgslotd %.1f s of CPU in %.1f s of wall time: %.0f%% of "
                      "the %d cores; pgslotd's share of the CPU used: %.1f%%.\n"
                      % (tot, busy["cpu"] or 0, busy["wall"], 100 * used / (NPROC * busy["wall"]),
                         NPROC, 100 * (busy["cpu"] or 0) / used if used else 0))
                else:
                    w("")

            if idle:
                w("## Idle\n")
                w("%d slots with nothing to stream, one pgslotd process, measured over %.0f s: "
                  "CPU %.2f s (%.2f%% of one core), RSS %.1f MiB (peak %.1f MiB), %d threads.\n"
                  % (idle["slots"], idle["seconds"], idle["cpu_s"], idle["cpu_pct"], idle["rss_mib"],
                     idle["hwm_mib"], idle["threads"]))

        lat = res.get("latency")
        if lat:
            w("## Latency: commit to line in the file\n")
            w("written: the write() of the COMMIT line returned; durable: the first fdatasync of "
              "the file that started after it ended; acknowledgeable: the state record that "
              "followed that fdatasync was renamed into place and its directory fsync ended. "
              "Each minus the server's commit time. Record fsyncs: of <slot>.state.tmp + of the "
              "state directory.\n")
            w("| fsync_interval | commits | rate /s | written p50 ms | written p99 ms "
              "| durable p50 ms | durable p99 ms | durable max ms | acknowledgeable p50 ms "
              "| acknowledgeable p99 ms | acknowledgeable max ms | fdatasync calls "
              "| record fsyncs (file + dir) |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in lat:
                w("| %s | %d | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d "
                  "| %d + %d |"
                  % (r["fsync_interval"], r["commits"], r["rate"], r["visible_p50_ms"],
                     r["visible_p99_ms"], r["durable_p50_ms"], r["durable_p99_ms"],
                     r["durable_max_ms"], r["ack_p50_ms"], r["ack_p99_ms"], r["ack_max_ms"],
                     r["syncs"], r["record_fsyncs"], r["dir_fsyncs"]))
            w("")

        prof = res.get("profile")
        if prof:
            w("## Profile (test_decoding, one client at a time, not timed)\n")
            for slot, who in (("prof_ps_perf", "pgslotd"), ("prof_rl_perf", "pg_recvlogical")):
                w("%s, perf record -e cpu-clock, by object:\n" % who)
                w("```\n%s\n```\n" % prof[slot]["dso"])
                w("%s, by function (>= 1%%):\n" % who)
                w("```\n%s\n```\n" % prof[slot]["sym"])
            ps, rl = prof["prof_ps_strace"], prof["prof_rl_strace"]
            keys = sorted(set(ps["per_1000"]) | set(rl["per_1000"]),
                          key=lambda k: -max(ps["per_1000"].get(k) or 0, rl["per_1000"].get(k) or 0))
            w("System calls per 1,000 messages (strace -c -f; %d messages; calls below 0.1 per "
              "1,000 left out):\n" % ps["messages"])
            w("| syscall | pgslotd | pg_recvlogical |")
            w("|---|---:|---:|")
            for k in keys:
                a_, b_ = ps["per_1000"].get(k) or 0, rl["per_1000"].get(k) or 0
                if max(a_, b_) >= 0.1:
                    w("| %s | %.1f | %.1f |" % (k, a_, b_))
            w("")
        if res.get("warnings"):
            w("## Warnings\n")
            for x in res["warnings"]:
                w("- " + x)
            w("")
        return "\n".join(o)


# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Benchmark pgslotd against pg_recvlogical on the same WAL "
                    "(see docs/performance.md). With --compare OLD_BINARY, measure two "
                    "pgslotd builds against each other instead.",
        epilog="Comparing two builds: bash bench/build-rev.sh REV DIR builds pgslotd at the "
               "git revision REV into DIR/pgslotd; then bash bench/run.sh --compare DIR/pgslotd "
               "[--quick] drains the same WAL with that build and with this tree's (or "
               "--pgslotd's), interleaved (old, new, old, new, ...), for pgslotd raw and json "
               "over the Unix socket and over TCP (only TCP with --tcp), and prints wall, client "
               "CPU and peak RSS of each with the ratio new/old, marking those above 1.10. No "
               "pg_recvlogical, busy, idle or latency runs.")
    p.add_argument("--workdir", required=True, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 20,000-row transaction + 2,000 pgbench transactions, one "
                        "repetition, no idle/latency parts")
    p.add_argument("--pgslotd", default=None, metavar="PATH",
                   help="the pgslotd binary (default: build/pgslotd)")
    p.add_argument("--compare", default=None, metavar="OLD_BINARY",
                   help="compare the pgslotd binary OLD_BINARY (old) with --pgslotd (new), "
                        "interleaved; see below")
    p.add_argument("--pgbin", default="/usr/lib/postgresql/15/bin", metavar="DIR",
                   help="PostgreSQL's bin directory (default /usr/lib/postgresql/15/bin)")
    p.add_argument("--reps", type=int, default=None, metavar="N",
                   help="runs per client, the best counts (default 2)")
    p.add_argument("--rows", type=int, default=None, metavar="N",
                   help="rows of the big transaction (default 1000000)")
    p.add_argument("--tx-per-client", type=int, default=None, metavar="N",
                   help="single-row transactions per pgbench client, 4 clients (default 20000)")
    p.add_argument("--busy-slots", type=int, default=8, metavar="N",
                   help="slots in the one-process busy run (default 8)")
    p.add_argument("--idle-slots", type=int, default=32, metavar="N",
                   help="slots in the idle run (default 32)")
    p.add_argument("--idle-seconds", type=int, default=30, metavar="S",
                   help="how long the idle run is measured (default 30)")
    p.add_argument("--latency-rate", type=int, default=1000, metavar="TPS",
                   help="commits per second in the latency runs (default 1000)")
    p.add_argument("--latency-seconds", type=int, default=20, metavar="S",
                   help="length of each latency run (default 20)")
    p.add_argument("--tcp", action="store_true",
                   help="connect through TCP on 127.0.0.1 instead of the Unix socket")
    p.add_argument("--wait-quiet", type=int, default=None, metavar="S",
                   help="before each measurement wait up to S seconds for the machine to be "
                        "quiet (default 600; --quick: 0, do not wait)")
    p.add_argument("--quiet-cores", type=float, default=0.15, help=argparse.SUPPRESS)
    p.add_argument("--skip-idle", action="store_true", help="leave out the idle run")
    p.add_argument("--skip-latency", action="store_true", help="leave out the latency runs")
    p.add_argument("--skip-busy", action="store_true", help="leave out the busy-slots run")
    p.add_argument("--latency-only", action="store_true",
                   help="only the latency runs (fsync_interval 0 and 1s): no workload, no "
                        "draining, busy or idle runs, no targets")
    p.add_argument("--skip-kafka", action="store_true",
                   help="leave out the Kafka cases (pgslotd into librdkafka's mock cluster "
                        "against pg_recvlogical | kcat -P)")
    p.add_argument("--kafka-exactly-once", action="store_true",
                   help="also run pgslotd into Kafka with exactly_once: true (skipped, with the "
                        "reason, when pgslotd refuses that config)")
    p.add_argument("--kafka-only", action="store_true",
                   help="of the file clients only pgslotd raw + test_decoding (for target 5a), "
                        "then the Kafka cases; no busy, idle or latency runs")
    p.add_argument("--mock-kafka", default=None, metavar="PATH",
                   help="pgslotd-mock-kafka (default: tests/pgslotd-mock-kafka next to "
                        "--pgslotd, else build/tests/pgslotd-mock-kafka)")
    p.add_argument("--kcat", default="kcat", metavar="PATH", help="kcat (default: kcat in PATH)")
    p.add_argument("--profile", action="store_true",
                   help="also run pgslotd under perf and strace -c (not timed)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="write results.md, results.json and the logs into DIR")
    p.add_argument("--keep", action="store_true",
                   help="with --results: keep every client's output file there too (GBs in a "
                        "full run)")
    a = p.parse_args(argv)
    if a.latency_only and (a.quick or a.skip_latency or a.profile):
        p.error("--latency-only goes with neither --quick, --skip-latency nor --profile")
    if a.compare and (a.latency_only or a.profile):
        p.error("--compare goes with neither --latency-only nor --profile")
    a.clients, a.threads = 4, 2
    if a.quick:
        a.reps = a.reps or 1
        a.rows = a.rows or 20000
        a.tx_per_client = a.tx_per_client or 500
        a.skip_idle = a.skip_latency = True
        a.timeout = 120
        a.wait_quiet = 0 if a.wait_quiet is None else a.wait_quiet
    else:
        a.reps = a.reps or 2
        a.rows = a.rows or 1000000
        a.tx_per_client = a.tx_per_client or 20000
        a.timeout = 1800
        a.wait_quiet = 600 if a.wait_quiet is None else a.wait_quiet
    if a.kafka_exactly_once and (a.skip_kafka or a.compare or a.latency_only):
        p.error("--kafka-exactly-once goes with neither --skip-kafka, --compare nor "
                "--latency-only")
    if a.kafka_only and (a.skip_kafka or a.compare or a.latency_only or a.profile):
        p.error("--kafka-only goes with neither --skip-kafka, --compare, --latency-only nor "
                "--profile")
    if a.kafka_only:
        a.skip_idle = a.skip_latency = a.skip_busy = True
    if a.compare or a.latency_only:
        a.skip_kafka = True
    if a.compare:
        a.skip_idle = a.skip_latency = a.skip_busy = True
    return a


def describe_binary(path, copy):
    """path's --version (run from its copy), md5 and, if bench/build-rev.sh
    wrote one, what its PATH.rev file says."""
    version = subprocess.run([copy, "--version"], capture_output=True, text=True).stdout.strip()
    rev = read_file(path + ".rev").strip()
    return "%s, %s, md5 %s" % (version or "no --version", rev or path, md5_file(copy)[:12])


def main(argv):
    a = parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    a.pgslotd = os.path.abspath(a.pgslotd or os.path.join(root, "build", "pgslotd"))
    if not a.mock_kafka:
        # Next to the pgslotd under test (its build directory), else build/.
        a.mock_kafka = os.path.join(os.path.dirname(a.pgslotd), "tests", "pgslotd-mock-kafka")
        if not os.access(a.mock_kafka, os.X_OK):
            a.mock_kafka = os.path.join(root, "build", "tests", "pgslotd-mock-kafka")
    a.mock_kafka = os.path.abspath(a.mock_kafka)
    a.kcat = shutil.which(a.kcat)
    a.compare = os.path.abspath(a.compare) if a.compare else None
    bench = Bench(a)

    def on_signal(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted("signal %d" % signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    status = 0
    res = bench.results
    try:
        for tool in (TIME, os.path.join(a.pgbin, "pg_recvlogical"), os.path.join(a.pgbin, "pgbench")):
            if not os.access(tool, os.X_OK):
                raise Broken("%s is missing" % tool)
        if not a.skip_kafka:
            if not a.kcat:
                raise Broken("kcat is missing (apt-get install kcat), or run with --skip-kafka")
            if not os.access(a.mock_kafka, os.X_OK):
                raise Broken("%s is missing (make pgslotd-mock-kafka in the build directory), or "
                             "run with --skip-kafka" % a.mock_kafka)
            # Like pgslotd: a copy, in case the build directory is rebuilt.
            mock = os.path.join(bench.work, "pgslotd-mock-kafka")
            shutil.copy2(a.mock_kafka, mock)
            a.mock_kafka = mock
        if not os.access(a.pgslotd, os.X_OK):
            raise Broken("%s is missing (build it first)" % a.pgslotd)
        # The build directory may be rebuilt while we run: use a copy.
        binary = os.path.join(bench.work, "pgslotd")
        shutil.copy2(a.pgslotd, binary)
        if a.compare:
            if not os.access(a.compare, os.X_OK):
                raise Broken("--compare %s: not an executable file" % a.compare)
            old = os.path.join(bench.work, "pgslotd-old")
            shutil.copy2(a.compare, old)
            res["compare"] = {"old": a.compare, "new": a.pgslotd,
                              "old_version": describe_binary(a.compare, old)}
            if md5_file(old) == md5_file(binary):
                res.setdefault("warnings", []).append(
                    "the old and the new binary are the same (same md5): the ratios show only "
                    "noise")
            a.compare = old
        a.pgslotd_given, a.pgslotd = a.pgslotd, binary
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        git = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        # The tree's revision, unless the binary says which it is built from
        # (bench/build-rev.sh writes PATH.rev): then that.
        built = read_file(a.pgslotd_given + ".rev").strip()
        res["pgslotd_version"] = version + (" (%s; bench at git %s)" % (built, git) if built else
                                            " (git %s)" % git if git else "")
        if a.compare:
            res["pgslotd_version"] += ", md5 %s" % md5_file(binary)[:12]
        res["machine"] = machine_info(a.pgbin)
        res["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

        bench.make_dirs()
        bench.start_cluster()
        bench.setup_schema()

        def workload(slots):
            """Creates the slots, runs the workload; the end LSN and what
            each output must hold."""
            log("creating %d slots before the workload" % len(slots))
            bench.create_slots(slots)
            start = bench.sql("SELECT pg_current_wal_lsn()")
            wl = bench.workload()
            wl["start_lsn"] = start
            wl["wal_bytes"] = int(bench.sql("SELECT pg_wal_lsn_diff('%s', '%s')"
                                            % (wl["end_lsn"], start)).split(".")[0])
            res["workload"] = wl
            log("workload done: end LSN %s, %.0f MiB of WAL" % (wl["end_lsn"], wl["wal_bytes"] / MiB))
            return wl["end_lsn"], {"rows": wl["rows"],
                                   "td_lines": wl["rows"] + 2 * wl["transactions"]}

        if a.latency_only:
            res["mode"] = "latency only"
            res["latency"] = [bench.run_latency(fi, a.latency_rate, a.latency_seconds)
                              for fi in ("0", "1s")]
        elif a.compare:
            res["mode"] += ", compare"
            end, expect = workload([(Bench.compare_slot(key, build, rep), plugin)
                                    for rep in range(1, a.reps + 1)
                                    for key, _, plugin, *_ in bench.compare_cases()
                                    for build in Bench.BUILDS])
            res["compare"]["runs"] = bench.run_compare(end, expect)
        else:
            if a.kafka_exactly_once and not a.skip_kafka:
                bench.check_kafka_eo_config()
            kafka = [c for c in bench.kafka_contenders()
                     if c[0] != "ps_kafka_eo" or not bench.kafka_eo_skipped]
            slots = []
            for rep in range(1, a.reps + 1):
                for _, _, prefix, plugin in bench.file_contenders() + kafka:
                    slots.append(("%s_%d" % (prefix, rep), plugin))
            if not a.skip_busy:
                slots += [("busy_%d" % i, "test_decoding") for i in range(1, a.busy_slots + 1)]
            if a.profile:
                slots += [(s, "test_decoding") for s in Bench.PROFILE_SLOTS]
            end, expect = workload(slots)

            res["runs"] = bench.run_contenders(end, expect)
            if not a.skip_busy:
                busy = bench.run_busy(end, a.busy_slots)
                res["busy"] = {k: busy.get(k) for k in ("wall", "cpu", "rss_mib", "per_slot", "rc",
                                                        "other_cpu", "disturbed")}
            if a.profile:
                res["profile"] = bench.run_profile(end)
            if not a.skip_idle:
                res["idle"] = bench.run_idle(a.idle_slots, a.idle_seconds)
            if not a.skip_latency:
                res["latency"] = [bench.run_latency(fi, a.latency_rate, a.latency_seconds)
                                  for fi in ("0", "1s")]
    except Broken as e:
        bench.problems.append(str(e))
    except Interrupted as e:
        log("interrupted (%s); cleaning up" % e)
        status = 130
    except Exception:
        bench.problems.append("the benchmark script failed:\n" + traceback.format_exc())
    finally:
        try:
            bench.kill_children()
        finally:
            bench.stop_cluster()
    # Whatever was measured, even if a later part broke.
    if ("runs" in res or "latency" in res or "runs" in res.get("compare", {})) and status != 130:
        try:
            text = bench.report(res)
            print(text)
            sys.stdout.flush()
            if a.results:
                os.makedirs(a.results, exist_ok=True)
                with open(os.path.join(a.results, "results.md"), "w") as f:
                    f.write(text + "\n")
                with open(os.path.join(a.results, "results.json"), "w") as f:
                    json.dump(res, f, indent=1, default=str)
                shutil.copytree(bench.logs, os.path.join(a.results, "logs"), dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.perf.data", "*.strace"))
                if a.keep:
                    shutil.copytree(bench.out, os.path.join(a.results, "out"), dirs_exist_ok=True)
        except Exception:
            bench.problems.append("writing the report failed:\n" + traceback.format_exc())
    if bench.problems:
        print("\n## Problems\n", file=sys.stderr)
        for p in bench.problems:
            print("- " + p, file=sys.stderr)
        print("\nBROKEN: %d problem(s); see above" % len(bench.problems), file=sys.stderr)
        status = status or 1
    elif status == 0:
        log("done: every measurement ran (%s above are %s, not errors)"
            % (("WORSE", "ratios") if a.compare else ("PASS/FAIL", "targets")))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
