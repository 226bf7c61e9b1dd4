# syntax=docker/dockerfile:1
#
# padel-bff container image: a cargo-chef build (dependencies cached in their own layer) and a
# small Debian runtime holding only the binary, its config and the CA certificates.
#
#   docker build -t padel-bff .
#   docker run --rm -p 8000:8000 \
#     -e DATABASE_URL=postgres://… -e REDIS_URL=redis://… -e BFF_JWT_SECRET=… padel-bff
#
# Configuration: /etc/padel-bff holds default.toml, production.toml and rest/ (a copy of the
# repository's config/). Replace it with your own by mounting a directory over it:
#   docker run … -v ./myconfig:/etc/padel-bff:ro padel-bff
# (it must hold <BFF_PROFILE>.toml; without a default.toml the built-in defaults apply).
# Migrations are a separate step in the production profile: `docker run … padel-bff migrate`.

# Toolchain image; the builder and the runtime must share the Debian release (glibc).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG CARGO_CHEF_VERSION=0.1.77

# --- chef: the Rust toolchain plus cargo-chef, shared by the planner and the builder ---------
FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
# The slim image already has gcc and libc6-dev, which ring, mimalloc and the bundled SQLite need.
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app

# --- planner: reduce the project to its manifests (recipe.json) -----------------------------
FROM chef AS planner
# Everything the .dockerignore lets through; only Cargo.toml/Cargo.lock and the target layout
# end up in the recipe, so source edits leave it byte-identical.
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies first (cached while the recipe is unchanged), then the gateway ---
FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Builds every dependency against a dummy skeleton (dummy lib/bin/bench/test targets and build.rs).
RUN cargo chef cook --release --locked --recipe-path recipe.json
# The real sources. The manifest declares [[bench]] domain and load, so benches/ must be here
# for cargo to read Cargo.toml; tests/ holds auto-discovered (or declared) test targets.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# config/: include_str! of default.toml and rest/*.graphql; migrations/: sqlx::migrate!.
COPY config ./config
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin padel-bff

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# TLS is rustls (no OpenSSL); it only needs the system CA store (JWKS over HTTPS, TLS databases).
# Unpinned on purpose: the CA bundle should be the release's latest.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# An unprivileged user with a fixed uid/gid (10001) for volume permissions and PodSecurity.
RUN groupadd --system --gid 10001 padel \
    && useradd --system --uid 10001 --gid padel --no-create-home \
       --home-dir /var/lib/padel-bff --shell /usr/sbin/nologin padel \
    && install -d -o padel -g padel -m 0750 /var/lib/padel-bff
# The binary, on PATH (so `docker run IMAGE migrate` and the HEALTHCHECK find it).
COPY --from=builder /app/target/release/padel-bff /usr/local/bin/padel-bff
# The config directory: default.toml, production.toml and rest/*.graphql; root-owned, read-only
# for the gateway. This is the mount point for your own configuration (see the top).
COPY config/ /etc/padel-bff/
# production: no GraphiQL or introspection, JSON logs, needs BFF_JWT_SECRET (>= 32 bytes, not the
# development one); listen on every interface; read the config from /etc/padel-bff whatever the
# working directory holds.
ENV BFF_PROFILE=production \
    BFF_LISTEN=0.0.0.0:8000 \
    BFF_CONFIG_DIR=/etc/padel-bff
# Writable working directory (only the embedded SQLite fallback would write here, under data/).
WORKDIR /var/lib/padel-bff
USER 10001:10001
EXPOSE 8000
# Liveness through the binary itself (no curl in the image): exit 0 when GET /healthz answers
# 200 on 127.0.0.1 at the configured port (PORT / BFF_LISTEN are followed). Its own request
# timeout is 3 s, under Docker's 5 s, so a slow answer is reported by the check, not killed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["padel-bff", "healthcheck"]
# SIGTERM (docker stop) drains in-flight requests for server.shutdown_grace, then exits.
ENTRYPOINT ["padel-bff"]
CMD ["serve"]
