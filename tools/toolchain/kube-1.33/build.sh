#!/usr/bin/env bash
# Build the local Kubernetes 1.33 control plane used by scripts/sim-cluster.sh:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes v1.33.13,
#   through the wrapper module in this directory) and kwok (sigs.k8s.io/kwok v0.8.0).
# Usage: tools/toolchain/kube-1.33/build.sh OUTDIR
# Binaries go to OUTDIR (keep it outside the repo, e.g.
# ~/.cache/bee-travels-toolchain/kube-1.33/bin). Already-built binaries whose version
# matches are skipped; set FORCE=1 to rebuild.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.33.13}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/toolchain/kube-common.sh
source "$HERE/../kube-common.sh"
take_outdir "$@"

need_kube=0
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  have "$b" "Kubernetes $KUBE_VERSION" || need_kube=1
done
if [[ $need_kube == 1 ]]; then
  echo "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION -> $OUTDIR" >&2
  (cd "$HERE" && GOFLAGS=-mod=mod GOBIN=$OUTDIR go install -trimpath -ldflags="$(version_ldflags "$KUBE_VERSION")" tool)
else
  echo "kube $KUBE_VERSION binaries up to date in $OUTDIR" >&2
fi

build_kwok
write_kwok_stages
print_versions
