# The side-by-side benchmark harness (benches/harness/run.py, smoke-tested by
# tests/bench_smoke.rs): DuckDB with its TPC-H extension, psycopg and pyarrow
# from PyPI, and a PostgreSQL server (initdb/pg_ctl/postgres).
bench_py_ok() {
  python3 - <<'PY' 2>/dev/null
import duckdb, duckdb_extension_tpch, psycopg, pyarrow
assert duckdb.__version__ == "1.5.5"
PY
}
if ! bench_py_ok; then
  python3 -m pip install -q "duckdb==1.5.5" "duckdb-extension-tpch==1.5.5" "psycopg[binary]" pyarrow
fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  # Debian puts the server binaries in /usr/lib/postgresql/<version>/bin;
  # the harness finds them there and runs them as the `postgres` user when root.
  apt_install postgresql
fi
