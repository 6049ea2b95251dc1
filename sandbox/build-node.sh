#!/usr/bin/env bash
# Build kubelet, kube-proxy, kube-controller-manager and kube-scheduler 1.20.2 from Debian's
# `kubernetes` source package, offline with Debian's Go, into a cache folder outside the repository,
# exactly the way build-apiserver.sh builds kube-apiserver (read its header for the why). Prints the
# bin folder on stdout; idempotent (cached binaries are reused at once). The first build takes about
# 9 minutes on 2 cores (measured: 8 min 42 s, of which 10 s copying the source); progress on stderr.
#
# The source: if build-apiserver.sh has already fetched the source tree, it is copied from there
# (rsync, seconds, no network); otherwise it is fetched the same way (deb-src in a private apt state,
# the machine's apt configuration untouched). A private copy, not the same folder, because
# build-apiserver.sh rewrites vendor/ and deletes _output/ in its tree: two cold builds may run at
# once without breaking each other. The same two vendored libraries are replaced by Debian's newer
# sources (reflect2 and json-iterator crash the API machinery when built with Go >= 1.18), and the
# build runs in GOPATH mode through the source's own `make WHAT=...`. kubelet is linked with cgo
# (upstream builds it dynamic; the other three are static), hence gcc and libc6-dev.
#
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh)
#   DEBIAN_MIRROR    mirror URL (default: the machine's, else deb.debian.org)
set -euo pipefail
root="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}"
cache="$root/kube-node-1.20.2"
bindir="$cache/bin"
targets=(kubelet kube-proxy kube-controller-manager kube-scheduler)
say() { echo "build-node: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
cached() {
  local t
  for t in "${targets[@]}"; do [[ -x "$bindir/$t" ]] || return 1; done
}
if cached; then echo "$bindir"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -n 9 || { say "another build-node.sh is building in $cache; waiting for it"; flock 9; }
if cached; then echo "$bindir"; exit 0; fi

packages=(golang-go make gcc libc6-dev rsync dpkg-dev
          golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || fail "missing packages ${missing[*]}; run as root (or install them)"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || fail "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || fail "apt-get install ${missing[*]}"
fi

# The source tree: ours if complete, else a copy of build-apiserver.sh's, else fetched.
tree() { local d; d=$(ls -d "$1"/kubernetes-1.20*/ 2>/dev/null | head -n1 || true); d=${d%/}; [[ -n "$d" && -d "$d/vendor" && -f "$d/Makefile" ]] && echo "$d"; }
src=$(tree "$cache/src" || true)
if [[ -z "$src" ]]; then
  shared=$(tree "$root/kube-apiserver-1.20.2/src" || true)
  rm -rf "$cache/src" && mkdir -p "$cache/src"
  if [[ -n "$shared" ]]; then
    say "copying the kubernetes source tree cached by build-apiserver.sh ($shared)"
    rsync -a --exclude=/_output/ "$shared/" "$cache/src/$(basename "$shared").partial/" \
      || fail "copying $shared"
    mv "$cache/src/$(basename "$shared").partial" "$cache/src/$(basename "$shared")"
  else
    mirror="${DEBIAN_MIRROR:-}"
    if [[ -z "$mirror" ]]; then
      mirror=$(grep -hoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -v -e security -e snapshot | head -n1 || true)
      mirror="${mirror:-http://deb.debian.org/debian}"
    fi
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    state="$cache/apt"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$state/etc/sources.list"
    : > "$state/status"
    opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
          -o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
          -o "Dir::State::status=$state/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    say "fetching the kubernetes source package from $mirror $suite (deb-src in a private apt state)"
    apt-get "${opts[@]}" -q update >&2 || fail "apt-get update of the private deb-src state ($mirror $suite)"
    (cd "$cache/src" && apt-get "${opts[@]}" -q source kubernetes >&2) \
      || fail "apt-get source kubernetes from $mirror $suite"
  fi
  src=$(tree "$cache/src" || true)
  [[ -n "$src" ]] || fail "no kubernetes-1.20* source tree with vendor/ in $cache/src"
fi
# Debian's version is 1.20.5+really1.20.2-...: the upstream source is 1.20.2.
version=$(sed -n '1s/^kubernetes (\([^)]*\)).*/\1/p' "$src/debian/changelog"); version=${version##*really}
[[ $version == 1.20.2* ]] || fail "$src holds kubernetes $version, not 1.20.2 (remove $cache/src to fetch it again)"

say "replacing vendored reflect2 and json-iterator with Debian's newer sources (Go >= 1.18 fix)"
for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  [[ -d "/usr/share/gocode/src/$pkg" ]] || fail "/usr/share/gocode/src/$pkg is missing"
  rm -rf "${src:?}/vendor/$pkg"
  cp -rL "/usr/share/gocode/src/$pkg" "$src/vendor/$pkg"
  rm -rf "$src/vendor/$pkg"/*_test.go
done

what="${targets[*]/#/cmd/}"
say "building $what with $(go version) in $src — about 9 minutes on 2 cores"
start=$(date +%s)
rm -rf "$src/_output"
( while sleep 60; do say "still building ($(( $(date +%s) - start )) s)"; done ) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true' EXIT
rc=0
(
  cd "$src"
  export GO111MODULE=off GOFLAGS= GOPROXY=off KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
  export KUBE_BUILD_PLATFORMS=linux/amd64
  make WHAT="$what" >&2
) || rc=$?
kill "$ticker" 2>/dev/null || true
((rc == 0)) || fail "make WHAT=\"$what\" exited $rc after $(( $(date +%s) - start )) s (output above; tree kept in $src)"

mkdir -p "$bindir"
for t in "${targets[@]}"; do
  built=$(find "$src/_output" -type f -name "$t" -perm -u+x | head -n1)
  [[ -n "$built" ]] || fail "the build produced no $t"
  "$built" --version >/dev/null 2>&1 || fail "$built --version does not run"
  cp "$built" "$bindir/.$t.tmp" && mv "$bindir/.$t.tmp" "$bindir/$t"
done
say "built in $(( $(date +%s) - start )) s:"
for t in "${targets[@]}"; do say "  $t: $("$bindir/$t" --version 2>&1)"; done
rm -rf "$src/_output"
echo "$bindir"
