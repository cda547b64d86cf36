#!/usr/bin/env bash
# The alarm judge's cycle time for many rules (default 10000), each over its own series.
# Usage: bench/alarms.sh [RULES]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p sluice-bench --bin alarm-bench
target/release/alarm-bench "${1:-10000}"
