# A real S3-compatible server for the S3 tests (tests/s3.rs,
# tests/support/s3_server.py, issue 12): moto in server mode, from PyPI.
# Sourced by .ci/run (set -euo pipefail); skips it when importable already.
if ! python3 -c "import moto, flask, flask_cors, werkzeug; from moto.moto_server.werkzeug_app import DomainDispatcherApplication" >/dev/null 2>&1; then
  s3_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    s3_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${s3_pip_flags[@]}" \
    "moto[server]>=5.1,<6"
fi
