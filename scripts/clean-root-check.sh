#!/usr/bin/env bash
# Checks the README's two commands where nothing was installed before: a clean
# Debian 12 root (debootstrap --variant=minbase bookworm) holding only what a fresh
# machine of the project's kind has for building — build-essential, git, curl,
# ca-certificates, python3-pip, python3-venv — with the host's Rust toolchain
# bind-mounted read-only and the host's CA certificates and certificate variables,
# so the package registries answer inside it. In that root it
#
#   1. runs the README's run command (scripts/up.sh, which installs what is missing,
#      builds Sluice and starts `sluice up`) and waits until the admin API answers;
#   2. runs the test command's set-up step (scripts/setup.sh) and then
#      `scripts/setup.sh --check`, which fails if anything the tests use is missing;
#   3. with --tests, runs the whole test command (scripts/test.sh) as well.
#
# A check to run by hand before a release, not part of the test suite: it needs
# root and takes many minutes (a release build from scratch). It tests the
# committed HEAD of this checkout (cloned into the root), not uncommitted changes.
#
#   sudo scripts/clean-root-check.sh [--tests] [--keep]
#
# The root goes to a temporary directory under /var/tmp and is removed at the end
# (--keep leaves it, for a look inside). Mirror: $DEBIAN_MIRROR, default
# http://deb.debian.org/debian.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

run_tests=false
keep=false
for arg in "$@"; do
  case "$arg" in
    --tests) run_tests=true ;;
    --keep) keep=true ;;
    *) echo "usage: $0 [--tests] [--keep]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "clean-root-check: needs root (debootstrap, chroot, mounts): sudo $0" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "clean-root-check: installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# The host's toolchain: rustup's home (toolchains) and cargo's bin (the rustup proxies
# and cargo-nextest, as a fresh machine has them).
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
nextest=$(command -v cargo-nextest || true)
[ -d "$rustup_home/toolchains" ] || { echo "clean-root-check: no Rust toolchain at $rustup_home" >&2; exit 2; }
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}

root=$(mktemp -d /var/tmp/sluice-clean-root.XXXXXX)
mounts=()
cleanup() {
  local status=$?
  # Stop whatever still runs inside the root, then unmount (innermost first).
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ]; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -l "${mounts[$i]}" 2>/dev/null || true
  done
  if $keep; then
    echo "clean-root-check: root kept at $root"
  else
    rm -rf --one-file-system "$root"
  fi
  if [ $status -eq 0 ]; then
    echo "clean-root-check: PASSED"
  else
    echo "clean-root-check: FAILED (exit $status)" >&2
  fi
  exit $status
}
trap cleanup EXIT

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "== debootstrap --variant=minbase bookworm into $root"
debootstrap --variant=minbase \
  --include=build-essential,git,curl,ca-certificates,python3-pip,python3-venv \
  bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
  tail -20 "$root.debootstrap.log" >&2
  exit 1
}
rm -f "$root.debootstrap.log"

echo "== preparing the root: CA certificates, /etc/hosts, /proc, /dev, /dev/shm, toolchain"
# The host's CA bundle (registries may be reached through a TLS-inspecting proxy).
mkdir -p "$root/usr/local/share/ca-certificates"
cp "$ca_bundle" "$root/usr/local/share/ca-certificates/host-bundle.crt"
chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# The host's apt settings that make its mirror answer (not its package lists).
cp /etc/apt/apt.conf.d/99* "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

bind() { # bind SOURCE TARGET [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
bind /dev "$root/dev"
mkdir -p "$root/dev/shm"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm" && mounts+=("$root/dev/shm")
mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666 2>/dev/null && mounts+=("$root/dev/pts") || true
bind "$rustup_home" "$root/opt/rustup" ro
bind "$cargo_bin" "$root/opt/cargo-bin" ro
if [ -n "$nextest" ] && [ "$(dirname "$nextest")" != "$cargo_bin" ]; then
  mkdir -p "$root/opt/nextest-bin"
  cp "$nextest" "$root/opt/nextest-bin/"
fi

echo "== cloning the committed HEAD into the root"
git clone --quiet --no-hardlinks "$repo" "$root/src"

# What the chroot's shell starts with: the toolchain on PATH, a cargo home of its
# own, and the host's certificate variables pointing at the copied bundle.
cat >"$root/root/env.sh" <<EOF
export HOME=/root
export RUSTUP_HOME=/opt/rustup
export CARGO_HOME=/root/.cargo
export RUSTUP_AUTO_INSTALL=0
export PATH=/opt/cargo-bin:/opt/nextest-bin:/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8
export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
export SSL_CERT_DIR=/etc/ssl/certs
export CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
export GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt
export CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt
EOF
in_root() { chroot "$root" /usr/bin/env -i bash -c ". /root/env.sh && cd /src && $1"; }

# Ports inside the root share the host's loopback: pick free ones.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin_port=$(free_port)
gateway_port=$(free_port)

echo "== 1. the README's run command: scripts/up.sh (admin 127.0.0.1:$admin_port)"
in_root "exec scripts/up.sh up --admin 127.0.0.1:$admin_port --gateway 127.0.0.1:$gateway_port" \
  >"$root/up.log" 2>&1 &
up_pid=$!
deadline=$((SECONDS + 3600))
until curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; do
  if ! kill -0 $up_pid 2>/dev/null; then
    echo "clean-root-check: scripts/up.sh exited before Sluice answered:" >&2
    tail -40 "$root/up.log" >&2
    exit 1
  fi
  if [ $SECONDS -gt $deadline ]; then
    echo "clean-root-check: Sluice did not answer within an hour" >&2
    tail -40 "$root/up.log" >&2
    exit 1
  fi
  sleep 5
done
echo "   sluice up answers: $(curl -fsS "http://127.0.0.1:$admin_port/readyz")"
curl -sS -o /dev/null -w '   GET / -> %{http_code} %{redirect_url}\n' "http://127.0.0.1:$admin_port/" || true
kill $up_pid 2>/dev/null || true
wait $up_pid 2>/dev/null || true

echo "== 2. the test command's set-up step: scripts/setup.sh, then scripts/setup.sh --check"
in_root "scripts/setup.sh && scripts/setup.sh --check"

if $run_tests; then
  echo "== 3. the test command: scripts/test.sh"
  in_root "scripts/test.sh"
fi
