#!/usr/bin/env bash
# Gateway benchmark: Sluice's gateway next to nginx on this machine, same upstream,
# same work. Each proxy is pinned to CPU 0 with one worker (nginx worker_processes 1,
# sluice --gateway-threads 1); the load generator and the upstream share CPU 1.
# Both proxies add X-Forwarded-For, -Proto, -Host and X-Request-Id and keep 64
# keep-alive upstream connections; Sluice's route also has a RateLimit and a
# Concurrency whose limits are not reached, and Sluice records every request's metrics.
#
# Rounds alternate nginx and Sluice; each round measures
#   - at each one's maximum (64 connections; wrk for HTTP/1.1 and TLS, h2load for
#     h2c): requests/s, p99 and CPU time per request;
#   - at the same fixed rates for both (50 % and 80 % of nginx's maximum, from
#     bench/src/rate_load.rs, latency from each request's scheduled time): p99 and
#     CPU per request;
#   - context switches per request (/proc/PID/task/*/status) in every run, and
#     syscalls per request (perf stat, raw_syscalls:sys_enter) in one fixed-rate run.
# CPU = utime + stime of every thread of the proxy ÷ requests. Medians are reported.
# Usage: bench/gateway.sh [SECONDS] [ROUNDS]   (defaults 10 and 5; SLUICE_BIN=PATH for another build)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
rounds="${2:-5}"
scripts/setup.sh
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --locked -q -p sluice -p sluice-bench
. bench/lib-gateway.sh
# SLUICE_BIN=PATH measures another build (an older one: flags it lacks are left out).
sluice_build "${SLUICE_BIN:-}"
start_upstream 1
nginx_port=$(free_port); nginx_h2_port=$(free_port); nginx_tls_port=$(free_port)
gateway_port=$(free_port); gateway_tls_port=$(free_port); admin_port=$(free_port)
mkdir -p "$work/px"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -days 2 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The peer: nginx as a reverse proxy with a keep-alive upstream pool, on CPU 0,
# setting the headers Sluice sets.
cat > "$work/px/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log $work/px/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream echo { server 127.0.0.1:$upstream_port; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port; listen 127.0.0.1:$nginx_h2_port http2;
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location /echo { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Request-Id \$request_id; } } }
CONF
taskset -c 0 "$NGINX" -c "$work/px/nginx.conf" -p "$work/px" & nginx_master=$!; pids+=($nginx_master)

# Sluice: sluice up with its gateway (one gateway thread), on CPU 0.
taskset -c 0 "$sluice" up --data "$work/data" --admin "127.0.0.1:$admin_port" \
  --gateway "127.0.0.1:$gateway_port" "${threads_flag[@]}" \
  --gateway-tls "127.0.0.1:$gateway_tls_port" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  >"$work/sluice.log" 2>&1 & sluice_pid=$!; pids+=($sluice_pid)
admin="http://127.0.0.1:$admin_port"
# The route with a RateLimit and a Concurrency (brpc's auto limiter with a floor of 128)
# that are not reached: every request still pays for both.
concurrency_note="Concurrency (not reached)"
if ! echo_route "$admin" guarded; then
  # A build without min_limit: its limiter would be reached at 64 connections, so none.
  concurrency_note="no Concurrency (this build has no min_limit)"
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gateway_port/echo" >/dev/null && curl -sf "http://127.0.0.1:$nginx_port/echo" >/dev/null && break; sleep 0.1; done
sleep 1

ticks=$(getconf CLK_TCK)
# CPU ticks (user + system) of a process, its threads and its child processes.
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}
# Context switches (voluntary + involuntary) of every thread of a process and its children.
switches() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }') ))
  done
  echo "$total"
}
# The process and its children, comma-separated (for perf -p).
pid_list() { echo "$1" $(pgrep -P "$1" || true) | tr ' ' ','; }

# One row per measurement: kind|proxy|protocol|rate|requests/s|p99 ms|cpu µs/req|switches/req
rows="$work/rows"; : >"$rows"
per_request() { awk -v a="$1" -v b="$2" -v n="$3" -v scale="$4" 'BEGIN { if (n > 0) printf "%.2f", (a-b)*scale/n; else print "nan" }'; }
cpu_per_request() { per_request "$1" "$2" "$3" "$(awk -v t="$ticks" 'BEGIN { print 1e6/t }')"; }

# max NAME PROTOCOL URL PID
max_run() {
  local name=$1 proto=$2 url=$3 pid=$4 out requests rps p99 c0 c1 s0 s1
  case "$proto" in
    h2c) taskset -c 1 h2load -c64 -m1 -D2 "$url" >/dev/null ;;
    *) taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null ;;
  esac
  local refused0 refused1
  refused0=$(refused_so_far)
  c0=$(cpu_ticks "$pid"); s0=$(switches "$pid")
  case "$proto" in
    h2c)
      out=$(taskset -c 1 h2load -c64 -m1 -D"$seconds" "$url")
      requests=$(echo "$out" | awk '/^requests:/ {print $8}')
      rps=$(echo "$out" | awk '/^finished in/ {print $4}')
      p99=nan ;;
    *)
      out=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" --latency "$url")
      requests=$(echo "$out" | awk '/requests in/ {print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p99=$(echo "$out" | awk '$1=="99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } print v }')
      if echo "$out" | grep -q "Non-2xx"; then echo "warning: $name $proto answered non-2xx: $(echo "$out" | grep Non-2xx)" >&2; fi ;;
  esac
  c1=$(cpu_ticks "$pid"); s1=$(switches "$pid")
  refused1=$(refused_so_far)
  if [ "$name" = sluice ] && [ "$refused1" -gt "$refused0" ]; then
    echo "warning: sluice refused $((refused1 - refused0)) requests at its maximum over $proto" >&2
  fi
  echo "max|$name|$proto|-|$rps|$p99|$(cpu_per_request "$c1" "$c0" "$requests")|$(per_request "$s1" "$s0" "$requests" 1)" >>"$rows"
}

refused_so_far() { curl -sf "$admin/metrics" | awk '/^sluice_gateway_rejections_total/ { s += $2 } END { print s + 0 }'; }

# fixed NAME PROTOCOL URL PID RATE [perf]
fixed_run() {
  local name=$1 proto=$2 url=$3 pid=$4 rate=$5 perf=${6:-} out sent p99 c0 c1 s0 s1 h2="" perf_pid=""
  [ "$proto" = h2c ] && h2=h2
  if [ -n "$perf" ]; then
    perf stat -x, -e raw_syscalls:sys_enter -p "$(pid_list "$pid")" -o "$work/perf.txt" 2>/dev/null & perf_pid=$!
    sleep 0.2
  fi
  local refused0 refused1
  refused0=$(refused_so_far)
  c0=$(cpu_ticks "$pid"); s0=$(switches "$pid")
  out=$(taskset -c 1 target/release/rate-load "$url" "$rate" "$seconds" 64 $h2)
  c1=$(cpu_ticks "$pid"); s1=$(switches "$pid")
  refused1=$(refused_so_far)
  if [ "$name" = sluice ] && [ "$refused1" -gt "$refused0" ]; then
    echo "warning: sluice refused $((refused1 - refused0)) requests at $rate/s over $proto" >&2
  fi
  sent=$(echo "$out" | awk '{print $1}'); p99=$(echo "$out" | awk '{print $3}')
  echo "fixed|$name|$proto|$rate|-|$p99|$(cpu_per_request "$c1" "$c0" "$sent")|$(per_request "$s1" "$s0" "$sent" 1)" >>"$rows"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true
    local calls
    calls=$(awk -F, '/raw_syscalls/ { print $1 }' "$work/perf.txt" 2>/dev/null | head -1)
    # The perf window is a little longer than the load (0.2 s before, the exit after).
    echo "syscalls|$name|$proto|$rate|-|-|$(per_request "${calls:-0}" 0 "$sent" 1)|-" >>"$rows"
  fi
}

declare -A url=(
  [nginx.HTTP/1.1]="http://127.0.0.1:$nginx_port/echo" [sluice.HTTP/1.1]="http://127.0.0.1:$gateway_port/echo"
  [nginx.h2c]="http://127.0.0.1:$nginx_h2_port/echo" [sluice.h2c]="http://127.0.0.1:$gateway_port/echo"
  [nginx.TLS]="https://127.0.0.1:$nginx_tls_port/echo" [sluice.TLS]="https://127.0.0.1:$gateway_tls_port/echo"
)
declare -A pid=([nginx]=$nginx_master [sluice]=$sluice_pid)
median_of() { # KIND NAME PROTOCOL FIELD (5 rps, 6 p99, 7 cpu, 8 switches) [RATE]
  awk -F'|' -v k="$1" -v n="$2" -v p="$3" -v f="$4" -v r="${5:--}" \
    '$1==k && $2==n && $3==p && (r=="-" || $4==r) && $f!="nan" && $f!="-" { print $f }' "$rows" |
    sort -g | awk '{ v[NR]=$1 } END { if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2 }'
}

for round in $(seq "$rounds"); do
  echo "round $round of $rounds ..." >&2
  for proto in HTTP/1.1 h2c TLS; do
    for name in nginx sluice; do
      max_run "$name" "$proto" "${url[$name.$proto]}" "${pid[$name]}"
    done
  done
  for proto in HTTP/1.1 h2c; do
    nginx_max=$(median_of max nginx "$proto" 5)
    for share in 50 80; do
      rate=$(awk -v m="$nginx_max" -v s="$share" 'BEGIN { printf "%d", m*s/100 }')
      # The rate is fixed at round 1 so every round measures the same load.
      [ "$round" -gt 1 ] && rate=$(awk -F'|' -v p="$proto" -v s="$share" '$1=="rate" && $2==p && $3==s { print $4 }' "$rows")
      [ "$round" -eq 1 ] && echo "rate|$proto|$share|$rate" >>"$rows"
      for name in nginx sluice; do
        perf=""; [ "$round" -eq 1 ] && [ "$share" = 50 ] && perf=1
        fixed_run "$name" "$proto" "${url[$name.$proto]}" "${pid[$name]}" "$rate" $perf
      done
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="n/a" || b=="n/a" || b==0) print "n/a"; else printf "%.2f×", a/b }'; }
echo "Proxy pinned to CPU 0 (one worker); load generator and upstream on CPU 1; 64 keep-alive connections;"
echo "${seconds}s per run, $rounds alternating rounds, medians. Sluice: route + RateLimit + $concurrency_note, metrics recording on."
echo "Sluice binary: $sluice"
echo
echo "At each proxy's maximum:"
echo
echo "| proxy | protocol | requests/s | p99 ms | CPU µs / request | CPU vs nginx | context switches / request |"
echo "|---|---|---:|---:|---:|---:|---:|"
for proto in HTTP/1.1 h2c TLS; do
  base=$(median_of max nginx "$proto" 7)
  for name in nginx sluice; do
    cpu=$(median_of max "$name" "$proto" 7)
    echo "| $name | $proto | $(median_of max "$name" "$proto" 5) | $(median_of max "$name" "$proto" 6) | $cpu | $(ratio "$cpu" "$base") | $(median_of max "$name" "$proto" 8) |"
  done
done
echo
echo "At the same fixed rate for both (open loop, latency from the scheduled time):"
echo
echo "| protocol | rate | proxy | p99 ms | p99 vs nginx | CPU µs / request | CPU vs nginx | context switches / request | syscalls / request |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
while IFS='|' read -r kind proto share rate; do
  [ "$kind" = rate ] || continue
  base_p99=$(median_of fixed nginx "$proto" 6 "$rate"); base_cpu=$(median_of fixed nginx "$proto" 7 "$rate")
  for name in nginx sluice; do
    p99=$(median_of fixed "$name" "$proto" 6 "$rate"); cpu=$(median_of fixed "$name" "$proto" 7 "$rate")
    calls=$(median_of syscalls "$name" "$proto" 7 "$rate")
    echo "| $proto | $rate/s ($share %) | $name | $p99 | $(ratio "$p99" "$base_p99") | $cpu | $(ratio "$cpu" "$base_cpu") | $(median_of fixed "$name" "$proto" 8 "$rate") | $calls |"
  done
done <"$rows"
rejected=$(refused_so_far)
echo
echo "Requests Sluice refused during the benchmark (should be 0): $rejected"
