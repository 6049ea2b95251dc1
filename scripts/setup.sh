#!/usr/bin/env bash
# Install what AKS Mesh needs on a Debian machine (bookworm or newer), idempotently:
# system packages (only those missing), the wireguard-go build we ship (Debian trixie's, fetched
# into a cache without touching apt sources), and the npm dependencies (Node 24 among them).
# Needs root for apt-get; prints what it does on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(wireguard-go wireguard-tools iproute2 iputils-ping iperf3 tcpdump socat procps python3 ca-certificates
  etcd-server openssl util-linux iptables curl
  # The image (issue 11): a debootstrap base, built by buildah from the Dockerfile, saved by podman.
  debootstrap buildah podman runc
  # Real nodes (issue 11): containerd + runc under kubelet, CNI plugins, kube-proxy's conntrack; gcc and
  # libc6-dev build kubelet's cgo parts and the pause binary.
  containerd containernetworking-plugins conntrack gcc libc6-dev
  # The live page's test (issue 12): headless Chromium driven by playwright-core, and a font for its text.
  chromium fonts-dejavu-core)
# kubectl: the machine's own if it has one (any version that talks to 1.20), else Debian's.
command -v kubectl >/dev/null || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing system packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The wireguard-go we ship (DESIGN §3.4). Failing to fetch it is not fatal: bookworm's works too.
if ! native/wireguard-go/fetch.sh >/dev/null; then
  echo "setup: could not fetch trixie's wireguard-go; using $(command -v wireguard-go) instead" >&2
fi

if ! command -v npm >/dev/null; then
  echo "setup: npm not found: install Node.js (20 or newer; the scripts run on Node 24 from npm)" >&2
  exit 1
fi
if [[ ! -x node_modules/.bin/node || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
