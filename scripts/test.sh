#!/usr/bin/env bash
# Runs the whole test suite: unit, property and integration tests, on SQLite and on Postgres.
#
# Postgres: uses TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres). Redis:
# TEST_REDIS_URL (default redis://127.0.0.1:6379); some tests also start private redis-server
# processes. When nothing answers on 5432 / 6379, or redis-server is missing, this script installs
# (Debian/apt) and starts what is needed, so a fresh machine with only the Rust toolchain works.
# python3 with venv is installed the same way when missing (the fuzz test puts schemathesis, from
# PyPI, into a virtualenv under target/). The monitoring page's browser test needs Debian's
# chromium and Node.js with npm (playwright-core, from npm, goes into tests/browser/node_modules;
# no browser is ever downloaded); the packaging tests need Debian's prometheus (promtool and a
# real Prometheus). All are installed the same way when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_postgres() {
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}

ensure_postgres() {
    if [ -n "${TEST_DATABASE_URL:-}" ]; then
        return
    fi
    if port_open 5432; then
        export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
        return
    fi
    log "no PostgreSQL on 127.0.0.1:5432: installing and starting one"
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do port_open 5432 && break; sleep 0.5; done
    port_open 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
    # Password login over TCP (Debian's default pg_hba asks for one on 127.0.0.1).
    as_postgres psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
    export TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
}

apt_install() {
    [ "$(id -u)" = 0 ] || { echo "$* is missing and installing it needs root" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
    command -v redis-server >/dev/null 2>&1 || { log "installing redis-server"; apt_install redis-server; }
    if [ -z "${TEST_REDIS_URL:-}" ] && ! port_open 6379; then
        log "no Redis on 127.0.0.1:6379: starting one"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
        for _ in $(seq 1 40); do port_open 6379 && break; sleep 0.25; done
    fi
}

ensure_python() {
    # The GraphQL fuzz test (tests/api/fuzz.rs) installs schemathesis into a virtualenv.
    if ! command -v python3 >/dev/null 2>&1; then
        log "installing python3 (for schemathesis)"
        apt_install python3 python3-venv
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        log "installing python3-venv (for schemathesis)"
        apt_install python3-venv
    fi
}

ensure_browser() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (the monitoring page's browser test)"
        apt_install "${missing[@]}"
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        log "installing playwright-core into tests/browser (npm ci; no browser download)"
        (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
    fi
}

ensure_prometheus() {
    if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
        log "installing prometheus (promtool and a real Prometheus for the packaging tests)"
        apt_install prometheus
    fi
}

ensure_postgres
ensure_redis
ensure_python
ensure_browser
ensure_prometheus
log "Postgres for tests: ${TEST_DATABASE_URL%%@*}@…"
cargo test --locked --all-targets "$@"
