#!/usr/bin/env bash
# Peer benchmark scenario: GraphQL Yoga 5 with @envelop/response-cache on Redis, DataLoader and
# pg (benches/peer/yoga-server.mjs), the stack a Node team would pick for this BFF, over the same
# Postgres tables as padel-bff. The load bench runs the population workload (reads only) against
# it and padel-bff in the same run. Optional: nothing in the build or the tests needs it.
#
# Usage:  benches/peer/yoga.sh [DATABASE_URL]
#   DATABASE_URL       the seeded database (argument or env)
#   REDIS_URL          the response cache's Redis (default redis://127.0.0.1:6379)
#   PEER_PORT          port to listen on (default 5679); PEER_HOST (default 127.0.0.1)
#   PEER_POOL_MAX      Postgres connections (default 16, as padel-bff's database.max_connections)
#   PEER_JWT_SECRET    the HS256 secret padel-bff's tokens are signed with
#   PEER_CACHE_PREFIX  Redis key prefix of the response cache (default yoga:)
#   PEER_DIR           scratch install folder (default <repo>/target/peer-yoga; never committed)
#
# Runs in the foreground; the caller starts it in the background, waits for the port, kills it.
# The first run installs the pinned packages from the npm registry (~10 s); later runs reuse
# them. Node: the machine's (20 or later).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEER_DIR="${PEER_DIR:-$ROOT/target/peer-yoga}"
DATABASE_URL="${1:-${DATABASE_URL:-}}"
if [[ -z "$DATABASE_URL" ]]; then
    echo "usage: $0 DATABASE_URL (or set DATABASE_URL)" >&2
    exit 2
fi
export DATABASE_URL PEER_PORT="${PEER_PORT:-5679}" PEER_HOST="${PEER_HOST:-127.0.0.1}"
export PEER_POOL_MAX="${PEER_POOL_MAX:-16}" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

# Pinned, known to work together (response-cache-redis 4.2 builds on response-cache 8).
WANTED="graphql-yoga@5.24.1 graphql@16.15.0 @envelop/response-cache@8.0.0 @envelop/response-cache-redis@4.2.4 dataloader@2.2.3 pg@8.23.1 ioredis@5.9.2"
STAMP="$PEER_DIR/.installed"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]]; then
    mkdir -p "$PEER_DIR"
    cat >"$PEER_DIR/package.json" <<'EOF'
{ "name": "padel-bff-peer-yoga", "private": true, "type": "module" }
EOF
    # shellcheck disable=SC2086
    if ! (cd "$PEER_DIR" && npm install --no-audit --no-fund --loglevel=error --save-exact $WANTED) \
        >"$PEER_DIR/npm-install.log" 2>&1; then
        cat "$PEER_DIR/npm-install.log" >&2
        exit 1
    fi
    echo "$WANTED" >"$STAMP"
fi
# The server is ours (committed); it runs from the scratch folder so its imports resolve there.
cp "$ROOT/benches/peer/yoga-server.mjs" "$PEER_DIR/server.mjs"
cd "$PEER_DIR"
exec node server.mjs
