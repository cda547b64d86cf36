#!/usr/bin/env bash
# Builds Sluice and starts it on the embedded store in ./sluice-data
# (`sluice up`: admin API on 127.0.0.1:7700). Installs what a fresh machine lacks
# first. Arguments replace `up`: scripts/up.sh up --admin 127.0.0.1:7800, ...
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p sluice
if [ $# -eq 0 ]; then
  set -- up
fi
exec target/release/sluice "$@"
