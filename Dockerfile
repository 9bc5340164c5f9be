# One image for every app; the command picks the app (node apps/<app>/dist/main.js).
FROM node:20-bookworm-slim AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
COPY apps/api/package.json apps/api/
COPY apps/orchestrator/package.json apps/orchestrator/
COPY apps/und-worker/package.json apps/und-worker/
COPY apps/gen-worker/package.json apps/gen-worker/
COPY libs/config/package.json libs/config/
COPY libs/contracts/package.json libs/contracts/
COPY libs/proto/package.json libs/proto/
COPY libs/wire/package.json libs/wire/
COPY libs/model/package.json libs/model/
COPY libs/world/package.json libs/world/
COPY libs/client/package.json libs/client/
COPY apps/cli/package.json apps/cli/
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json ./
COPY apps apps
COPY libs libs
COPY test test
COPY bench bench
COPY eval eval
RUN npx tsc -b && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules node_modules
COPY --from=build --chown=node:node /app/apps apps
COPY --from=build --chown=node:node /app/libs libs
COPY --chown=node:node models models
USER node
CMD ["node", "apps/api/dist/main.js"]
