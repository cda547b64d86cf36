#!/usr/bin/env bash
# Overload benchmark: an upstream with a fixed capacity (at most C requests in
# service, L ms each, FIFO queue beyond) behind
#   (a) nginx, plain reverse proxy;
#   (b) nginx with limit_conn tuned to C (it is told the capacity);
#   (c) Sluice with an adaptive Concurrency limit (auto = brpc, gradient = Envoy),
#       no capacity configured;
# an open-loop generator offering 3x capacity. Reported: goodput (answers 200
# within 5*L, as a share of capacity x duration) and p50/p99 of admitted requests.
# Then the priority run: a high- and a low-priority route on the same overloaded
# upstream (high at 0.5x capacity, low at 2.5x) behind Sluice.
# Usage: bench/overload.sh [SECONDS] [C] [L_MS]   (defaults 20, 10, 50)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"; capacity="${2:-10}"; latency="${3:-50}"
scripts/setup.sh
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked -q -p sluice -p sluice-bench

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port); plain_port=$(free_port); limited_port=$(free_port)
rate=$(( 3 * capacity * 1000 / latency ))
per_second=$(( capacity * 1000 / latency ))

target/release/overload upstream "$upstream_port" "$capacity" "$latency" & pids+=($!)

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000;
  upstream capped { server 127.0.0.1:$upstream_port; keepalive 256; }
  limit_conn_zone \$server_name zone=all:1m;
  server { listen 127.0.0.1:$plain_port; server_name plain;
    location / { proxy_pass http://capped; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$limited_port; server_name limited;
    location / { limit_conn all $capacity; limit_conn_status 503;
      proxy_pass http://capped; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" & pids+=($!)

start_sluice() { # $1: algorithm
  local admin gateway
  admin=$(free_port); gateway=$(free_port)
  target/release/sluice up --data "$work/data-$1" --admin "127.0.0.1:$admin" --gateway "127.0.0.1:$gateway" >"$work/sluice-$1.log" 2>&1 & sluice_pid=$!; pids+=($sluice_pid)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  api="http://127.0.0.1:$admin/v1/namespaces/default"
  curl -sf -X PUT "$api/services/echo/instances/u1" -d "{\"address\":\"127.0.0.1:$upstream_port\"}" >/dev/null
  curl -sf -X PUT "$api/resources/Route/high" -d '{"spec":{"match":{"path_prefix":"/high"},"service":"echo","priority":"high"}}' >/dev/null
  curl -sf -X PUT "$api/resources/Route/low" -d '{"spec":{"match":{"path_prefix":"/low"},"service":"echo","priority":"low"}}' >/dev/null
  curl -sf -X PUT "$api/resources/Route/echo" -d '{"spec":{"match":{"path_prefix":"/"},"service":"echo"}}' >/dev/null
  curl -sf -X PUT "$api/resources/Concurrency/echo" -d "{\"spec\":{\"service\":\"echo\",\"algorithm\":\"$1\"}}" >/dev/null
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gateway/echo" >/dev/null && break; sleep 0.1; done
  sluice_url="http://127.0.0.1:$gateway"
}

report() { # $1: label, then the generator's line for one URL
  local label=$1 sent ok within rejected p50 p99
  read -r _ sent ok within rejected p50 p99 <<<"$2"
  local goodput
  goodput=$(python3 -c "print(f'{100*$within/($per_second*$seconds):.1f}')")
  printf '| %-34s | %6s | %6s | %8s | %7s%% | %7s | %7s |\n' "$label" "$sent" "$ok" "$rejected" "$goodput" "$p50" "$p99"
}

echo "capacity: C=$capacity in service, L=${latency}ms each = $per_second req/s; offered ${rate} req/s for ${seconds}s"
noload=$(target/release/overload load 5 "$latency" "http://127.0.0.1:$plain_port/echo=$(( per_second / 10 ))")
echo "no-load latency through nginx (p50 / p99 ms): $(awk '{print $6" / "$7}' <<<"$noload")"
echo
echo "| proxy                              |   sent |     ok | rejected | goodput | p50 ms  | p99 ms  |"
echo "|------------------------------------|-------:|-------:|---------:|--------:|--------:|--------:|"
report "(a) nginx" "$(target/release/overload load "$seconds" "$latency" "http://127.0.0.1:$plain_port/echo=$rate")"
sleep 3 # let the queue behind nginx drain
report "(b) nginx limit_conn $capacity" "$(target/release/overload load "$seconds" "$latency" "http://127.0.0.1:$limited_port/echo=$rate")"
for algorithm in auto gradient; do
  sleep 3
  start_sluice "$algorithm"
  report "(c) Sluice Concurrency $algorithm" "$(target/release/overload load "$seconds" "$latency" "$sluice_url/echo=$rate")"
  kill "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true
done

echo
echo "priority: high at $(( per_second / 2 )) req/s and low at $(( per_second * 5 / 2 )) req/s, one Concurrency limit on the service"
echo "| route (algorithm)                  |   sent |     ok | rejected | success | p50 ms  | p99 ms  |"
echo "|------------------------------------|-------:|-------:|---------:|--------:|--------:|--------:|"
for algorithm in auto gradient; do
  sleep 3
  start_sluice "$algorithm"
  out=$(target/release/overload load "$seconds" "$latency" "$sluice_url/high=$(( per_second / 2 ))" "$sluice_url/low=$(( per_second * 5 / 2 ))")
  while read -r line; do
    read -r url sent ok within rejected p50 p99 <<<"$line"
    share=$(python3 -c "print(f'{100*$ok/$sent:.2f}')")
    printf '| %-34s | %6s | %6s | %8s | %6s%% | %7s | %7s |\n' "${url##*/} ($algorithm)" "$sent" "$ok" "$rejected" "$share" "$p50" "$p99"
  done <<<"$out"
  kill "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true
done
