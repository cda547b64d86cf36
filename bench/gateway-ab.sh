#!/usr/bin/env bash
# A/B of two Sluice binaries' gateways, for judging one change at a time: the same
# set-up as bench/gateway.sh (each `sluice up` pinned to CPU 0 with one gateway
# thread, a route with a RateLimit and a Concurrency that are not reached, metrics
# recording on; an nginx upstream and the load generator on CPU 1), rounds
# alternating A and B. Reported, as medians: CPU µs per request at the maximum
# (wrk -t1 -c64) and at a fixed rate (rate-load, 64 connections), and the p99 at
# that rate.
# Usage: [H2=1] [A_ARGS=..] [B_ARGS=..] [EXCLUDE_THREAD=name] bench/gateway-ab.sh BINARY_A BINARY_B [RATE] [SECONDS] [ROUNDS]
#        (H2=1: h2c from the clients — h2load at the maximum, rate-load h2;
#         A_ARGS / B_ARGS: more `sluice up` flags for one side, such as "--tracing false";
#         EXCLUDE_THREAD: a thread whose CPU is also reported apart, such as
#         sluice-spans, the span store's worker, to give the gateway's own cost)
#        (defaults 20000/s, 5 s, 5 rounds; build the binaries with
#         `cargo build --release -p sluice` and copy them aside)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$(realpath "$1"); b=$(realpath "$2"); rate="${3:-20000}"; seconds="${4:-5}"; rounds="${5:-5}"
for tool in nginx wrk; do command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || { echo "needs $tool (bench/gateway.sh installs it)" >&2; exit 1; }; done
cargo build --release --locked -q -p sluice-bench

. bench/lib-gateway.sh
start_upstream 1

declare -A gateway pid
for side in A B; do
  binary=$a; [ "$side" = B ] && binary=$b
  admin_port=$(free_port); gateway_port=$(free_port)
  extra=${A_ARGS:-}; [ "$side" = B ] && extra=${B_ARGS:-}
  # shellcheck disable=SC2086 # the extra flags are words
  taskset -c 0 "$binary" up --data "$work/data-$side" --admin "127.0.0.1:$admin_port" \
    --gateway "127.0.0.1:$gateway_port" --gateway-threads 1 \
    --tracing-otlp "127.0.0.1:$(free_port)" --tracing-zipkin "127.0.0.1:$(free_port)" $extra \
    >"$work/sluice-$side.log" 2>&1 & pid[$side]=$!; pids+=(${pid[$side]})
  echo_route "http://127.0.0.1:$admin_port" guarded
  gateway[$side]="http://127.0.0.1:$gateway_port/echo"
  for _ in $(seq 100); do curl -sf "${gateway[$side]}" >/dev/null && break; sleep 0.1; done
done
sleep 1

ticks=$(getconf CLK_TCK)
cpu_ticks() {
  local total
  total=$(awk '{print $14 + $15}' "/proc/$1/stat")
  if [ -n "${EXCLUDE_THREAD:-}" ] && [ -n "${2:-}" ]; then
    # Without the named thread's CPU.
    for task in /proc/"$1"/task/*; do
      if [ "$(cat "$task/comm" 2>/dev/null)" = "$EXCLUDE_THREAD" ]; then
        total=$((total - $(awk '{print $14 + $15}' "$task/stat")))
      fi
    done
  fi
  echo "$total"
}
rows="$work/rows"; : >"$rows"
for round in $(seq "$rounds"); do
  echo "round $round of $rounds ..." >&2
  for side in A B; do
    if [ -n "${H2:-}" ]; then
      taskset -c 1 h2load -c64 -m1 -D1 "${gateway[$side]}" >/dev/null
      c0=$(cpu_ticks "${pid[$side]}")
      out=$(taskset -c 1 h2load -c64 -m1 -D"$seconds" "${gateway[$side]}")
      c1=$(cpu_ticks "${pid[$side]}")
      n=$(echo "$out" | awk '/^requests:/ {print $8}')
    else
      taskset -c 1 wrk -t1 -c64 -d1s "${gateway[$side]}" >/dev/null
      c0=$(cpu_ticks "${pid[$side]}")
      out=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" "${gateway[$side]}")
      c1=$(cpu_ticks "${pid[$side]}")
      n=$(echo "$out" | awk '/requests in/ {print $1}')
    fi
    echo "max|$side|$(awk -v a="$c1" -v b="$c0" -v t="$ticks" -v n="$n" 'BEGIN { printf "%.2f", (a-b)/t*1e6/n }')" >>"$rows"
    c0=$(cpu_ticks "${pid[$side]}")
    g0=$(cpu_ticks "${pid[$side]}" gateway)
    out=$(taskset -c 1 target/release/rate-load "${gateway[$side]}" "$rate" "$seconds" 64 ${H2:+h2})
    c1=$(cpu_ticks "${pid[$side]}")
    g1=$(cpu_ticks "${pid[$side]}" gateway)
    n=$(echo "$out" | awk '{print $1}')
    echo "fixed|$side|$(awk -v a="$c1" -v b="$c0" -v t="$ticks" -v n="$n" 'BEGIN { printf "%.2f", (a-b)/t*1e6/n }')" >>"$rows"
    echo "without|$side|$(awk -v a="$g1" -v b="$g0" -v t="$ticks" -v n="$n" 'BEGIN { printf "%.2f", (a-b)/t*1e6/n }')" >>"$rows"
    echo "p99|$side|$(echo "$out" | awk '{print $3}')" >>"$rows"
  done
done
median() { awk -F'|' -v k="$1" -v s="$2" '$1==k && $2==s { print $3 }' "$rows" | sort -g |
  awk '{ v[NR]=$1 } END { if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
echo "A: $a"
echo "B: $b"
echo
if [ -n "${EXCLUDE_THREAD:-}" ]; then
  echo "| | CPU µs / request at the maximum | CPU µs / request at $rate/s | the same without $EXCLUDE_THREAD | p99 ms at $rate/s |"
  echo "|---|---:|---:|---:|---:|"
  for side in A B; do
    echo "| $side | $(median max "$side") | $(median fixed "$side") | $(median without "$side") | $(median p99 "$side") |"
  done
else
  echo "| | CPU µs / request at the maximum | CPU µs / request at $rate/s | p99 ms at $rate/s |"
  echo "|---|---:|---:|---:|"
  for side in A B; do
    echo "| $side | $(median max "$side") | $(median fixed "$side") | $(median p99 "$side") |"
  done
fi
