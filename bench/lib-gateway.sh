# Shared set-up of the gateway benchmarks (sourced by bench/gateway*.sh): a work
# directory whose processes are stopped and which is removed on exit, free ports,
# the nginx upstream every proxy sends to, and Sluice's benchmark route.

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# sluice_build [PATH]: $sluice is that build (default target/release/sluice), and
# $threads_flag holds `--gateway-threads 1` when it knows the flag (older builds do not),
# plus `--tracing false` when it knows that one: nginx records no spans, so the
# comparison is of the same work (bench/gateway-ab.sh measures tracing's cost).
sluice_build() {
  sluice=$(realpath "${1:-target/release/sluice}")
  threads_flag=(); "$sluice" up --help | grep -q -- --gateway-threads && threads_flag=(--gateway-threads 1)
  "$sluice" up --help | grep -q -- '--tracing ' && threads_flag+=(--tracing false)
  return 0
}

# start_upstream [CPU]: a small nginx answering 200 "ok" on $upstream_port (pinned to CPU if given).
start_upstream() {
  upstream_port=$(free_port)
  mkdir -p "$work/up"
  cat > "$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$upstream_port; location / { return 200 "ok"; } } }
CONF
  if [ -n "${1:-}" ]; then taskset -c "$1" "$NGINX" -c "$work/up/nginx.conf" -p "$work/up" & else "$NGINX" -c "$work/up/nginx.conf" -p "$work/up" & fi
  pids+=($!)
}

# echo_route ADMIN_URL [guarded]: service echo (the upstream) and route /echo on a running
# `sluice up`; `guarded` adds a RateLimit and a Concurrency that are not reached (a floor
# of 128 in flight: 64 connections never reach it). Fails when a resource is refused.
echo_route() {
  local admin=$1
  for _ in $(seq 100); do curl -sf "$admin/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf -X PUT "$admin/v1/namespaces/default/services/echo/instances/u1" -d "{\"address\":\"127.0.0.1:$upstream_port\"}" >/dev/null
  curl -sf -X PUT "$admin/v1/namespaces/default/resources/Route/echo" -d '{"spec":{"match":{"path_prefix":"/echo"},"service":"echo"}}' >/dev/null
  [ "${2:-}" = guarded ] || return 0
  curl -sf -X PUT "$admin/v1/namespaces/default/resources/RateLimit/echo" -d '{"spec":{"route":"echo","rate":"1000000r/s","burst":100000,"nodelay":true}}' >/dev/null
  curl -sf -X PUT "$admin/v1/namespaces/default/resources/Concurrency/echo" -d '{"spec":{"route":"echo","min_limit":128}}' >/dev/null
}
