#!/usr/bin/env bash
# Runs Sluice's whole test suite on a fresh machine: installs what is missing,
# checks formatting and lints, then runs every test (unit, conformance against
# memory / redb / a real etcd, end-to-end) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== doc tests"
cargo test --workspace --doc --locked --quiet
echo "== tests"
cargo nextest run --workspace --locked --profile ci "$@"
