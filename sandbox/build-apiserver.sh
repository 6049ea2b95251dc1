#!/usr/bin/env bash
# Build kube-apiserver 1.20.2 from Debian's `kubernetes` source package, offline with Debian's Go,
# into a cache folder outside the repository. Prints the binary's path on stdout; idempotent (a
# cached binary is reused at once). Takes 7-9 minutes on 2 cores the first time; progress on stderr.
#
# Why this way: the package registries are the only network, and Debian's source package vendors
# every Go dependency. Two fixes are needed (measured): it builds only in GOPATH mode through its own
# `make WHAT=cmd/kube-apiserver`, and built with Go >= 1.18 it crashes on the first custom-resource
# write unless the vendored modern-go/reflect2 and json-iterator/go are replaced by Debian's newer
# sources (golang-github-modern-go-reflect2-dev, golang-github-json-iterator-go-dev).
#
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh)
#   DEBIAN_MIRROR    mirror URL (default: the machine's, else deb.debian.org)
set -euo pipefail
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}/kube-apiserver-1.20.2"
bin="$cache/bin/kube-apiserver"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
say() { echo "build-apiserver: $*" >&2; }

packages=(golang-go rsync jq dpkg-dev etcd-server golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { say "missing packages ${missing[*]}; run as root"; exit 1; }
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror=$(grep -hoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v -e security -e snapshot | head -n1 || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
state="$cache/apt"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc" "$cache/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$state/etc/sources.list"
: > "$state/status"
opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
      -o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
      -o "Dir::State::status=$state/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
src=$(ls -d "$cache"/src/kubernetes-1.20*/ 2>/dev/null | head -n1 || true); src=${src%/}
if [[ -z "$src" || ! -d "$src/vendor" ]]; then
  say "fetching the kubernetes source package from $mirror $suite (deb-src in a private apt state)"
  apt-get "${opts[@]}" -q update >&2
  rm -rf "$cache/src" && mkdir -p "$cache/src"
  (cd "$cache/src" && apt-get "${opts[@]}" -q source kubernetes >&2)
  src=$(ls -d "$cache"/src/kubernetes-1.20*/ | head -n1); src=${src%/}
fi

say "replacing vendored reflect2 and json-iterator with Debian's newer sources (Go >= 1.18 fix)"
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -rf "${src:?}/vendor/$pkg"
  cp -rL "/usr/share/gocode/src/$pkg" "$src/vendor/$pkg"
  rm -rf "$src/vendor/$pkg"/*_test.go
done

say "building with $(go version) — this takes several minutes"
start=$(date +%s)
(
  cd "$src"
  export GO111MODULE=off GOFLAGS= GOPROXY=off KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
  export KUBE_BUILD_PLATFORMS=linux/amd64
  make WHAT=cmd/kube-apiserver >&2
)
built=$(find "$src/_output" -type f -name kube-apiserver -perm -u+x | head -n1)
[[ -n "$built" ]] || { say "build produced no kube-apiserver"; exit 1; }
mkdir -p "$cache/bin"
cp "$built" "$bin.tmp" && mv "$bin.tmp" "$bin"
say "built in $(( $(date +%s) - start )) s: $("$bin" --version)"
rm -rf "$src/_output"
echo "$bin"
