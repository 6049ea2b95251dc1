#!/usr/bin/env bash
# The two small images a real node needs that no registry can give us here (issue 11, "A real node"):
#
#   pause   k8s.gcr.io/pause:3.2, containerd's sandbox_image: build/pause/linux/pause.c from the
#           kubernetes 1.20.2 source that sandbox/build-apiserver.sh caches, compiled with
#           `gcc -static`, packed FROM scratch with buildah (entrypoint /pause, as upstream's).
#   tools   localhost/aks-mesh-node-tools:<hash>, a test image for the harness's own test
#           (e2e/kube/node.test.ts): the host's sh, sleep, ls, cat, grep, ping, ip, wg, socat (each with the
#           shared libraries ldd names) and the wireguard-go we ship, FROM scratch. Not a product
#           image: the product image is scripts/build-image.sh's; this one only proves what a node
#           runs (hostNetwork, NET_ADMIN, /dev/net/tun, an emptyDir shared by two containers) without
#           depending on it.
#
# Prints, for each image, one line on stdout: `<name> <reference> <docker-archive path>`; the archives
# are what `ctr -n k8s.io images import` takes. Cached under $AKS_MESH_CACHE/node-images keyed by a hash
# of the inputs (the script, pause.c, the binaries), so a warm run only hashes. Progress on stderr.
#
# buildah runs with a private configuration (never /etc): CONTAINERS_CONF (default_ulimits, since root
# here lacks CAP_SYS_RESOURCE; runtime runc), CONTAINERS_STORAGE_CONF (vfs graph under the cache) and
# REGISTRIES_CONFIG_PATH with no registries at all, so nothing can be pulled.
#
#   sandbox/node/build-images.sh [pause|tools]...     (default: both)
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}"
cache="$root/node-images"
say() { echo "build-images: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
wanted=("$@"); ((${#wanted[@]})) || wanted=(pause tools)
for w in "${wanted[@]}"; do [[ $w == pause || $w == tools ]] || fail "unknown image '$w' (pause or tools)"; done
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -n 9 || { say "another build-images.sh runs; waiting for it"; flock 9; }

containers="$cache/containers"
mkdir -p "$containers/storage" "$containers/run"
cat > "$containers/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1048576:1048576"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$containers/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$containers/storage"
runroot = "$containers/run"
CONF
cat > "$containers/registries.conf" <<CONF
unqualified-search-registries = []
CONF
export CONTAINERS_CONF="$containers/containers.conf" CONTAINERS_STORAGE_CONF="$containers/storage.conf" \
  REGISTRIES_CONFIG_PATH="$containers/registries.conf" BUILDAH_ISOLATION=chroot

# pack <rootfs dir> <reference> <archive> <entrypoint json>: FROM scratch, the rootfs, the entrypoint.
pack() {
  local rootfs=$1 ref=$2 archive=$3 entrypoint=$4 ctr
  ctr=$(buildah from scratch)
  # shellcheck disable=SC2064
  trap "buildah rm '$ctr' >/dev/null 2>&1 || true" RETURN
  buildah copy "$ctr" "$rootfs" / >/dev/null
  buildah config --entrypoint "$entrypoint" --cmd '[]' --workingdir / "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  trap - RETURN
  rm -f "$archive.tmp"
  buildah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
  buildah rmi "$ref" >/dev/null 2>&1 || true
  mv "$archive.tmp" "$archive"
}

# Older archives of the same image (other inputs) are dead weight: keep only the current one.
prune() { local keep=$1 f; for f in "$cache/$2"-*.tar; do [[ $f == "$keep" || ! -e $f ]] || rm -f "$f"; done; }

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

build_pause() {
  local src
  src=$(ls -d "$root"/kube-apiserver-1.20.2/src/kubernetes-1.20*/build/pause/linux/pause.c "$root"/kube-node-1.20.2/src/kubernetes-1.20*/build/pause/linux/pause.c 2>/dev/null | head -n1 || true)
  [[ -n "$src" ]] || fail "no kubernetes 1.20 source tree with build/pause/linux/pause.c under $root (run sandbox/build-apiserver.sh first)"
  local ref=k8s.gcr.io/pause:3.2 key archive
  key=$(hash_of "$0" "$src")
  archive="$cache/pause-3.2-$key.tar"
  if [[ ! -s $archive ]]; then
    say "building $ref from $src"
    command -v gcc >/dev/null || fail "gcc is missing (apt-get install gcc libc6-dev)"
    local work; work=$(mktemp -d); mkdir -p "$work/rootfs"
    # The source's own flags (build/pause/Makefile): static, with the version it reports on -v.
    gcc -Os -Wall -Werror -static -DVERSION=v3.2-aks-mesh -o "$work/rootfs/pause" "$src" || { rm -rf "$work"; fail "gcc $src"; }
    strip "$work/rootfs/pause" 2>/dev/null || true
    pack "$work/rootfs" "$ref" "$archive" '["/pause"]' || { rm -rf "$work"; fail "packing $ref"; }
    rm -rf "$work"
  fi
  prune "$archive" pause-3.2
  echo "pause $ref $archive"
}

build_tools() {
  local wggo
  wggo=$("$here/../../scripts/fetch-wireguard-go.sh" trixie 2>/dev/null || command -v wireguard-go || true)
  [[ -x "$wggo" ]] || fail "no wireguard-go (scripts/fetch-wireguard-go.sh trixie, or apt-get install wireguard-go)"
  local bins=() b
  for b in sh sleep ls cat mkdir grep ping ip wg socat; do
    bins+=("$(command -v "$b")") || fail "$b is missing on this machine"
  done
  local key archive ref
  key=$(hash_of "$0" "$wggo" "${bins[@]}")
  ref="localhost/aks-mesh-node-tools:$key"
  archive="$cache/tools-$key.tar"
  if [[ ! -s $archive ]]; then
    say "building $ref from this machine's binaries and $wggo"
    local work; work=$(mktemp -d); local fs="$work/rootfs"
    mkdir -p "$fs/bin" "$fs/tmp" "$fs/var/run/wireguard" "$fs/etc"
    for b in "${bins[@]}"; do
      cp -L "$b" "$fs/bin/"
      # Each shared library where the dynamic loader looks for it (same path as on the host).
      ldd "$b" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
        mkdir -p "$fs$(dirname "$lib")"; cp -L "$lib" "$fs$lib"
      done
    done
    cp -L "$wggo" "$fs/bin/wireguard-go"
    mkdir -p "$fs/usr"; [[ -e "$fs/usr/bin" ]] || ln -s ../bin "$fs/usr/bin"
    echo 'root:x:0:0:root:/:/bin/sh' > "$fs/etc/passwd"
    pack "$fs" "$ref" "$archive" '["/bin/sh", "-c"]' || { rm -rf "$work"; fail "packing $ref"; }
    rm -rf "$work"
  fi
  prune "$archive" tools
  echo "tools $ref $archive"
}

for w in "${wanted[@]}"; do "build_$w"; done
