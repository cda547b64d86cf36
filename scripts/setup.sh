#!/usr/bin/env bash
# Installs what building and testing Sluice needs and a fresh Debian machine lacks.
# Each need is checked by the file or command the build or the tests really use —
# not by a command that usually comes along with it — and installed only when missing:
#
#   protoc + google/protobuf/*.proto   the etcd client compiles etcd's protobufs, which
#                                      import the well-known types (libprotobuf-dev)
#   cc, make                           crates that build C (ring; jemalloc, the allocator)
#   etcd, etcdctl                      tests and benchmarks run a real etcd
#   prometheus, alertmanager           tests scrape / discover / forward alarms with them
#   python3 with pip                   a test upstream; the PyPI packages below
#   /usr/bin/chromium, chromedriver    the console's browser tests (WebDriver)
#   sentry-sdk, aiosmtpd, schemathesis PyPI, into target/pylib: a Sentry SDK reports to
#                                      Sluice, an SMTP server receives its e-mail,
#                                      schemathesis fuzzes the admin API from its OpenAPI
#   opentelemetry-sdk, -exporter-otlp- PyPI, into target/pylib: services instrumented with
#   proto-http, py-zipkin              OpenTelemetry export traces to Sluice; a Zipkin
#                                      v2 JSON client posts spans
#   cargo-nextest                      runs the tests
#
# Idempotent. `scripts/setup.sh --check` only reports what is missing (exit 1 if any).
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

need_apt=()
missing=()
# need PACKAGE WHAT TEST...: when TEST fails, PACKAGE is installed (WHAT names it).
need() {
  local package=$1 what=$2
  shift 2
  if ! "$@" >/dev/null 2>&1; then
    missing+=("$what")
    need_apt+=("$package")
  fi
}
has() { command -v "$1"; }
is_file() { [ -f "$1" ]; }
# protoc finds the well-known types where the etcd client's build looks for them.
protoc_finds_descriptor() {
  local dir
  dir=$(mktemp -d)
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$dir/probe.proto"
  protoc --proto_path="$dir" -o /dev/null "$dir/probe.proto"
  local status=$?
  rm -rf "$dir"
  return $status
}

need build-essential "a C compiler (cc)" has cc
need build-essential "make (jemalloc builds with it)" has make
need protobuf-compiler "protoc" has protoc
need libprotobuf-dev "/usr/include/google/protobuf/descriptor.proto" is_file /usr/include/google/protobuf/descriptor.proto
need etcd-server "etcd" has etcd
need etcd-client "etcdctl" has etcdctl
need prometheus "prometheus" has prometheus
need prometheus-alertmanager "prometheus-alertmanager" has prometheus-alertmanager
need python3 "python3" has python3
need python3-pip "python3 -m pip" python3 -m pip --version
need chromium "/usr/bin/chromium" is_file /usr/bin/chromium
need chromium-driver "chromedriver" has chromedriver

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: missing: ${missing[*]}"
  if $check_only; then
    exit 1
  fi
  echo "setup: installing ${need_apt[*]} (Debian packages)"
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
if has protoc >/dev/null 2>&1 && ! protoc_finds_descriptor >/dev/null 2>&1; then
  echo "setup: protoc does not find google/protobuf/descriptor.proto after installing libprotobuf-dev" >&2
  exit 1
fi

# Python packages from PyPI that tests run. They go under target/ (rebuilt like
# the rest of target/, never committed); tests put target/pylib on PYTHONPATH.
pylib=target/pylib
pip_packages=()
[ -d $pylib/sentry_sdk ] || pip_packages+=('sentry-sdk>=2,<3')
[ -d $pylib/aiosmtpd ] || pip_packages+=('aiosmtpd>=1.4,<2')
[ -d $pylib/schemathesis ] || pip_packages+=('schemathesis>=4.3,<5')
# The OpenTelemetry packages share the opentelemetry/ directory: pip --target
# installs them together, replacing it (--upgrade), or the second one is skipped.
upgrade=()
if [ ! -d $pylib/opentelemetry/sdk ] || [ ! -d $pylib/opentelemetry/exporter/otlp/proto/http ] \
  || [ ! -d $pylib/py_zipkin ]; then
  pip_packages+=('opentelemetry-sdk>=1.30,<2' 'opentelemetry-exporter-otlp-proto-http>=1.30,<2' 'py-zipkin>=1.2,<2')
  upgrade=(--upgrade)
fi
if [ ${#pip_packages[@]} -gt 0 ]; then
  echo "setup: missing: ${pip_packages[*]} (PyPI)"
  if $check_only; then
    exit 1
  fi
  echo "setup: installing ${pip_packages[*]} into $pylib"
  # (--target is not the system's site-packages: Debian's PEP 668 guard allows it.)
  python3 -m pip install --quiet --disable-pip-version-check "${upgrade[@]}" \
    --target $pylib "${pip_packages[@]}" 2>&1 | grep -v 'WARNING: Running pip as' || true
  for module in sentry_sdk aiosmtpd schemathesis opentelemetry/sdk \
    opentelemetry/exporter/otlp/proto/http py_zipkin; do
    [ -d $pylib/$module ] || { echo "setup: $module did not install into $pylib" >&2; exit 1; }
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: missing: cargo-nextest"
  if $check_only; then
    exit 1
  fi
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
