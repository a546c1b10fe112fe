#!/usr/bin/env bash
# Counts what PostgreSQL does per authd operation (docs/performance.md,
# "Database work per operation"): round trips (top-level statements),
# statements (with the nested ones: foreign-key checks), write transactions
# (transaction ids assigned), WAL records and their bytes, and the bytes of
# WAL full-page images (pg_waldump --stats), and the CPU time PostgreSQL
# and authd spent (the one figure here that a busy machine inflates). Every
# operation runs twice with cmd/authbench, N1 and N2 times; the figures are
# the differences divided by N2 - N1, so the set-up each authbench run does
# (registering its clients, the code flows that start refresh chains)
# cancels out. These counts do not depend on how busy the machine is, except
# where concurrent rows share a statement (registrations and opaque
# client_credentials tokens, batched under load): at concurrency 1 nothing
# is shared.
#
# The cluster is durable as in docs/performance.md, with pg_stat_statements
# loaded, autovacuum off and no checkpoint during the runs (one right before
# each run), so that background work does not blur the WAL figures;
# full-page images are counted apart (they depend on where checkpoints fall).
#
#   scripts/dbwork.sh                          # authd built from this tree
#   scripts/dbwork.sh /tmp/authd-old ./authd   # one table section per binary
#   CONCURRENCY="1 32" N1=1000 N2=5000 OPS="register client-credentials-opaque" scripts/dbwork.sh
#
# Operations: client-credentials (JWT), client-credentials-opaque,
# register, introspect (a client's JWT), introspect-user (a user's JWT),
# introspect-opaque, refresh, code-flow (FLOWS1 and FLOWS2 flows).
# Run as root (PostgreSQL then runs as nobody) or as a user who may run
# postgres. Needs PostgreSQL 15+ server binaries, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
CONCURRENCY=${CONCURRENCY:-"1 32"}
N1=${N1:-1000}
N2=${N2:-5000}
FLOWS1=${FLOWS1:-100}
FLOWS2=${FLOWS2:-500}
OPS=${OPS:-"client-credentials client-credentials-opaque register introspect introspect-user introspect-opaque refresh code-flow"}
# DETAIL=1 also prints each operation's statements (calls per operation).
DETAIL=${DETAIL:-0}

B=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
W=$(mktemp -d /tmp/authd-dbwork.XXXXXX)
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

binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  go build -o "$W/authd" ./cmd/authd
  binaries=("$W/authd")
fi
go build -o "$W/authbench" ./cmd/authbench

$as "$B/initdb" -D "$W/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >/dev/null
$as "$B/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -o "-p $PORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$W/pg -c max_connections=200 -c shared_buffers=256MB \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all \
  -c pg_stat_statements.max=10000 -c autovacuum=off -c checkpoint_timeout=1d -c max_wal_size=20GB" start >/dev/null
psql() { $as "$B/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -XAtq "$@"; }
psql -c 'create extension pg_stat_statements'

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
purge_interval: 0
EOF

# snapshot prints: round trips, statements, xids assigned (for the database
# $DB), and the WAL position.
snapshot() {
  psql -F' ' -c "
    select coalesce(sum(calls) filter (where toplevel), 0), coalesce(sum(calls), 0),
      pg_snapshot_xmax(pg_current_snapshot()), pg_current_wal_lsn()
    from pg_stat_statements where dbid = (select oid from pg_database where datname = '$DB')"
}

# cpu_ns prints the CPU time PostgreSQL (every process of the cluster,
# those that exited included) and authd have used so far, in ns.
TCK=$(getconf CLK_TCK)
cpu_ns() {
  local pm pg=0 c
  pm=$(head -1 "$W/pg/data/postmaster.pid")
  pg=$(awk -v t="$TCK" '{printf "%.0f", ($16 + $17) * 1e9 / t}' "/proc/$pm/stat")
  for c in "$pm" $(ps -o pid= --ppid "$pm"); do
    [ -r "/proc/$c/schedstat" ] && pg=$((pg + $(awk '{print $1}' "/proc/$c/schedstat" 2>/dev/null || echo 0)))
  done
  # authd's threads: /proc/PID/stat (schedstat counts the main thread only).
  echo "$pg $(awk -v t="$TCK" '{printf "%.0f", ($14 + $15) * 1e9 / t}' "/proc/$AUTHD_PID/stat")"
}

# walstats FROM TO prints the WAL between two positions: records, bytes of
# records, bytes of full-page images (pg_waldump's "Total" line).
walstats() {
  "$B/pg_waldump" -p "$W/pg/data/pg_wal" -s "$1" -e "$2" --stats 2>/dev/null |
    awk '$1 == "Total" { gsub(/\[[^]]*\]/, ""); print $2, $3, $4 }'
}

run() { # op count concurrency
  local args=(-op "$1" -requests "$2" -concurrency "$3")
  case $1 in
    client-credentials-opaque) args=(-op client-credentials -resource https://mcp.example.com/opaque -requests "$2" -concurrency "$3") ;;
    introspect) args+=(-introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
    introspect-user) args=(-op introspect -token-from code-flow -requests "$2" -concurrency "$3"
      -introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
    introspect-opaque) args+=(-opaque-resource https://mcp.example.com/opaque
      -introspect-client-id bench-introspector -introspect-client-secret "$IS") ;;
  esac
  local errs
  errs=$("$W/authbench" -target "http://127.0.0.1:$APORT" -warmup 0 -json "${args[@]}" | jq .errors)
  [ "$errs" = 0 ] || { echo "authbench $1: $errs errors" >&2; exit 1; }
}

echo "PostgreSQL $($B/postgres --version | awk '{print $3}'), N = $N1 and $N2 ($FLOWS1 and $FLOWS2 code flows); load average $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
for bin in "${binaries[@]}"; do
  i=$((i + 1))
  DB=authd_$i
  psql -c "create database $DB"
  APORT=$((40000 + RANDOM % 20000))
  AUTHD_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$DB" AUTHD_LISTEN=127.0.0.1:$APORT AUTHD_ISSUER=http://127.0.0.1:$APORT \
    "$bin" serve --dev --migrate --config "$W/bench.yaml" >"$W/authd.log" 2>&1 &
  AUTHD_PID=$!
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$APORT/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$APORT/ready" >/dev/null || { cat "$W/authd.log" >&2; exit 1; }
  echo
  echo "### $bin"
  echo
  echo "| operation | concurrency | round trips | statements | write transactions | WAL records | WAL bytes (records) | full-page image bytes | PostgreSQL CPU µs | authd CPU µs |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for c in $CONCURRENCY; do
    for op in $OPS; do
      n1=$N1 n2=$N2
      [ "$op" = code-flow ] && n1=$FLOWS1 n2=$FLOWS2
      d=() detail=""
      for n in "$n1" "$n2"; do
        psql -c checkpoint
        psql -c 'select pg_stat_statements_reset()' >/dev/null
        a=($(snapshot) $(cpu_ns))
        run "$op" "$n" "$c"
        z=($(snapshot) $(cpu_ns))
        for k in 0 1 2; do d+=($((z[k] - a[k]))); done
        d+=($(walstats "${a[3]}" "${z[3]}") $((z[4] - a[4])) $((z[5] - a[5])))
        if [ "$DETAIL" = 1 ] && [ "$n" = "$n2" ]; then
          detail=$(psql -F' | ' -c "select round(calls::numeric / $n2, 2), toplevel, regexp_replace(left(query, 110), '\s+', ' ', 'g')
            from pg_stat_statements where dbid = (select oid from pg_database where datname = '$DB')
            and calls >= $n2 / 50 order by calls desc" | sed 's/^/    /')
        fi
      done
      awk -v op="$op" -v c="$c" -v dn=$((n2 - n1)) -v v="${d[*]}" 'BEGIN {
        split(v, x, " ");
        printf "| %s | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f | %.0f |\n", op, c,
          (x[9]-x[1])/dn, (x[10]-x[2])/dn, (x[11]-x[3])/dn, (x[12]-x[4])/dn, (x[13]-x[5])/dn, (x[14]-x[6])/dn,
          (x[15]-x[7])/dn/1000, (x[16]-x[8])/dn/1000 }'
      if [ -n "$detail" ]; then echo "$detail" >&2; fi
    done
  done
  stop_authd
done
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
