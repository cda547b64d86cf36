#!/usr/bin/env bash
# Tracing benchmark: OTLP/HTTP protobuf ingest into `sluice up` pinned to one
# core (tail decisions, storage and indexing on), bytes on disk per span, and
# trace-by-id / search p99 over a store of STORED spans (default 10 million).
# Usage: bench/trace.sh [SECONDS] [STORED]   (default 20 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p sluice -p sluice-bench
taskset -c 1 target/release/trace-bench target/release/sluice "${1:-20}" "${2:-10000000}" 0
