# The sidecar image: multi-stage (build with dev dependencies, run with production ones), non-root.
#   docker build -t sidecar .
#   docker run --network container:<app> -v $PWD/sidecar.yaml:/config/sidecar.yaml:ro sidecar start --config /config/sidecar.yaml
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER node
EXPOSE 8081 8082
HEALTHCHECK --interval=5s --timeout=2s CMD ["node", "-e", "fetch('http://127.0.0.1:8081/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=4", "--max-old-space-size=256", "dist/cli.js"]
CMD ["start"]
