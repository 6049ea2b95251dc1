# AKS Mesh image: the agent, the gateway and the CLI, with the wireguard-go we ship (Debian trixie's,
# DESIGN §3.4) on Node 24. Not built on the development machine (no Docker engine there).
# Build stage: the dependencies (dev ones too, for esbuild) and the bundle.
FROM node:24-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY native ./native
COPY mesh ./mesh
COPY agent ./agent
COPY gateway ./gateway
COPY cli ./cli
COPY scripts/build.ts ./scripts/build.ts
RUN node scripts/build.ts

FROM node:24-trixie-slim

# wireguard-go: trixie's package 0.0.20231211 (its binary says v0.0.20230223), the build that
# bench/datapath.ts measured; a different upstream version fails the build until it is measured too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 ca-certificates \
 && dpkg-query -W -f='${Version}\n' wireguard-go | grep -q '^0\.0\.20231211-' \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/aks-mesh
COPY config ./config
# The agent, the gateway and the CLI as one ES module built by esbuild (scripts/build.ts): no
# node_modules, nothing type-stripped at start, and @kubernetes/client-node about 45 MiB smaller in
# memory than loaded from its 870 files (bench/resync.ts --program, issue 10).
COPY --from=build /src/dist/aks-mesh.mjs ./aks-mesh.mjs

ENV NODE_ENV=production
# A 1 MiB young generation: 25-65 MiB less RSS for no measurable CPU (bench/resync.ts, issue 10).
ENTRYPOINT ["node", "--max-semi-space-size=1", "/opt/aks-mesh/aks-mesh.mjs"]
CMD ["--help"]
