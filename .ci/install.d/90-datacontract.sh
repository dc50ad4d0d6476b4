# The data-contract test (tests/contracts.rs): the real datacontract-cli from
# PyPI lints the generated contracts and tests them against the running
# server over the Postgres wire. It lives in its own virtualenv under
# $HOME/.cache, so its pins cannot move the packages other tests use.
# Sourced by .ci/run (set -euo pipefail).
dc_venv="${STRATA_DATACONTRACT_VENV:-$HOME/.cache/strata-tools/datacontract-1.2.8}"
if ! "$dc_venv/bin/datacontract" --version >/dev/null 2>&1; then
  python3 -c "import ensurepip" >/dev/null 2>&1 || apt_install python3-venv
  rm -rf "$dc_venv"
  mkdir -p "$(dirname "$dc_venv")"
  python3 -m venv "$dc_venv"
  "$dc_venv/bin/pip" install --quiet --disable-pip-version-check \
    "datacontract-cli[postgres]==1.2.8"
fi
export STRATA_DATACONTRACT="$dc_venv/bin/datacontract"
