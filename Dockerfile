# syntax=docker/dockerfile:1
# Hestia — on-demand service gateway.
#   docker build -t hestia .
#   docker run --rm -p 8080:8080 -v hestia_sqlite:/data hestia
# or, with Semaphore beside it: docker compose up -d
#
# The build stage bundles the gateway with esbuild (scripts/build.mjs, what
# `npm start` runs); the runtime image holds the bundle and the production
# node_modules (better-sqlite3, a native addon, stays outside the bundle).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------
# deps: install node_modules with a toolchain for native modules (better-sqlite3
# is compiled from source by npm here).
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --include=dev --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN node scripts/build.mjs \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---------------------------------------------------------------------------
# runtime: same base (same glibc, so the compiled modules load), no toolchain.
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM/SIGINT to the gateway (which then stops the
# process groups it spawned) and reaps orphaned zombies. `-s` keeps it working
# if someone also adds `docker run --init` / compose `init: true`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production \
    HESTIA_HOST=0.0.0.0 \
    HESTIA_PORT=8080 \
    HESTIA_DATABASE=/data/hestia.db

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/dist ./dist
# The `hestia` CLI on PATH: `docker compose exec hestia hestia status` (it talks to 127.0.0.1:8080 inside).
RUN ln -s /app/dist/cli/hestia.mjs /usr/local/bin/hestia
COPY package.json package-lock.json ./
COPY examples ./examples
COPY strategies ./strategies
COPY hestia_config.yml ./hestia_config.yml

# SQLite lives on a volume owned by the unprivileged user.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]

USER node
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HESTIA_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "-s", "--"]
# As `npm start`: stack traces point at the TypeScript sources.
CMD ["node", "--enable-source-maps", "dist/main.mjs"]
