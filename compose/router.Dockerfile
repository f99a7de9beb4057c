# syntax=docker/dockerfile:1
#
# The federation router: Hive Gateway serving schemas/supergraph.graphql.
# Subgraph URLs come from KLIKKFLOW_SUBGRAPH_<NAME>_URL, read by router/gateway.config.ts
# (found in the working directory by hive-gateway).
#
# Build context: the repository root.
#   docker build -f compose/router.Dockerfile -t klikkflow-router:local .
# compose/router.Dockerfile.dockerignore keeps router/node_modules out of the context.

FROM node:20-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first: this layer is reused until the lock file changes.
COPY router/package.json router/package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY router/ ./
COPY schemas/supergraph.graphql /app/schemas/supergraph.graphql

USER node

EXPOSE 4000
CMD ["node_modules/.bin/hive-gateway", "supergraph", "/app/schemas/supergraph.graphql", "--host", "0.0.0.0", "--port", "4000"]
