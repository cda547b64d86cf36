#!/usr/bin/env bash
# Naming-service benchmark: a real `sluice up` (redb) and `sluice server` (etcd),
# driven over HTTP. Usage: bench/registry.sh [INSTANCES]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ulimit -n 65536 2>/dev/null || true
cargo build --release --locked -q -p sluice -p sluice-bench
target/release/registry-bench target/release/sluice "${1:-100000}"
