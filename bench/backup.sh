#!/usr/bin/env bash
# Backup benchmark: export / import rate and file size per record on redb and
# etcd, next to `etcdctl snapshot save`, same run.
# Usage: bench/backup.sh [INSTANCES] [RESOURCES]   (default 100000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --locked -q -p sluice-bench --bin backup-bench -- "${1:-100000}" "${2:-10000}"
