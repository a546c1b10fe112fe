#!/usr/bin/env bash
# Throughput of two authd binaries, interleaved (docs/performance.md,
# "Throughput, interleaved"): for every round and operation, a run against
# the first binary, then one against the second (the order alternates from
# round to round), each with a fresh authd on a fresh database of one
# PostgreSQL cluster (durable, as in docs/performance.md), so that the
# machine's load, which changes from minute to minute, falls on both alike.
# Prints each run, then per operation the median req/s of each binary, the
# ratio second/first, the median p99 and the load averages seen.
#
#   scripts/interleave.sh /tmp/authd-before /tmp/authd-after
#   ROUNDS=5 DURATION=10s OPS="register client-credentials-opaque" scripts/interleave.sh old new
#   RESULTS=runs.txt scripts/interleave.sh old new  # keep the runs (appended), e.g. to pool sweeps
#   RESULTS=runs.txt ROUNDS=0 scripts/interleave.sh old new  # only the table of the runs kept
#
# Operations as in scripts/dbwork.sh. Run as root (PostgreSQL then runs as
# nobody) or as a user who may run postgres. Needs PostgreSQL's server
# binaries, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
[ $# -eq 2 ] || { echo "usage: $0 AUTHD_BEFORE AUTHD_AFTER" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-1s}
OPS=${OPS:-"client-credentials client-credentials-opaque register introspect introspect-user introspect-opaque refresh code-flow"}
RESULTS=${RESULTS:-}

B=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/authd-interleave.XXXXXX)
as=""
if [ "$(id -u)" -eq 0 ]; then chmod 755 "$W"; mkdir "$W/pg"; chown nobody "$W/pg"; as="runuser -u nobody --"; else mkdir "$W/pg"; fi
PORT=$((20000 + RANDOM % 20000))
AUTHD_PID=""
stop_authd() {
  if [ -n "$AUTHD_PID" ]; then kill "$AUTHD_PID" 2>/dev/null || true; wait "$AUTHD_PID" 2>/dev/null || true; AUTHD_PID=""; fi
}
cleanup() {
  stop_authd
  $as "$B/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
[ -n "$RESULTS" ] || RESULTS=$W/results
touch "$RESULTS"

bins=("$1" "$2")
if [ "$ROUNDS" -gt 0 ]; then
go build -o "$W/authbench" ./cmd/authbench
$as "$B/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
$as "$B/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$W/pg -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
psql() { $as "$B/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -XAtq "$@"; }

IS=introspect-secret-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d =)
H=$(printf %s "$IS" | sha256sum | cut -d' ' -f1)
cat >"$W/bench.yaml" <<EOF
log: {level: warn}
keys: {encryption_secret: bench-encryption-secret-0123456789abcdef0123}
resources:
  - {uri: https://mcp.example.com/mcp, name: MCP (JWT)}
  - {uri: https://mcp.example.com/opaque, name: MCP (opaque tokens), token_format: opaque}
default_resource: https://mcp.example.com/mcp
clients: [{id: bench-introspector, name: resource server, secret_hash: "sha256\$$H", introspect: true}]
rate_limits:
  authorize: {per_ip_per_minute: 0, per_ip_burst: 0}
  token: {per_ip_per_minute: 0, per_ip_burst: 0}
  revoke: {per_ip_per_minute: 0, per_ip_burst: 0}
registration:
  allow_client_credentials: true
  rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0, global_per_minute: 0, global_burst: 0}
introspection: {rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0}}
EOF

run() { # binary-index op round -> appends one result line
  local bin=${bins[$1]} op=$2 db=authd_${2//-/_}_$1_$3
  psql -c "create database $db"
  local aport attempt
  for attempt in 1 2 3; do # a port another process took, a start-up slower than a minute
    aport=$((40000 + RANDOM % 20000))
    AUTHD_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$db" AUTHD_LISTEN=127.0.0.1:$aport AUTHD_ISSUER=http://127.0.0.1:$aport \
      "$bin" serve --dev --migrate --config "$W/bench.yaml" >"$W/authd.log" 2>&1 &
    AUTHD_PID=$!
    for _ in $(seq 600); do curl -fs "http://127.0.0.1:$aport/ready" >/dev/null 2>&1 && break 2; sleep 0.1; done
    echo "authd did not get ready (attempt $attempt):" >&2; tail -5 "$W/authd.log" >&2
    stop_authd
  done
  local args=(-op "$op")
  case $op in
    client-credentials-opaque) args=(-op client-credentials -resource https://mcp.example.com/opaque) ;;
    introspect) args+=(-introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
    introspect-user) args=(-op introspect -token-from code-flow -introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
    introspect-opaque) args+=(-opaque-resource https://mcp.example.com/opaque
      -introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
  esac
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  "$W/authbench" -target "http://127.0.0.1:$aport" -concurrency "$CONCURRENCY" -duration "$DURATION" -warmup "$WARMUP" -json "${args[@]}" |
    jq -r --arg op "$op" --arg b "$1" --arg r "$3" --arg l "$load" '"\($op) \($b) \($r) \(.per_second) \(.p99_ms) \(.errors) \($l)"' >>"$RESULTS"
  tail -1 "$RESULTS" >&2
  stop_authd
  psql -c "drop database $db"
}

echo "concurrency $CONCURRENCY, $DURATION runs after $WARMUP warm-up, $ROUNDS rounds; before = $1, after = $2" >&2
fi
for r in $(seq "$ROUNDS"); do
  for op in $OPS; do
    if [ $((r % 2)) = 1 ]; then run 0 "$op" "$r"; run 1 "$op" "$r"; else run 1 "$op" "$r"; run 0 "$op" "$r"; fi
  done
done

echo "| operation | before req/s (median) | runs | after req/s (median) | runs | after / before | p99 ms before → after | errors | load average |"
echo "|---|---:|---|---:|---|---:|---|---:|---|"
for op in $OPS; do
  awk -v op="$op" '
    function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
      return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
    $1 == op { n[$2]++; v[$2, n[$2]] = $4; p[$2, n[$2]] = $5; runs[$2] = runs[$2] (runs[$2] == "" ? "" : " / ") sprintf("%.0f", $4)
      err += $6; if (lo == "" || $7 < lo) lo = $7; if (hi == "" || $7 > hi) hi = $7 }
    END {
      for (b = 0; b <= 1; b++) { delete a; delete q; for (i = 1; i <= n[b]; i++) { a[i] = v[b, i]; q[i] = p[b, i] }
        m[b] = median(a, n[b]); mp[b] = median(q, n[b]) }
      printf "| %s | %.0f | %s | %.0f | %s | %.2f | %.1f → %.1f | %d | %s–%s |\n", op, m[0], runs[0], m[1], runs[1], m[1] / m[0], mp[0], mp[1], err, lo, hi
    }' "$RESULTS"
done
