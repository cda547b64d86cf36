#!/usr/bin/env bash
# Builds Sluice and starts it on the embedded store in ./sluice-data.
# Installs what a fresh machine lacks first. Extra arguments go to `sluice`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p sluice
if [ $# -eq 0 ]; then
  set -- store check --store redb://./sluice-data
fi
exec target/release/sluice "$@"
