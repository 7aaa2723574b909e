#!/usr/bin/env bash
# Build the local Kubernetes 1.18 control plane used by scripts/sim-cluster.sh (KUBERNETES_VERSION=1.18):
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes v1.18.20, through the wrapper
#   module in this directory) and kwok (sigs.k8s.io/kwok v0.8.0, as for 1.33).
# Usage: tools/toolchain/kube-1.18/build.sh OUTDIR
# Binaries go to OUTDIR (keep it outside the repo, e.g. ~/.cache/bee-travels-toolchain/kube-1.18/bin); the
# module copy the build needs goes to OUTDIR/../src. Already-built binaries whose version matches are skipped;
# set FORCE=1 to rebuild.
#
# Kubernetes 1.18 generated its OpenAPI definitions (pkg/generated/openapi/zz_generated.openapi.go) at build time,
# so the published module lacks them and kube-apiserver does not compile from it. The build does what 1.18's
# build/root/Makefile.generated_files does: openapi-gen over every package that carries a +k8s:openapi-gen tag,
# in the tree and in its staging repos, except code-generator and sample-apiserver; then it checks the API rule
# report against 1.18.20's own api/api-rules/violation_exceptions.list, which is equal only when the same types
# were generated.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.18.20}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/toolchain/kube-common.sh
source "$HERE/../kube-common.sh"
take_outdir "$@"
WORK=$(dirname "$OUTDIR")/src
# Read-only: the committed go.mod and go.sum must already say everything the build needs.
export GOFLAGS=-mod=readonly

module_dir() { # module_dir PATH@VERSION -> its folder in the module cache (downloaded if needed)
  # Outside the wrapper, whose replace lines would otherwise answer for the module.
  (cd / && GOFLAGS='' go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

# Go package paths of the folders under $1 (module root, named $2) whose files carry a +k8s:openapi-gen tag.
openapi_packages() {
  (cd "$1" && find . \( -path './_*' -o -path './.*' -o -path ./vendor -o -path ./Godeps \) -prune -o \
      -type f -name '*.go' -print0 |
    xargs -0 grep -l '^// *+k8s:' | xargs -r grep -l '+k8s:openapi-gen=' | xargs -r -n1 dirname |
    sed "s|^\.|$2|")
}

assemble() {
  local source
  rm -rf "$WORK"
  mkdir -p "$WORK"
  cp "$HERE/go.mod" "$HERE/go.sum" "$WORK/"
  source=$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")
  cp -r "$source" "$WORK/kubernetes"
  chmod -R u+w "$WORK/kubernetes"
  # Only the staging symlinks' placeholders and modules.txt are in the module; the wrapper resolves modules itself.
  rm -rf "$WORK/kubernetes/vendor"
}

generate_openapi() {
  local staging module packages=() report=$WORK/violations.report
  echo "generating the OpenAPI definitions of $KUBE_VERSION (openapi-gen of the pinned kube-openapi)" >&2
  (cd "$WORK" && go build -o "$WORK/bin/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen)
  mapfile -t packages < <(openapi_packages "$WORK/kubernetes" k8s.io/kubernetes)
  # The staging repos: every k8s.io module the wrapper maps to a published release.
  for staging in $(cd "$WORK" && go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin)["Replace"]:
    if r["Old"]["Path"].startswith("k8s.io/") and r["New"].get("Version"):
        print(r["Old"]["Path"] + "@" + r["New"]["Version"])'); do
    module=${staging%@*}
    case $module in k8s.io/code-generator|k8s.io/sample-apiserver) continue ;; esac
    mapfile -t -O "${#packages[@]}" packages < <(openapi_packages "$(module_dir "$staging")" "$module")
  done
  # openapi-gen parses packages the binaries never import (kube-proxy's and the kubelet's configuration types, named
  # in the definitions only as strings), so its `go list` may add their sums to the copy's go.sum.
  (cd "$WORK" && GOFLAGS=-mod=mod "$WORK/bin/openapi-gen" --logtostderr \
    -i "$(printf '%s\n' "${packages[@]}" | LC_ALL=C sort -u | paste -sd,)" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h kubernetes/hack/boilerplate/boilerplate.generatego.txt -o "$WORK/generated" -r "$report")
  mv "$WORK/generated/k8s.io/kubernetes/pkg/generated/openapi/zz_generated.openapi.go" "$WORK/kubernetes/pkg/generated/openapi/"
  if ! diff -u "$WORK/kubernetes/api/api-rules/violation_exceptions.list" "$report" >&2; then
    echo "the generated OpenAPI definitions differ from the types $KUBE_VERSION generates (API rule report above)" >&2
    exit 1
  fi
}

need_kube=0
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  have "$b" "Kubernetes $KUBE_VERSION" || need_kube=1
done
if [[ $need_kube == 1 ]]; then
  assemble
  generate_openapi
  echo "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION -> $OUTDIR" >&2
  # providerless: 1.18's build tag that leaves out the in-tree cloud providers (AWS, Azure, GCE, OpenStack,
  # vSphere) and their SDKs; this control plane has no cloud.
  (cd "$WORK" && GOBIN=$OUTDIR go install -trimpath -tags providerless \
    -ldflags="$(version_ldflags "$KUBE_VERSION")" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
else
  echo "kube $KUBE_VERSION binaries up to date in $OUTDIR" >&2
fi

build_kwok
write_kwok_stages
print_versions
