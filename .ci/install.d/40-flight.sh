# Python clients for the Flight SQL tests (tests/flight_adbc.rs,
# tests/flight_notebook.rs): the ADBC Flight SQL driver, pyarrow, pandas,
# polars, and nbclient + ipykernel + matplotlib to run docs/notebooks/.
# Sourced by .ci/run (set -euo pipefail); skips what is importable already.
if ! python3 -c "import adbc_driver_flightsql, adbc_driver_manager, pyarrow, pandas, polars, nbclient, nbformat, ipykernel, matplotlib" >/dev/null 2>&1; then
  flight_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    flight_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${flight_pip_flags[@]}" \
    "adbc-driver-flightsql>=1.10,<2" "adbc-driver-manager>=1.10,<2" \
    "pyarrow>=26,<27" "pandas>=2,<3" "polars>=1,<2" \
    "nbclient>=0.10,<1" "nbformat>=5,<6" "ipykernel>=7,<8" "matplotlib>=3,<4"
fi
# The notebook runs on the `python3` Jupyter kernel.
if ! python3 -c "from jupyter_client.kernelspec import KernelSpecManager as K; K().get_kernel_spec('python3')" >/dev/null 2>&1; then
  python3 -m ipykernel install --user --name python3 >/dev/null
fi
