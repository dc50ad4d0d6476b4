# The Kafka sink test (tests/kafka.rs, tests/clients/python/kafka_sink.py):
# a Kafka-protocol broker and a real Kafka client.
# - kafka-python, from PyPI.
# - Tansu, an Apache-Kafka-compatible broker written in Rust, from crates.io
#   (`dynostore` is the feature with its in-memory storage). Apache Kafka's
#   own broker is served by the Maven registry, which this machine cannot
#   reach. Built once into $HOME/.cache/strata-tools (about 20 minutes on two
#   cores the first time; skipped when present).
# Sourced by .ci/run (set -euo pipefail).
if ! python3 -c "import kafka" >/dev/null 2>&1; then
  kafka_pip_flags=()
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    kafka_pip_flags+=(--break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${kafka_pip_flags[@]}" \
    "kafka-python>=2.2,<4"
fi
tansu_root="$HOME/.cache/strata-tools"
if [ ! -x "$tansu_root/bin/tansu" ] || ! "$tansu_root/bin/tansu" broker --help >/dev/null 2>&1; then
  # Its own target directory: the broker's dependencies do not share
  # features with ours, and sharing would rebuild both.
  cargo install tansu --version 0.6.0 --locked --features dynostore \
    --root "$tansu_root" --target-dir "$HOME/.cache/strata-tools/target" --quiet
fi
