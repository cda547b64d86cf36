#!/usr/bin/env bash
# Store benchmark: Sluice's redb and etcd backends next to raw etcd, same run.
# Usage: bench/store.sh [OPS]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --locked -q -p sluice-bench --bin store-bench -- "${1:-2000}"
