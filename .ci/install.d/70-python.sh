# The embedded Python package (python/, tests/python.rs): maturin builds
# it, pytest runs python/tests. pyarrow, pandas and polars come from
# 40-flight.sh. Sourced by .ci/run (set -euo pipefail); skips what is there.
if ! python3 -c "import maturin, pytest" >/dev/null 2>&1 || ! command -v maturin >/dev/null 2>&1; then
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.9,<2" "pytest>=7,<10"
fi
