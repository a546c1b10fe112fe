#!/usr/bin/env bash
# Measures what one operation costs (docs/capacity.md): CPU in authd, CPU in
# PostgreSQL, transactions, WAL records, bytes and flushes. Each operation
# runs twice with cmd/authbench, for SHORT and LONG seconds; the per-operation
# figures are the differences between the two runs divided by the difference
# in operations, so the set-up work (registering clients, signing in for
# refresh chains) cancels out. PostgreSQL is durable (fsync and
# synchronous_commit on), as in docs/performance.md. Run as root or as a
# user who may run postgres. Needs PostgreSQL's server binaries, curl and jq.
#
#   docs/capacity-measure.sh            # prints one line per operation
#   CONCURRENCY=8 SHORT=3 LONG=9 OPS="refresh code-flow" docs/capacity-measure.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
CONCURRENCY=${CONCURRENCY:-8}
SHORT=${SHORT:-3}
LONG=${LONG:-9}
OPS=${OPS:-"client-credentials introspect introspect-user refresh register code-flow"}
B=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/authd-capacity.XXXXXX)
as=""
if [ "$(id -u)" -eq 0 ]; then chmod 755 "$W"; mkdir "$W/pg"; chown nobody "$W/pg"; as="runuser -u nobody --"; else mkdir "$W/pg"; fi
PORT=$((20000 + RANDOM % 20000))
cleanup() {
  [ -n "${AUTHD_PID:-}" ] && kill "$AUTHD_PID" 2>/dev/null && wait "$AUTHD_PID" 2>/dev/null
  $as "$B/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

$as "$B/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
$as "$B/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$W/pg -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
psql() { $as "$B/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atq "$@"; }
psql -c 'create database authd'

go build -o "$W/authd" ./cmd/authd
go build -o "$W/authbench" ./cmd/authbench
IS=introspect-secret-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d =)
H=$(printf %s "$IS" | sha256sum | cut -d' ' -f1)
cat >"$W/bench.yaml" <<EOF
log: {level: warn}
keys: {encryption_secret: bench-encryption-secret-0123456789abcdef0123}
resources: [{uri: https://mcp.example.com/mcp, name: MCP}]
clients: [{id: bench-introspector, name: resource server, secret_hash: "sha256\$$H", introspect: true}]
rate_limits:
  authorize: {per_ip_per_minute: 0, per_ip_burst: 0}
  token: {per_ip_per_minute: 0, per_ip_burst: 0}
  revoke: {per_ip_per_minute: 0, per_ip_burst: 0}
registration:
  allow_client_credentials: true
  rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0, global_per_minute: 0, global_burst: 0}
introspection: {rate_limit: {per_ip_per_minute: 0, per_ip_burst: 0}}
purge_interval: 0
EOF
APORT=$((40000 + RANDOM % 20000))
AUTHD_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/authd" AUTHD_LISTEN=127.0.0.1:$APORT AUTHD_ISSUER=http://127.0.0.1:$APORT \
  "$W/authd" serve --dev --migrate --config "$W/bench.yaml" >"$W/authd.log" 2>&1 &
AUTHD_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$APORT/ready" >/dev/null 2>&1 && break; sleep 0.1; done

TCK=$(getconf CLK_TCK)
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }
# PostgreSQL's CPU: the postmaster, its live children, and (cutime, cstime)
# the children that have exited and been reaped.
pg_cpu() {
  local pm; pm=$(head -1 "$W/pg/data/postmaster.pid")
  local t; t=$(awk '{print $14+$15+$16+$17}' "/proc/$pm/stat")
  for c in $(ps -o pid= --ppid "$pm"); do
    [ -r "/proc/$c/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
snapshot() {
  sleep 1.2 # PostgreSQL publishes its statistics at most once a second
  local db; db=$(psql -c "select xact_commit from pg_stat_database where datname='authd'")
  local wal; wal=$(psql -F' ' -c "select wal_records, wal_bytes, wal_sync from pg_stat_wal")
  echo "$(cpu_of "$AUTHD_PID") $(pg_cpu) $db $wal"
}
run() { # op seconds -> operations completed
  local extra=()
  case $1 in
    introspect) extra=(-introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
    introspect-user) extra=(-introspect-client-id bench-introspector -introspect-client-secret "$IS" -token-from code-flow) ;;
  esac
  local op=$1; [ "$op" = introspect-user ] && op=introspect
  "$W/authbench" -target "http://127.0.0.1:$APORT" -op "$op" -concurrency "$CONCURRENCY" -duration "${2}s" -json "${extra[@]}" |
    jq '.requests - .errors'
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); concurrency $CONCURRENCY, runs of ${SHORT}s and ${LONG}s"
printf '%-18s %8s %10s %10s %8s %8s %9s %8s\n' operation ops/s authd_ms pg_ms xacts wal_rec wal_bytes wal_sync
for op in $OPS; do
  declare -a d=()
  n=()
  for secs in "$SHORT" "$LONG"; do
    before=($(snapshot))
    ops=$(run "$op" "$secs")
    after=($(snapshot))
    n+=("$ops")
    for i in 0 1 2 3 4 5; do d+=($((after[i] - before[i]))); done
  done
  dn=$((n[1] - n[0]))
  awk -v op="$op" -v dn="$dn" -v secs=$((LONG - SHORT)) -v tck="$TCK" -v a="${d[*]}" 'BEGIN{
    split(a, v, " ");
    if (dn <= 0) { printf "%-18s no operations\n", op; exit }
    printf "%-18s %8.0f %10.3f %10.3f %8.2f %8.2f %9.0f %8.3f\n", op, dn/secs,
      (v[7]-v[1])*1000/tck/dn, (v[8]-v[2])*1000/tck/dn, (v[9]-v[3])/dn, (v[10]-v[4])/dn, (v[11]-v[5])/dn, (v[12]-v[6])/dn }'
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
