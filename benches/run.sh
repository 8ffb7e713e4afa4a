#!/usr/bin/env bash
# Reruns every figure of BENCHMARKS.md in one go and keeps the output.
#
#   benches/run.sh          everything (about 30–40 minutes on 2 cores)
#   benches/run.sh smoke    presence-load's smoke run only (a few hundred
#                           sockets, a few seconds; no Redis or Postgres)
#   benches/run.sh p7       the join storms of P7 only (about 15 minutes)
#
# Needs, for the full run: Redis on $REDIS_URL (default
# redis://127.0.0.1:6379) with redis-benchmark on the PATH, and PostgreSQL
# on $PG_URL (default postgres://postgres@127.0.0.1:5432/test) with pgbench.
# All output goes to target/bench-results/<UTC time>-<mode>.log as well.
# Lines starting with RESULT are presence-load's machine-readable results.
set -euo pipefail

mode=${1:-full}
case "$mode" in
full | smoke | p7) ;;
*)
    echo "usage: $0 [full|smoke|p7]" >&2
    exit 2
    ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
results=$target/bench-results
mkdir -p "$results"
log=$results/$(date -u +%Y%m%dT%H%M%SZ)-$mode.log
exec > >(tee "$log") 2>&1

echo "== presence benchmarks ($mode), log: $log"
echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "nproc:  $(nproc)"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel: $(uname -sr)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
# The open-files limit bounds the sockets one process can hold.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files: $(ulimit -n) (hard $(ulimit -Hn))"
echo

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}

fail() {
    echo "run.sh: $*" >&2
    exit 1
}

if [ "$mode" != smoke ]; then
    command -v redis-cli >/dev/null || fail "redis-cli not found (install redis-tools)"
    command -v redis-benchmark >/dev/null || fail "redis-benchmark not found (install redis-tools)"
    command -v pgbench >/dev/null || fail "pgbench not found (install postgresql-contrib / postgresql-client)"
    command -v pg_isready >/dev/null || fail "pg_isready not found (install postgresql-client)"
    redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG ||
        fail "Redis is not reachable at $REDIS_URL (start it, or set REDIS_URL)"
    pg_isready -d "$PG_URL" >/dev/null ||
        fail "PostgreSQL is not reachable at $PG_URL (start it, or set PG_URL)"
    echo "Redis at $REDIS_URL and PostgreSQL at $PG_URL are reachable"
fi

echo "== build (release)"
cargo build --release -p presence-demo -p presence-benches
bin=$target/release
load=$bin/presence-load

# A step that misses its targets is a figure, not a reason to stop.
failed=0
step() {
    echo
    echo "== $*"
    local code=0
    "$@" || code=$?
    if [ "$code" -ne 0 ]; then
        echo "== exit code $code: the step failed or did not meet its checks (continuing)"
        failed=$((failed + 1))
    fi
}

if [ "$mode" = smoke ]; then
    echo
    echo "== $load smoke"
    exec "$load" smoke
fi

if [ "$mode" = full ]; then
step cargo bench -p presence-benches --bench memory_store -- --warm-up-time 1 --measurement-time 4
# Issue 16: the service path (the public Presence API), the store alone in a
# process of its own for its memory, and the heap breakdown per user.
step cargo bench -p presence-benches --bench service
step cargo bench -p presence-benches --bench service -- store 10000
step cargo bench -p presence-benches --bench service -- store 100000
step "$bin/memory-breakdown" 100000
# Issue 19: what custom status, devices, app state and counts cost.
step "$bin/presence-data" 100000
step "$bin/durable-changes" 3
step "$bin/socket-memory" 2000
step "$bin/socket-memory" 5000
step "$bin/redis-throughput" "$REDIS_URL"
step "$bin/pg-throughput" "$PG_URL"
# Issue 17: store operations per second at steady state, idle sessions on
# two nodes (a redis-server of its own on port 6391; a schema of its own).
step "$bin/store-ops" redis 10000
step "$bin/store-ops" redis 100000
step "$bin/store-ops" postgres 10000
# Issue 17, Redis Cluster shards: transitions/s on a 3-master cluster (16
# shards) against one Redis, same run (servers of its own on 6392-6395).
step "$bin/cluster-throughput" 3

# P5: idle sockets on the demo, at the open-files limit and at 5000.
step "$load" idle --sockets 19000
step "$load" idle --sockets 5000

# P6: fan-out to 1k and 10k watchers of one scope: once on the demo, then
# on --server lib (the same library routes without the demo's pages, which
# is also what runs two nodes below). Paced (a change every 100 ms) for
# latency; back to back for throughput.
step "$load" fanout --watchers 1000 --changes 20 --interval-ms 100
step "$load" fanout --server lib --watchers 1000 --changes 20 --interval-ms 100
step "$load" fanout --server lib --watchers 1000 --changes 30 --interval-ms 0
step "$load" fanout --server lib --watchers 1000 --triggers 10 --changes 30 --interval-ms 0
step "$load" fanout --server lib --watchers 10000 --changes 20 --interval-ms 100
# The same bursts with batches (?batch=1, as presence.js asks by default).
step "$load" fanout --server lib --batch --watchers 1000 --triggers 10 --changes 30 --interval-ms 0

fi

# P7: join storm into a scope of 10k watchers, 5k joins/s for 1 s (the
# join is the login; the joiners open no socket: each socket would first
# pull a snapshot of the whole 10k-user scope). One node, then two nodes
# on Redis (watchers on A, joiners on B); then with interest
# subscriptions of 50 users per watcher.
step "$load" storm --server lib --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --timeout-s 60
step "$load" storm --server lib --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --interest 50
step "$load" storm --server lib --nodes 2 --store "$REDIS_URL" --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --interest 50
step "$load" storm --server lib --nodes 2 --store "$REDIS_URL" --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --timeout-s 60
# Whole-scope storms again with batches, as browsers running presence.js get them.
step "$load" storm --server lib --batch --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --timeout-s 60
step "$load" storm --server lib --batch --nodes 2 --store "$REDIS_URL" --watchers 10000 --rate 5000 --duration-ms 1000 --joiner-sockets false --timeout-s 60

echo
echo "== done; $failed step(s) failed or missed their checks; results in $log"
echo "RESULT lines: $(grep -c '^RESULT ' "$log" || true)"
