#!/usr/bin/env bash
# Fetch the wireguard-go we ship (Debian trixie's package) into a cache folder, without touching
# the machine's apt sources; prints the path of the binary. One implementation for every suite:
# scripts/fetch-wireguard-go.sh (same cache path, same AKS_MESH_CACHE and DEBIAN_MIRROR).
set -euo pipefail
exec "$(dirname "$0")/../../scripts/fetch-wireguard-go.sh" trixie
