"""Shared bits of the Python client tests (run by tests/pgwire_clients.rs).

The server's port comes in STRATA_PORT; each script exits non-zero on the
first failed check, printing what it expected and what it got."""
import os
import sys

PORT = int(os.environ["STRATA_PORT"])
HOST = "127.0.0.1"
DSN = f"host={HOST} port={PORT} user=strata dbname=strata connect_timeout=10"


def check(cond, what, got=None):
    if not cond:
        print(f"FAILED: {what}" + ("" if got is None else f"; got {got!r}"), file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def eq(got, want, what):
    check(got == want, f"{what} == {want!r}", got)
