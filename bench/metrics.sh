#!/usr/bin/env bash
# Metrics benchmarks: the recorder's cost per request, the health board over many
# APIs (default 10000, five minutes of 10 s steps), and disk bytes per series per day.
# The gateway CPU cost of recording is measured by bench/gateway.sh (sluice vs
# sluice-no-recording in the same run).
# Usage: bench/metrics.sh [APIS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p sluice-bench --bin metrics-bench
target/release/metrics-bench "${1:-10000}"
