#!/usr/bin/env bash
# Console render time with many services (default 1000): server time per page from
# the Server-Timing header, and the time the client saw.
# Usage: bench/ui.sh [SERVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -q -p sluice -p sluice-bench
target/release/ui-bench target/release/sluice "${1:-1000}"
