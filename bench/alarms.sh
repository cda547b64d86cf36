#!/usr/bin/env bash
# The alarm judge's cycle time for many rules (default 10000), each over its own series.
# Usage: bench/alarms.sh [RULES]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p sluice-bench --bin alarm-bench
target/release/alarm-bench "${1:-10000}"

# Error-report ingest rate through the Sentry envelope endpoint of a running `sluice up`.
cargo build --release --locked -q -p sluice
cargo build --release --locked -q -p sluice-bench --bin errors-bench
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/sluice up --data "$work/d" --admin "127.0.0.1:$port" --gateway "127.0.0.1:0" >"$work/log" 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
key=0123456789abcdef0123456789abcdef
curl -sf -X PUT "http://127.0.0.1:$port/v1/namespaces/default/resources/ErrorProject/bench" -d "{\"spec\":{\"id\":7,\"key\":\"$key\"}}" >/dev/null
target/release/errors-bench "http://127.0.0.1:$port" "$key" 7 10 16
