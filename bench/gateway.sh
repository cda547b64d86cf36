#!/usr/bin/env bash
# Gateway benchmark: Sluice's gateway next to nginx on this machine, same upstream.
# Each proxy is pinned to CPU 0 (one core, one worker); the load generator and the
# upstream share CPU 1. Load: 64 keep-alive connections — wrk for HTTP/1.1, h2load
# for h2c. Reported: requests/s, latency p99 (at full load), and CPU time per
# proxied request (utime+stime of the proxy's processes ÷ requests), with ratios.
# Usage: bench/gateway.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
scripts/setup.sh
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked -q -p sluice -p sluice-bench

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port); nginx_port=$(free_port); nginx_h2_port=$(free_port); gateway_port=$(free_port); admin_port=$(free_port)
mkdir -p "$work/up" "$work/px"

# The upstream: a small nginx answering 200 "ok" on CPU 1.
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$upstream_port; location / { return 200 "ok"; } } }
CONF
taskset -c 1 "$NGINX" -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)

# The peer: nginx as a reverse proxy with a keep-alive upstream pool, on CPU 0.
cat > "$work/px/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log $work/px/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream echo { server 127.0.0.1:$upstream_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port; listen 127.0.0.1:$nginx_h2_port http2;
    location /echo { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
CONF
taskset -c 0 "$NGINX" -c "$work/px/nginx.conf" -p "$work/px" & nginx_master=$!; pids+=($nginx_master)

# Sluice: sluice up with its gateway, on CPU 0.
taskset -c 0 target/release/sluice up --data "$work/data" --admin "127.0.0.1:$admin_port" --gateway "127.0.0.1:$gateway_port" >"$work/sluice.log" 2>&1 & sluice_pid=$!; pids+=($sluice_pid)
# The same without recording request metrics (--metrics-gateway false), for the cost of recording.
norec_gateway_port=$(free_port); norec_admin_port=$(free_port)
taskset -c 0 target/release/sluice up --data "$work/data-norec" --admin "127.0.0.1:$norec_admin_port" --gateway "127.0.0.1:$norec_gateway_port" --metrics-gateway false >"$work/sluice-norec.log" 2>&1 & norec_pid=$!; pids+=($norec_pid)
for admin in "$admin_port" "$norec_admin_port"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf -X PUT "http://127.0.0.1:$admin/v1/namespaces/default/services/echo/instances/u1" -d "{\"address\":\"127.0.0.1:$upstream_port\"}" >/dev/null
  curl -sf -X PUT "http://127.0.0.1:$admin/v1/namespaces/default/resources/Route/echo" -d '{"spec":{"match":{"path_prefix":"/echo"},"service":"echo"}}' >/dev/null
done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gateway_port/echo" >/dev/null && curl -sf "http://127.0.0.1:$norec_gateway_port/echo" >/dev/null && curl -sf "http://127.0.0.1:$nginx_port/echo" >/dev/null && break; sleep 0.1; done

ticks=$(getconf CLK_TCK)
# CPU ticks (user + system) of a process and its children threads/processes.
cpu_ticks() {
  local total=0 pid
  for pid in "$@" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}

# run NAME PROTOCOL URL PIDS...
results=()
run() {
  local name=$1 proto=$2 url=$3; shift 3
  local out requests rps p99 before after
  if [ "$proto" = "HTTP/1.1" ]; then
    taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null
    before=$(cpu_ticks "$@")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" --latency "$url")
    after=$(cpu_ticks "$@")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  else
    taskset -c 1 h2load -c64 -m1 -D2 "$url" >/dev/null
    before=$(cpu_ticks "$@")
    out=$(taskset -c 1 h2load -c64 -m1 -D"$seconds" "$url")
    after=$(cpu_ticks "$@")
    requests=$(echo "$out" | awk '/^requests:/ {print $8}')
    rps=$(echo "$out" | awk '/^finished in/ {print $4}')
    p99="n/a"
  fi
  local cpu_us
  cpu_us=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v n="$requests" 'BEGIN { printf "%.1f", (a-b)/t*1e6/n }')
  results+=("$name|$proto|$rps|$p99|$cpu_us")
}

run nginx HTTP/1.1 "http://127.0.0.1:$nginx_port/echo" "$nginx_master"
run sluice HTTP/1.1 "http://127.0.0.1:$gateway_port/echo" "$sluice_pid"
run sluice-no-recording HTTP/1.1 "http://127.0.0.1:$norec_gateway_port/echo" "$norec_pid"
run nginx h2c "http://127.0.0.1:$nginx_h2_port/echo" "$nginx_master"
run sluice h2c "http://127.0.0.1:$gateway_port/echo" "$sluice_pid"
run sluice-no-recording h2c "http://127.0.0.1:$norec_gateway_port/echo" "$norec_pid"

# p99 at half of nginx's maximum throughput (per protocol), at a fixed rate, measured
# from each request's scheduled time (bench/src/rate_load.rs: no coordinated omission).
p99_at() { # URL RATE [h2]
  taskset -c 1 target/release/rate-load "$1" "$2" "$seconds" 64 ${3:-} | awk '{ printf "%.2f ms", $3 }'
}
half_rates=()
for row in "${results[@]}"; do
  IFS='|' read -r name proto rps _ _ <<<"$row"
  [ "$name" = nginx ] && half_rates+=("$proto|$(awk -v r="$rps" 'BEGIN { printf "%d", r / 2 }')")
done
half_p99=()
for entry in "${half_rates[@]}"; do
  IFS='|' read -r proto rate <<<"$entry"
  if [ "$proto" = "HTTP/1.1" ]; then
    half_p99+=("nginx|$proto|$rate|$(p99_at "http://127.0.0.1:$nginx_port/echo" "$rate")")
    half_p99+=("sluice|$proto|$rate|$(p99_at "http://127.0.0.1:$gateway_port/echo" "$rate")")
  else
    half_p99+=("nginx|$proto|$rate|$(p99_at "http://127.0.0.1:$nginx_h2_port/echo" "$rate" h2)")
    half_p99+=("sluice|$proto|$rate|$(p99_at "http://127.0.0.1:$gateway_port/echo" "$rate" h2)")
  fi
done

echo "Proxy pinned to CPU 0; load generator and upstream on CPU 1; 64 keep-alive connections; ${seconds}s per run."
echo
echo "| proxy | protocol | requests/s | p99 latency | CPU µs / request | CPU vs nginx |"
echo "|---|---|---:|---:|---:|---:|"
for row in "${results[@]}"; do
  IFS='|' read -r name proto rps p99 cpu <<<"$row"
  base=""
  for other in "${results[@]}"; do
    IFS='|' read -r oname oproto _ _ ocpu <<<"$other"
    [ "$oname" = nginx ] && [ "$oproto" = "$proto" ] && base=$ocpu
  done
  ratio=$(awk -v a="$cpu" -v b="$base" 'BEGIN { printf "%.2f×", a/b }')
  echo "| $name | $proto | $rps | $p99 | $cpu | $ratio |"
done
echo
echo "| proxy | protocol | fixed rate (½ nginx max) | p99 latency |"
echo "|---|---|---:|---:|"
for row in "${half_p99[@]}"; do
  IFS='|' read -r name proto rate p99 <<<"$row"
  echo "| $name | $proto | $rate/s | $p99 |"
done
