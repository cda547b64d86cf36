#!/usr/bin/env bash
# Does a busy control plane slow the gateway? `sluice up` (everything pinned to
# CPU 0, one gateway thread; an nginx upstream and the load generator on CPU 1)
# carries a fixed rate of requests (rate-load, 64 connections, latency from each
# request's scheduled time) while its control plane is
#   idle   — nothing but the request metrics being recorded;
#   apply  — `sluice apply` of 10,000 AlarmRule resources (the client at nice 19
#            on CPU 1; the server's parsing, validation and store writes on CPU 0);
#   judge  — the alarm judge's cycles over those 10,000 rules, every 10 s step.
# Each round starts a fresh `sluice up`; the p99 of each phase is reported (median
# of the rounds), next to the idle one.
# Usage: bench/gateway-busy.sh [RATE] [SECONDS] [ROUNDS] [RULES]
#        (defaults 10000/s, 20 s, 3 rounds, 10000 rules; SLUICE_BIN=PATH for another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-10000}"; seconds="${2:-20}"; rounds="${3:-3}"; rules="${4:-10000}"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "needs nginx (bench/gateway.sh installs it)" >&2; exit 1; }
cargo build --release --locked -q -p sluice -p sluice-bench
sluice=$(realpath "${SLUICE_BIN:-target/release/sluice}")

. bench/lib-gateway.sh
start_upstream 1

# The large apply: RULES alarm rules, one per service, over the gateway's qps.
python3 - "$rules" >"$work/rules.yaml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"---\nkind: AlarmRule\nmetadata: {{name: busy-{i}}}\nspec: {{metric: qps, match: {{service: svc-{i}}}, above: 1000}}")
PY

rows="$work/rows"; : >"$rows"
p99_during() { taskset -c 1 target/release/rate-load "$1" "$rate" "$seconds" 64 | awk '{ print $3 }'; }
for round in $(seq "$rounds"); do
  echo "round $round of $rounds ..." >&2
  admin_port=$(free_port); gateway_port=$(free_port)
  taskset -c 0 "$sluice" up --data "$work/data-$round" --admin "127.0.0.1:$admin_port" \
    --gateway "127.0.0.1:$gateway_port" --gateway-threads 1 >"$work/sluice-$round.log" 2>&1 & pid=$!; pids+=($pid)
  admin="http://127.0.0.1:$admin_port"; url="http://127.0.0.1:$gateway_port/echo"
  echo_route "$admin"
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
  echo "idle|$(p99_during "$url")" >>"$rows"
  started=$(date +%s.%N)
  taskset -c 1 nice -n 19 "$sluice" apply -f "$work/rules.yaml" --server "$admin" >/dev/null 2>"$work/apply.err" & apply=$!
  echo "apply|$(p99_during "$url")" >>"$rows"
  wait "$apply" || { echo "the apply failed: $(tail -3 "$work/apply.err")" >&2; exit 1; }
  echo "apply-seconds|$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')" >>"$rows"
  echo "judge|$(p99_during "$url")" >>"$rows"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
median() { awk -F'|' -v k="$1" '$1==k { print $2 }' "$rows" | sort -g |
  awk '{ v[NR]=$1 } END { if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
idle=$(median idle)
echo "Gateway p99 at $rate/s while the control plane works (one core for all of sluice; $rounds rounds, medians):"
echo
echo "| control plane | p99 ms | vs idle |"
echo "|---|---:|---:|"
echo "| idle | $idle | 1.00× |"
echo "| applying $rules AlarmRules ($(median apply-seconds) s per apply) | $(median apply) | $(awk -v a="$(median apply)" -v b="$idle" 'BEGIN { printf "%.2f×", a/b }') |"
echo "| judging $rules rules every 10 s | $(median judge) | $(awk -v a="$(median judge)" -v b="$idle" 'BEGIN { printf "%.2f×", a/b }') |"
