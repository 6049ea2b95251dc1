#!/usr/bin/env bash
# Build the aks-mesh image from the Dockerfile with buildah, on a Debian trixie base made by
# debootstrap from Debian's archive: no container registry is reached, ever. Prints two lines on
# stdout: the image reference and the absolute path of a docker-archive tarball of it (what
# `ctr -n k8s.io images import` and `podman load` take). Progress goes to stderr.
#
#   scripts/build-image.sh [--tag T]...     the product image: localhost/aks-mesh:<version>-<inputs hash 12>
#   scripts/build-image.sh --base           the debootstrap base image (reference and archive)
#   scripts/build-image.sh --print-env      the container tools' private configuration, as VAR=value lines
#
#   --tag T     also name the image T (a bare T means localhost/aks-mesh:T); the archive then carries
#               both names. For tests that need a second reference to the same build.
#
# Cached under $AKS_MESH_CACHE (default ~/.cache/aks-mesh): images/ holds the archives, containers/
# the private containers configuration and storage. The product image is keyed by a hash of every
# input (Dockerfile, .dockerignore, package.json, package-lock.json, tsconfig.json, image/, the
# sources the bundle is built from, this script, the base image's id), so a run that changed
# nothing is a cache hit in under a second; the base is keyed by its recipe (suite, variant, mirror,
# architecture) and the ISO week (date -u +%G-W%V; AKS_MESH_BASE_WEEK overrides it): the first run of
# a week makes a new base, upgraded from the suite's security and updates suites, and so a new product
# image (the old base is then deleted). The git commit is baked in (`aks-mesh version`, the revision
# label; "-dirty" when inputs differ from it) but is not part of the key: a cache hit reports the
# commit that first built those exact inputs. The three most recent product archives are kept; older ones are deleted with
# their images.
#
# Private configuration only (never /etc): CONTAINERS_CONF (runc, cgroupfs, and explicit
# default_ulimits at the current hard limits, processes capped at kernel.pid_max: root here lacks
# CAP_SYS_RESOURCE, so podman/buildah's defaults, 1048576, cannot be set),
# CONTAINERS_STORAGE_CONF (graphroot under the cache), CONTAINERS_REGISTRIES_CONF (no registries:
# nothing can be pulled) and a signature policy (SIGNATURE_POLICY in --print-env: give it to
# `podman load --signature-policy`). The build stage's downloads trust the host's CA bundle, passed
# as a build secret (a TLS-intercepting proxy is trusted there, not in the base).
#
#   DEBIAN_MIRROR      Debian mirror for the base (default http://deb.debian.org/debian)
#   AKS_MESH_CACHE     cache root
#   AKS_MESH_BASE_WEEK the ISO week the base is keyed by (default: this week, UTC), e.g. 2026-W49
#   AKS_MESH_BUILD_CA  CA bundle for the build's downloads (default $SSL_CERT_FILE, else Debian's)
#   STORAGE_DRIVER     overlay (default when the kernel has it) or vfs
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}"
images="$cache/images"
conf="$cache/containers"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=trixie
# Bump when the base recipe below changes: it is part of the base's cache key.
base_recipe=2
keep_archives=3

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
log() { echo "build-image: $*" >&2; }
die() { echo "build-image: $*" >&2; exit 1; }

mode=image
tags=()
while (($#)); do
  case "$1" in
    --base) mode=base ;;
    --print-env) mode=env ;;
    --tag)
      (($# >= 2)) || die "--tag needs a value (a tag such as upgrade-test, or a full reference)"
      tags+=("$2"); shift ;;
    --tag=*) tags+=("${1#--tag=}") ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for t in "${tags[@]}"; do
  [[ "$t" =~ ^[A-Za-z0-9._/:-]+$ ]] || die "--tag '$t' is not an image reference or tag (letters, digits, . _ - / :)"
done

# ---- private containers configuration -------------------------------------------------------------
write_config() {
  mkdir -p "$conf/storage" "$conf/run" "$conf/tmp"
  local driver="${STORAGE_DRIVER:-}"
  if [[ -z "$driver" ]]; then
    if grep -qw overlay /proc/filesystems; then driver=overlay; else driver=vfs; fi
  fi
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [[ "$nofile" == unlimited ]] && nofile=1048576
  [[ "$nproc" == unlimited ]] && nproc=4194304
  # podman and buildah lower their own process limit to kernel.pid_max: a higher one cannot be set.
  local pid_max
  pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
  ((nproc > pid_max)) && nproc=$pid_max
  # Written on every run (cheap) so a changed limit or driver is picked up; identical text keeps mtimes.
  put "$conf/containers.conf" <<EOF
# Written by scripts/build-image.sh: the private configuration of podman and buildah for aks-mesh.
[containers]
# Root here lacks CAP_SYS_RESOURCE: the built-in defaults (1048576 open files) cannot be set.
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
# crun refuses this machine's cgroup layout; runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$conf/tmp"
EOF
  put "$conf/storage.conf" <<EOF
# Written by scripts/build-image.sh.
[storage]
driver = "$driver"
graphroot = "$conf/storage"
runroot = "$conf/run"
EOF
  put "$conf/registries.conf" <<EOF
# Written by scripts/build-image.sh: no registries, so nothing is ever pulled.
unqualified-search-registries = []
EOF
  put "$conf/policy.json" <<EOF
{ "default": [{ "type": "reject" }], "transports": { "docker-archive": { "": [{ "type": "insecureAcceptAnything" }] }, "oci-archive": { "": [{ "type": "insecureAcceptAnything" }] }, "containers-storage": { "": [{ "type": "insecureAcceptAnything" }] }, "dir": { "": [{ "type": "insecureAcceptAnything" }] }, "tarball": { "": [{ "type": "insecureAcceptAnything" }] } } }
EOF
  export CONTAINERS_CONF="$conf/containers.conf"
  export CONTAINERS_STORAGE_CONF="$conf/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$conf/registries.conf"
  export REGISTRIES_CONFIG_PATH="$conf/registries.conf"
  export TMPDIR="$conf/tmp"
  export BUILDAH_ISOLATION=oci
}
# Replace a file only when its text changes. A temp file of this run's own and a rename: runs started
# together (--print-env is not serialized by the build lock) never share a half-written file.
put() {
  local text tmp
  text=$(cat)
  if [[ ! -f "$1" ]] || [[ "$(cat "$1")" != "$text" ]]; then
    tmp=$(mktemp "$1.XXXXXX")
    printf '%s\n' "$text" > "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$1"
  fi
}
# load and import copy images, which the signature policy governs: ours, not /etc's.
podman() {
  case "$1" in
    load|import) local sub="$1"; shift; command podman "$sub" --signature-policy "$conf/policy.json" "$@" ;;
    *) command podman "$@" ;;
  esac
}

if [[ "$mode" != env ]]; then
  mkdir -p "$images"
  # One build at a time per cache, the configuration written under the same lock: concurrent runs
  # (tests in parallel) wait, then find the cache warm.
  command -v flock >/dev/null || die "flock is not installed (apt-get install util-linux)"
  exec 9>"$images/.lock"
  if ! flock -n 9; then log "waiting for another build-image.sh to finish"; flock 9; fi
fi
write_config
if [[ "$mode" == env ]]; then
  for v in CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF REGISTRIES_CONFIG_PATH TMPDIR BUILDAH_ISOLATION; do
    echo "$v=${!v}"
  done
  echo "SIGNATURE_POLICY=$conf/policy.json"
  exit 0
fi

for tool in buildah podman debootstrap flock sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/setup.sh installs buildah, podman and debootstrap)"
done
# Debian's and the OCI platform's architecture names agree (amd64, arm64); uname's do not.
arch=$(dpkg --print-architecture 2>/dev/null || uname -m | sed -e 's/^x86_64$/amd64/' -e 's/^aarch64$/arm64/')

# Load an archive into the private storage when the image is not there (a wiped storage, a copied cache).
ensure_loaded() {
  local ref="$1" archive="$2"
  podman image exists "$ref" && return 0
  log "loading $archive into the private storage"
  podman load -q -i "$archive" >&2
  podman image exists "$ref" || die "$archive does not hold $ref"
}

# ---- the base: debootstrap minbase trixie, trimmed like the debian:trixie-slim image ------------
# Keyed by its recipe AND the ISO week: the base's packages are whatever the suite and its security
# and updates suites hold the day it is made, so a warm cache would keep a month-old libc for ever.
# A new week makes a new base (and so, through the base's id in the product's key, a new product
# image); the previous weeks' bases are deleted once the new one is built.
week="${AKS_MESH_BASE_WEEK:-$(date -u +%G-W%V)}"
[[ "$week" =~ ^[0-9]{4}-W[0-9]{2}$ ]] || die "AKS_MESH_BASE_WEEK '$week' is not an ISO week such as 2026-W49"
base_key=$(printf 'recipe=%s suite=%s variant=minbase mirror=%s arch=%s\n' "$base_recipe" "$suite" "$mirror" "$arch" | sha256sum | cut -c1-12)
base_ref="localhost/debian:$suite-slim-debootstrap-$week-$base_key"
base_archive="$images/debian-$suite-slim-debootstrap-$week-$base_key.tar"

build_base() {
  local work rootfs started=$SECONDS
  work=$(mktemp -d "$images/base.XXXXXX")
  rootfs="$work/rootfs"
  # The root filesystem is root-owned and large: removed on any exit, success or not (its /proc,
  # mounted for apt below, first; --one-file-system never descends into a mount left behind).
  trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
  log "debootstrap --variant=minbase $suite from $mirror (about a minute)"
  debootstrap --variant=minbase --arch="$arch" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$suite" "$rootfs" "$mirror" >&2
  # What debian:trixie-slim leaves out: documentation, man pages and translations (dpkg keeps them
  # out of later installs too), apt's downloaded lists and caches, logs. The copyright files stay.
  mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  # apt in containers: no recommends' downloads kept, the suite's updates and security fixes.
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # debootstrap installs the suite's packages as of its last point release; the security and updates
  # suites' fixes since then come from an upgrade against the sources above (host network and DNS).
  [[ -n "$rootfs" && "$rootfs" == "$work/rootfs" ]] || die "internal: no root filesystem path"
  log "apt-get upgrade from $suite-security and $suite-updates"
  # A fresh file (never through a symlink debootstrap may have left): the host's DNS for apt.
  rm -f "$rootfs/etc/resolv.conf"; cat /etc/resolv.conf > "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" apt-get -q update >&2
  chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confold upgrade >&2
  umount "$rootfs/proc"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/debootstrap
  # The runtime provides these per container.
  : > "$rootfs/etc/resolv.conf"; : > "$rootfs/etc/hostname"; rm -f "$rootfs/etc/machine-id"
  log "importing the root filesystem as $base_ref"
  tar -C "$rootfs" --numeric-owner --xattrs -cf - . \
    | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$base_ref" >&2
  podman save -q --format docker-archive -o "$base_archive.tmp" "$base_ref" >&2
  mv "$base_archive.tmp" "$base_archive"
  rm -rf --one-file-system "$work"; trap - EXIT
  log "base built in $((SECONDS - started)) s"
  # Earlier weeks' bases: their archives go, and their images unless a kept product image is built
  # on them (then only the name goes; the layers leave with that product image).
  local f old_ref
  for f in "$images"/debian-"$suite"-slim-debootstrap-*.tar; do
    [[ -f "$f" && "$f" != "$base_archive" ]] || continue
    old_ref="localhost/debian:$(basename "$f" .tar | sed 's/^debian-//')"
    log "removing an earlier base: $old_ref"
    podman rmi "$old_ref" >/dev/null 2>&1 || podman untag "$old_ref" >/dev/null 2>&1 || true
    rm -f "$f"
  done
}

if [[ -f "$base_archive" ]]; then
  ensure_loaded "$base_ref" "$base_archive"
else
  build_base
fi
if [[ "$mode" == base ]]; then
  echo "$base_ref"; echo "$base_archive"; exit 0
fi

# ---- the product image --------------------------------------------------------------------------
cd "$root"
version=$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' package.json | head -n1)
[[ -n "$version" ]] || die "package.json: no \"version\" field found"
base_id=$(podman image inspect --format '{{.Id}}' "$base_ref")
# Every file the Dockerfile copies, minus what .dockerignore keeps out (tests), plus the base's id.
# This script too: it chooses the base and the build arguments.
inputs=(Dockerfile .dockerignore package.json package-lock.json tsconfig.json scripts/build.ts scripts/build-image.sh image native mesh agent gateway cli dashboard sandbox)
hash=$( {
  echo "base $base_id"
  find "${inputs[@]}" -type f ! -name '*.test.ts' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  # Executable bits matter (image/ wrappers).
  find image -type f -perm -u+x | LC_ALL=C sort
} | sha256sum | cut -c1-12)
ref="localhost/aks-mesh:$version-$hash"
archive="$images/aks-mesh-$version-$hash.tar"

if [[ -f "$archive" ]]; then
  log "cache hit: $ref ($archive)"
  ensure_loaded "$ref" "$archive"
else
  commit=""
  if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    commit=$(git -C "$root" rev-parse HEAD)
    # A commit alone would misname a build of uncommitted sources.
    if [[ -n "$(git -C "$root" status --porcelain -- "${inputs[@]}" 2>/dev/null)" ]]; then commit="$commit-dirty"; fi
  fi
  started=$SECONDS
  log "building $ref from the Dockerfile on $base_ref (commit ${commit:-unknown})"
  # --layers: the npm ci layer stays cached while only sources change. Host network: RUN steps reach
  # deb.debian.org and the npm registry; the base is never pulled (--pull=never).
  # The host's CA bundle for the build stage's downloads (a TLS-intercepting proxy is trusted there,
  # not in the base), as a build secret so it never lands in a layer. AKS_MESH_BUILD_CA picks another.
  ca="${AKS_MESH_BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
  ca_mount=()
  if [[ -s "$ca" ]]; then ca_mount=(--secret "id=build-ca,src=$(readlink -f "$ca")"); fi
  # buildah 1.28 ignores containers.conf's default_ulimits for RUN steps: the same limits, explicitly.
  # --force-rm: a failed step leaves no working container behind.
  buildah bud --signature-policy "$conf/policy.json" --pull=never --layers --force-rm --network host \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" "${ca_mount[@]}" \
    --build-arg "BASE_IMAGE=$base_ref" --build-arg "TARGETARCH=$arch" --build-arg "VERSION=$version" --build-arg "GIT_COMMIT=$commit" \
    -f Dockerfile -t "$ref" . >&2
  podman save -q --format docker-archive -o "$archive.tmp" "$ref" >&2
  mv "$archive.tmp" "$archive"
  size=$(podman image inspect --format '{{.Size}}' "$ref")
  log "built $ref in $((SECONDS - started)) s: $((size / 1024 / 1024)) MiB uncompressed, archive $(( $(stat -c %s "$archive") / 1024 / 1024 )) MiB"
  # Keep the newest few product archives (and their images); older builds only fill the disk.
  mapfile -t old < <(ls -1t "$images"/aks-mesh-*.tar 2>/dev/null | grep -v '+' | tail -n +$((keep_archives + 1)))
  for f in "${old[@]}"; do
    name=$(basename "$f" .tar); old_ref="localhost/aks-mesh:${name#aks-mesh-}"
    log "removing an old build: $old_ref"
    # By id: the --tag names of that build go with it.
    old_id=$(podman image inspect --format '{{.Id}}' "$old_ref" 2>/dev/null || true)
    [[ -n "$old_id" ]] && { podman rmi -f "$old_id" >/dev/null 2>&1 || true; }
    rm -f "$f" "$images/$name+"*.tar
  done
  # Build-stage leftovers of earlier builds (untagged images no newer build descends from), after a
  # day: the layers a recent build reuses (npm ci's) are parents of it and stay.
  podman image prune -f --filter until=24h >/dev/null || log "podman image prune failed (only disk space is at stake)"
fi

if ((${#tags[@]})); then
  refs=("$ref")
  for t in "${tags[@]}"; do
    [[ "$t" == */* || "$t" == *:* ]] || t="localhost/aks-mesh:$t"
    podman tag "$ref" "$t"
    refs+=("$t")
  done
  suffix=$(printf '%s\n' "${refs[@]:1}" | sha256sum | cut -c1-8)
  tagged="$images/aks-mesh-$version-$hash+$suffix.tar"
  if [[ ! -f "$tagged" ]]; then
    podman save -q --format docker-archive -o "$tagged.tmp" "${refs[@]}" >&2
    mv "$tagged.tmp" "$tagged"
  fi
  archive="$tagged"
fi
echo "$ref"
echo "$archive"
