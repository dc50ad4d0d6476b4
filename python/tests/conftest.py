"""Fixtures for the strata package tests. Run through `cargo test --test
python` (tests/python.rs builds and installs the package first), or by hand:
`pip install ./python && python3 -m pytest python/tests`."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import strata


@pytest.fixture
def con():
    c = strata.connect()
    yield c
    c.close()


@pytest.fixture
def clocked(tmp_path):
    """A database on a directory with a deterministic clock: the n-th
    commit happens at 2024-01-0n (UTC)."""
    c = strata.connect(str(tmp_path / "db"), test_clock="2024-01-01T00:00:00Z,1d")
    yield c
    c.close()


def strata_bin() -> str:
    """The `strata` binary: $STRATA_BIN (set by tests/python.rs), else the
    debug build in the cargo target directory."""
    env = os.environ.get("STRATA_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path(__file__).resolve().parents[2] / "target")
    path = Path(target) / "debug" / "strata"
    if path.exists():
        return str(path)
    found = shutil.which("strata")
    if found:
        return found
    pytest.fail("no strata binary: build it with `cargo build` or set STRATA_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`strata serve` on a fresh data directory; yields (data_dir, pg_port)."""
    data = tmp_path / "served"
    pg, flight = free_port(), free_port()
    proc = subprocess.Popen(
        [strata_bin(), "serve", "--data-dir", str(data), "--pg-port", str(pg),
         "--flight-port", str(flight), "--listen", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", pg), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                proc.kill()
                pytest.fail(f"strata serve did not start:\n{out}")
            time.sleep(0.1)
    yield data, pg
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_python(code: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter that imports the same strata package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
