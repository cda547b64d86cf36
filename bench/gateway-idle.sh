#!/usr/bin/env bash
# Memory per idle keep-alive client connection: Sluice's gateway next to nginx.
# Each proxy (one worker: nginx worker_processes 1, sluice --gateway-threads 1)
# gets N client connections (default 10,000), each with one request answered
# through it from an nginx upstream, then held idle; the proxy's resident memory
# (VmRSS of all its processes) before and with them is reported, per connection.
# Usage: bench/gateway-idle.sh [N]   (SLUICE_BIN=PATH measures another sluice binary)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-10000}"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "needs nginx (bench/gateway.sh installs it)" >&2; exit 1; }
cargo build --release --locked -q -p sluice -p sluice-bench
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((count + 1000)) ] || { echo "the open-files limit $(ulimit -n) is too low for $count connections" >&2; exit 1; }

. bench/lib-gateway.sh
sluice_build "${SLUICE_BIN:-}"
start_upstream
nginx_port=$(free_port); gateway_port=$(free_port); admin_port=$(free_port)
mkdir -p "$work/px"
cat > "$work/px/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log $work/px/error.log;
worker_rlimit_nofile $((count + 1000));
events { worker_connections $((count + 1000)); }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
  upstream echo { server 127.0.0.1:$upstream_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port backlog=4096;
    location /echo { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host; proxy_set_header X-Request-Id \$request_id; } } }
CONF
"$NGINX" -c "$work/px/nginx.conf" -p "$work/px" & nginx_master=$!; pids+=($nginx_master)
"$sluice" up --data "$work/data" --admin "127.0.0.1:$admin_port" --gateway "127.0.0.1:$gateway_port" \
  "${threads_flag[@]}" >"$work/sluice.log" 2>&1 & sluice_pid=$!; pids+=($sluice_pid)
echo_route "http://127.0.0.1:$admin_port"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gateway_port/echo" >/dev/null && curl -sf "http://127.0.0.1:$nginx_port/echo" >/dev/null && break; sleep 0.1; done

# Resident memory (KiB) of a process and its child processes.
rss_kib() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") ))
  done
  echo "$total"
}
measure() { # NAME PORT PID
  local name=$1 port=$2 pid=$3 before with fifo
  before=$(rss_kib "$pid")
  fifo="$work/$name.out"; mkfifo "$fifo"
  target/release/idle-conns "127.0.0.1:$port" /echo "$count" 15 >"$fifo" & local client=$!
  read -r ready held <"$fifo" || true
  [ "$ready" = ready ] || { echo "$name: the connections did not all get their answer" >&2; exit 1; }
  sleep 2
  with=$(rss_kib "$pid")
  kill "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true
  echo "$name|$before|$with|$held"
}
rows=("$(measure nginx "$nginx_port" "$nginx_master")" "$(measure sluice "$gateway_port" "$sluice_pid")")
echo "$count idle keep-alive client connections, one request answered on each, one worker each."
echo
echo "| proxy | RSS before | RSS with the connections | per connection | vs nginx |"
echo "|---|---:|---:|---:|---:|"
base=""
for row in "${rows[@]}"; do
  IFS='|' read -r name before with held <<<"$row"
  per=$(awk -v a="$with" -v b="$before" -v n="$held" 'BEGIN { printf "%.1f", (a-b)*1024/n/1024 }')
  [ -z "$base" ] && base=$per
  echo "| $name | $((before / 1024)) MiB | $((with / 1024)) MiB | $per KiB | $(awk -v a="$per" -v b="$base" 'BEGIN { printf "%.2f×", a/b }') |"
done
