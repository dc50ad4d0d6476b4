# The HTTP port test (tests/http_port.rs): /metrics is parsed by the
# Prometheus Python client's own text-format parser, from PyPI.
# Sourced by .ci/run (set -euo pipefail).
if ! python3 -c "import prometheus_client" >/dev/null 2>&1; then
  http_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    http_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${http_pip_flags[@]}" \
    "prometheus-client>=0.20,<1"
fi
