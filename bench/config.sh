#!/usr/bin/env bash
# Config-center benchmark: a real `sluice server` on redb and on etcd, driven
# over HTTP: publish latency, reads/s, and the time from a publish to the last of
# WATCHERS long-poll watchers of that item answering.
# Usage: bench/config.sh [WATCHERS]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ulimit -n 65536 2>/dev/null || true
cargo build --release --locked -q -p sluice -p sluice-bench
target/release/config-bench target/release/sluice "${1:-10000}"
