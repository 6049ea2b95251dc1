# AKS Mesh image: the agent, the gateway and the CLI, with the wireguard-go we ship (Debian trixie's,
# DESIGN §3.4) on Node 24. Not built on the development machine (no Docker engine there).
FROM node:24-trixie-slim

# wireguard-go: trixie's package 0.0.20231211 (its binary says v0.0.20230223), the build that
# bench/datapath.ts measured; a different upstream version fails the build until it is measured too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 ca-certificates \
 && dpkg-query -W -f='${Version}\n' wireguard-go | grep -q '^0\.0\.20231211-' \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/aks-mesh
COPY package.json package-lock.json ./
# Production dependencies only: the node@24 devDependency is not needed, the image has Node 24.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY native ./native
COPY mesh ./mesh
COPY agent ./agent
COPY gateway ./gateway
COPY cli ./cli
COPY e2e ./e2e
COPY config ./config

# Node 24 runs the TypeScript directly (type stripping): no build step. cli/main.ts turns on Node's
# compile cache, which halves the agent's start-up CPU (bench/start.ts); what `crds --print` loads
# (the CLI and mesh modules) is cached at build time, the rest on a first start where writable.
ENV NODE_ENV=production NODE_COMPILE_CACHE=/opt/aks-mesh/.compile-cache
RUN node /opt/aks-mesh/cli/main.ts crds --print > /dev/null
# A 1 MiB young generation: 25-65 MiB less RSS for no measurable CPU (bench/resync.ts, issue 10).
ENTRYPOINT ["node", "--max-semi-space-size=1", "/opt/aks-mesh/cli/main.ts"]
CMD ["--help"]
