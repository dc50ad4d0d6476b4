# The Delta Lake reader for the export tests (tests/export.rs,
# tests/clients/python/delta_export.py): the `deltalake` package (delta-rs),
# which polars' read_delta also uses. pyarrow and polars come from
# 40-flight.sh. Sourced by .ci/run (set -euo pipefail); skips it when
# importable already.
if ! python3 -c "import deltalake" >/dev/null 2>&1; then
  exports_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    exports_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${exports_pip_flags[@]}" \
    "deltalake>=1.4,<2"
fi
