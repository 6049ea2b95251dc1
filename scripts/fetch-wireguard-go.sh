#!/usr/bin/env bash
# Fetch one Debian suite's wireguard-go into a cache folder, without touching the machine's apt
# sources: a private apt state directory holding one line for that suite, `apt-get download`,
# `dpkg -x`. Prints the path of the binary on stdout. Idempotent: a cached binary is reused.
# bench/datapath.ts compares the suites' builds to choose the one we ship: bookworm's package
# 0.0.20220316-1+b4, trixie's 0.0.20231211-1+b9 (its binary says v0.0.20230223: upstream left the
# version string behind) and sid's 0.0.20260522-1 (v0.0.20250522).
#
#   scripts/fetch-wireguard-go.sh [SUITE]    SUITE: bookworm, trixie (default), sid, ...
#
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh); the binary lands in
#                    $AKS_MESH_CACHE/wireguard-go-<suite>/root/usr/bin/wireguard-go
#   DEBIAN_MIRROR    mirror URL (default: the one in the machine's sources, else deb.debian.org)
set -euo pipefail
suite="${1:-trixie}"
if [[ ! "$suite" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "fetch-wireguard-go: suite '$suite' is not a Debian suite name (bookworm, trixie, sid, ...)" >&2
  exit 2
fi
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}/wireguard-go-$suite"
bin="$cache/root/usr/bin/wireguard-go"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror=$(grep -hoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v -e security -e snapshot | head -n1 || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
state="$cache/apt"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc" "$cache/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$state/etc/sources.list"
opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
      -o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
      -o "Dir::State::status=$state/status" -o "APT::Architecture=$arch" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
: > "$state/status"
echo "fetching wireguard-go from $mirror $suite (private apt state in $state)" >&2
apt-get "${opts[@]}" -q update >&2
rm -f "$cache/debs"/wireguard-go_*.deb
(cd "$cache/debs" && apt-get "${opts[@]}" -q download wireguard-go >&2)
deb=$(ls -t "$cache/debs"/wireguard-go_*.deb | head -n1)
rm -rf "$cache/root" && dpkg -x "$deb" "$cache/root"
"$bin" --version >&2
echo "$bin"
