#!/usr/bin/env bash
# Installs what building and testing Sluice needs and a fresh Debian machine lacks:
# protoc (the etcd client compiles etcd's protobufs), etcd-server and etcdctl
# (tests and benchmarks run a real etcd), prometheus (tests check that it discovers
# Sluice's instances and scrapes its metrics), prometheus-alertmanager (a test forwards
# alarms to it), python3 (a test upstream), the Python Sentry SDK and aiosmtpd (an SMTP server),
# chromium and chromium-driver (the console's browser tests drive headless Chromium over
# WebDriver), and cargo-nextest.
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
# A gateway test runs Python's http.server as an upstream it can kill.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The console's browser tests.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian may start etcd and prometheus services on install; Sluice's tests start their own.
  if command -v systemctl >/dev/null 2>&1; then
    for unit in etcd prometheus prometheus-alertmanager; do
      systemctl is-active --quiet "$unit" 2>/dev/null && { $sudo systemctl stop "$unit" || true; }
    done
  fi
fi

# Python packages from PyPI that tests run: the official Sentry SDK reports to Sluice,
# aiosmtpd receives its e-mail. They go under target/ (rebuilt like the rest of
# target/, never committed).
if ! [ -d target/pylib/sentry_sdk ] || ! [ -d target/pylib/aiosmtpd ]; then
  echo "setup: installing sentry-sdk and aiosmtpd (PyPI) into target/pylib"
  python3 -m pip install --quiet --disable-pip-version-check --target target/pylib \
    'sentry-sdk>=2,<3' 'aiosmtpd>=1.4,<2' 2>&1 | grep -v 'WARNING: Running pip as' || true
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
