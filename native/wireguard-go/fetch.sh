#!/usr/bin/env bash
# Fetch the wireguard-go we ship (Debian trixie's package) into a cache folder, without touching
# the machine's apt sources: a private apt state directory with one trixie line, `apt-get download`,
# `dpkg -x`. Prints the path of the binary on stdout. Idempotent: a cached binary is reused.
#
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh)
#   DEBIAN_MIRROR    mirror URL (default: the one in the machine's sources, else deb.debian.org)
set -euo pipefail
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}/wireguard-go-trixie"
bin="$cache/root/usr/bin/wireguard-go"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror=$(grep -hoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v -e security -e snapshot | head -n1 || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
state="$cache/apt"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc" "$cache/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$state/etc/sources.list"
opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
      -o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
      -o "Dir::State::status=$state/status" -o "APT::Architecture=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
: > "$state/status"
echo "fetching wireguard-go from $mirror trixie (private apt state in $state)" >&2
apt-get "${opts[@]}" -q update >&2
(cd "$cache/debs" && apt-get "${opts[@]}" -q download wireguard-go >&2)
deb=$(ls -t "$cache/debs"/wireguard-go_*.deb | head -n1)
rm -rf "$cache/root" && dpkg -x "$deb" "$cache/root"
"$bin" --version >&2
echo "$bin"
