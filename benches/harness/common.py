"""Shared plumbing for the side-by-side harness: the three systems' processes
and connections, timing, and result comparison."""

import datetime as dt
import decimal
import glob
import math
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(math.ceil(p / 100.0 * len(xs))) - 1))
    return xs[k]


# ---------------------------------------------------------------- PostgreSQL


def find_pg_bin():
    """Directory holding initdb/pg_ctl/postgres: PATH first, then Debian's layout."""
    p = shutil.which("initdb")
    if p and shutil.which("pg_ctl") and shutil.which("postgres"):
        return os.path.dirname(os.path.realpath(p))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all(os.path.exists(os.path.join(d, x)) for x in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir on a free port.

    PostgreSQL refuses to run as root, so as root the cluster runs as the
    `postgres` user (or `nobody`) over a directory that user owns."""

    def __init__(self, workdir, shared_buffers="512MB"):
        self.bin = find_pg_bin()
        if not self.bin:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
                "install the `postgresql` package (.ci/install.d/50-bench.sh does)"
            )
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=workdir)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            for u in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(u)
                    self.user = u
                    break
                except KeyError:
                    pass
            if not self.user:
                raise RuntimeError("running as root and no `postgres` or `nobody` user to run PostgreSQL as")
            os.chmod(workdir, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "bench",
                   "--auth=trust", "-E", "UTF8", "--locale=C"])
        conf = f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.dir}'
shared_buffers = {shared_buffers}
work_mem = 64MB
maintenance_work_mem = 256MB
max_connections = 100
max_wal_size = 4GB
checkpoint_timeout = 30min
jit = off
"""
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(conf)
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l",
                   os.path.join(self.dir, "log"), "-w", "-t", "60", "start"])
        self.dsn = f"host=127.0.0.1 port={self.port} user=bench dbname=postgres"

    def _run(self, cmd):
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout}")

    def version(self):
        import psycopg
        with psycopg.connect(self.dsn) as c:
            return c.execute("SHOW server_version").fetchone()[0]

    def stop(self):
        try:
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "stop"])
        except Exception as e:  # best effort
            log("pg stop:", e)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Strata


def strata_binary(explicit=None, build=True):
    """The strata binary: --strata-bin / STRATA_BIN, else a release build."""
    b = explicit or os.environ.get("STRATA_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if build:
        log("building strata (cargo build --release) ...")
        subprocess.run(["cargo", "build", "--release", "--bin", "strata"], cwd=ROOT, check=True)
    return os.path.join(target, "release", "strata")


_HELP = {}


def _serve_help(binary):
    if binary not in _HELP:
        r = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _HELP[binary] = r.stdout
    return _HELP[binary]


class Strata:
    """`strata serve` over a data directory on free ports."""

    def __init__(self, binary, data_dir, test_clock=None, memory_limit=None, extra_args=()):
        self.binary = binary
        self.data_dir = data_dir
        args = [binary, "serve", "--data-dir", data_dir, "--pg-port", "0"]
        if "--flight-port" in _serve_help(binary):
            args += ["--flight-port", "0"]
        if test_clock:
            args += ["--test-clock", test_clock]
        if memory_limit:
            args += ["--memory-limit", memory_limit]
        args += list(extra_args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.port = None
        self.stderr_tail = []
        self.stdout_seen = []
        deadline = time.time() + 300
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout_seen.append(line)
            if "postgres listening on " in line:
                self.port = int(line.strip().rsplit(":", 1)[1])
                break
        if self.port is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"strata serve did not start: {err}")
        # keep draining the pipes so the server never blocks on them
        threading.Thread(target=self._drain, args=(self.proc.stdout, None), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr_tail), daemon=True).start()
        self.dsn = f"host=127.0.0.1 port={self.port} user=strata dbname=strata"

    def _drain(self, f, keep):
        for line in f:
            if keep is not None:
                keep.append(line)
                del keep[:-50]

    def pid(self):
        return self.proc.pid

    def open_report(self):
        """The startup log's line on opening the database (time and bytes read)."""
        for line in list(self.stderr_tail) + list(self.stdout_seen):
            if "opened" in line and "bytes" in line:
                return line.strip()
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def strata_import(binary, data_dir, table, path, test_clock=None, batch_rows=1_000_000, memory_limit=None,
                  extra=()):
    """Run `strata import`; returns (its output, its peak RSS in bytes)."""
    return strata_cli(binary, ["import", "--data-dir", data_dir, "--table", table,
                               "--batch-rows", str(batch_rows)] + list(extra),
                      [path], f"strata import {table}", test_clock, memory_limit)


def strata_cli(binary, head, tail, what, test_clock=None, memory_limit=None):
    """Run one `strata` command to its end; returns (its output, its peak RSS in bytes)."""
    args = [binary] + head
    if test_clock:
        args += ["--test-clock", test_clock]
    if memory_limit:
        args += ["--memory-limit", memory_limit]
    args += tail
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)
        # VmHWM of the child's own address space, sampled until it exits
        # (getrusage's ru_maxrss would include this process's RSS at fork).
        peak = 0
        while p.poll() is None:
            try:
                for line in open(f"/proc/{p.pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        o, e = out.read(), err.read()
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed: {e.strip()}")
    return o.strip(), peak or None


# ---------------------------------------------------------------- comparing results


def norm_value(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (decimal.Decimal, float)):
        return float(v)
    if isinstance(v, int):
        return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        if v.year >= 9999 or v == dt.datetime.max:
            return None  # open bound
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str):
        return v.rstrip()
    return str(v)


def norm_rows(rows):
    return [tuple(norm_value(v) for v in r) for r in rows]


def _sort_key(row):
    out = []
    for v in row:
        if v is None:
            out.append((0, ""))
        elif isinstance(v, (int, float)):
            out.append((1, round(float(v), 2)))
        else:
            out.append((2, str(v)))
    return out


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)) + 1e-9
    return a == b


def rows_equal(a, b):
    """Equal as multisets, with numeric tolerance. Returns (ok, message)."""
    if len(a) != len(b):
        return False, f"{len(a)} rows vs {len(b)} rows"
    if a and len(a[0]) != len(b[0]):
        return False, f"{len(a[0])} columns vs {len(b[0])} columns"
    sa, sb = sorted(a, key=_sort_key), sorted(b, key=_sort_key)
    for i, (ra, rb) in enumerate(zip(sa, sb)):
        if not all(_close(x, y) for x, y in zip(ra, rb)):
            return False, f"row {i}: {ra} vs {rb}"
    return True, ""
