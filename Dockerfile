# syntax=docker/dockerfile:1
# One image for every app; the command picks the app:
#   node apps/api/dist/main.js | apps/orchestrator/dist/main.js | apps/und-worker/dist/main.js | apps/gen-worker/dist/main.js
# Stages: manifests (workspace package.json files only, so source edits keep the install cached),
# deps (every dependency, to build), build (tsc), prod-deps (runtime dependencies only), runtime
# (non-root, no compiler, no sources). GPU images: see deploy/README.md (ONNXRUNTIME_NODE_INSTALL=cuda12
# and a CUDA runtime base image).
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=${NODE_IMAGE}

FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY apps apps
COPY libs libs
# Each workspace's package.json, in its place: the next stages install from these and the lockfile alone.
RUN mkdir /manifests && find apps libs -mindepth 2 -maxdepth 2 -name package.json -exec cp --parents {} /manifests/ \;

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# onnxruntime-node's CPU runtime ships in the package; cuda12 downloads the CUDA execution provider.
ARG ONNXRUNTIME_NODE_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
COPY package.json package-lock.json .npmrc ./
COPY --from=manifests /manifests/ ./
RUN npm ci --no-audit --no-fund

FROM deps AS build
COPY tsconfig.base.json tsconfig.json ./
COPY apps apps
COPY libs libs
# The four services and the CLI with the libraries they reference (tests, bench and eval are not in the image).
RUN npx tsc -b apps/api apps/orchestrator apps/und-worker apps/gen-worker apps/cli \
  && mkdir /out \
  && for dir in apps/* libs/*; do \
       if [ -d "$dir/dist" ]; then mkdir -p "/out/$dir" && cp -r "$dir/package.json" "$dir/dist" "/out/$dir/"; fi; \
     done \
  && find /out -name '*.tsbuildinfo' -delete

FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
ARG ONNXRUNTIME_NODE_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}
COPY package.json package-lock.json .npmrc ./
COPY --from=manifests /manifests/ ./
# onnxruntime-node ships its runtime for every platform (about 290 MB): keep this one's (about 45 MB).
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force \
  && arch="$(node -p process.arch)" \
  && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 -type d ! -path "*/linux/$arch" -exec rm -rf {} + \
  && find node_modules/onnxruntime-node/bin -mindepth 1 -type d -empty -delete

FROM ${NODE_IMAGE} AS node

FROM ${RUNTIME_IMAGE} AS runtime
WORKDIR /app
# node itself, so that RUNTIME_IMAGE may be a CUDA runtime image without it (a no-op on the node image).
COPY --from=node /usr/local/bin/node /usr/local/bin/node
ENV NODE_ENV=production
COPY --from=prod-deps /app/package.json ./
COPY --from=prod-deps /app/node_modules node_modules
# Workspace packages (node_modules/@lavida/* link here): package.json and compiled output only.
COPY --from=build /out/ ./
# The bundled model packages: models/lavida-o-mini is the default MODEL_DIR; mount another over it or set MODEL_DIR.
COPY models models
# The health probe used by docker-compose (grpc.health.v1 over the workers' plaintext health port).
COPY scripts/grpc-health-probe.mjs scripts/
# The base image's unprivileged user "node", by number (Kubernetes' runAsNonRoot can check a uid, not a name).
USER 1000:1000
EXPOSE 8080 50051 50052 50060
CMD ["node", "apps/api/dist/main.js"]
