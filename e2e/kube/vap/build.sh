#!/usr/bin/env bash
# Build the ValidatingAdmissionPolicy test API server (e2e/kube/vap/main.go: the upstream
# apiextensions-apiserver plus the upstream ValidatingAdmissionPolicy admission plugin) from Debian
# sid's packaged Kubernetes server libraries, offline, into a cache folder outside the repository.
# Prints the binary's path on stdout; idempotent (a cached binary for this main.go is reused at
# once). The first build took 8.5 minutes on 2 busy cores (5.7 min of CPU; 275 MB downloaded;
# about 4 GB in the cache with Go's build cache, which makes a rebuild after an edit of main.go
# take about 30 s). Progress on stderr.
#
# Why this way: no kube-apiserver >= 1.30 builds on our machines, but sid packages k8s.io/apiserver
# and k8s.io/apiextensions-apiserver (golang-k8s-*-dev) with every Go dependency as a golang-*-dev
# package, and a Go new enough for them (golang-1.26-go). The machine's apt sources are never
# touched: a private apt state with one sid line; `apt-get download` the golang-*-dev closure of the
# two libraries; `dpkg -x` them into the cache; build in GOPATH mode with nothing fetched.
#
#   AKS_MESH_CACHE     cache root (default: ~/.cache/aks-mesh)
#   DEBIAN_MIRROR      mirror URL (default: the machine's, else deb.debian.org)
#   AKS_MESH_VAP_GO    the Go package to build with (default: golang-1.26-go)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}/vap-apiserver"
# The binary is named after its source, so an edit to main.go builds anew and the test finds the
# binary for the source it has (e2e/vap.test.ts computes the same name).
hash=$(sha256sum "$here/main.go" | cut -c1-12)
bin="$cache/bin/aks-mesh-vap-apiserver-$hash"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
say() { echo "vap/build: $*" >&2; }
start=$(date +%s)

go_pkg="${AKS_MESH_VAP_GO:-golang-1.26-go}"
go_version=${go_pkg#golang-}; go_version=${go_version%-go}
root="$cache/root"
goroot="$root/usr/lib/go-$go_version"
libs=(golang-k8s-apiextensions-apiserver-dev golang-k8s-apiserver-dev)

if [[ ! -f "$root/.complete" ]]; then
  mirror="${DEBIAN_MIRROR:-}"
  if [[ -z "$mirror" ]]; then
    mirror=$(grep -hoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
      | grep -v -e security -e snapshot | head -n1 || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
  fi
  state="$cache/apt"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc" "$cache/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" > "$state/etc/sources.list"
  : > "$state/status"
  # sid's Release may be past its Valid-Until on a mirror that lags; the signature still holds.
  opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
        -o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::status=$state/status" -o "APT::Architecture=amd64" -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root" -o "Acquire::Check-Valid-Until=false")
  say "reading sid's package lists from $mirror (private apt state in $state)"
  apt-get "${opts[@]}" -q update >&2
  # Every golang-*-dev package the two libraries need (their Go sources), and the Go toolchain.
  mapfile -t want < <(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "${libs[@]}" 2>/dev/null | grep -E '^golang-.*-dev$' | sort -u)
  ((${#want[@]} > 100)) || { say "found only ${#want[@]} golang-*-dev packages for ${libs[*]} in sid"; exit 1; }
  say "downloading ${#want[@]} golang-*-dev packages and $go_pkg"
  (cd "$cache/debs" && apt-get "${opts[@]}" -q download "${want[@]}" "$go_pkg" "${go_pkg%-go}-src" >&2)
  say "unpacking into $root"
  rm -rf "$root" && mkdir -p "$root"
  for p in "${want[@]}" "$go_pkg" "${go_pkg%-go}-src"; do
    deb=$(ls -t "$cache/debs/${p}_"*.deb | head -n1)
    dpkg -x "$deb" "$root"
  done
  for p in "${libs[@]}" "$go_pkg"; do
    dpkg-deb -f "$(ls -t "$cache/debs/${p}_"*.deb | head -n1)" Package Version | paste -sd' ' >&2
  done
  touch "$root/.complete"
  rm -rf "$cache/debs" # unpacked; 260 MB less in the cache
fi

src="$cache/src/aks-mesh-vap-apiserver"
rm -rf "$src" && mkdir -p "$src" && cp "$here/main.go" "$src/"
mkdir -p "$cache/bin" "$cache/gocache"
say "building with $("$goroot/bin/go" version) in GOPATH mode (offline); the first build takes minutes"
(
  cd "$src"
  export GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0
  export GOROOT="$goroot" GOPATH="$root/usr/share/gocode" GOCACHE="$cache/gocache"
  "$goroot/bin/go" build -o "$bin.tmp" . >&2
)
mv "$bin.tmp" "$bin"
say "built in $(( $(date +%s) - start )) s"
echo "$bin"
