#!/usr/bin/env bash
# Runs a Pulumi operation on a stack from a fresh machine: pinned Pulumi CLI, a Kubernetes context
# (a local kind cluster when none is configured), the Istio charts, local file state and a passphrase.
# Usage: scripts/up.sh up|preview|destroy|e2e|delete-cluster
#   STACK, PULUMI_VERSION, KIND_VERSION, ISTIO_VERSION come from the Makefile; PULUMI_YES=1 answers "yes" (CI).
set -euo pipefail
cd "$(dirname "$0")/.."

operation=${1:-up}
STACK=${STACK:-dev}
PULUMI_VERSION=${PULUMI_VERSION:?set by the Makefile}
KIND_VERSION=${KIND_VERSION:?set by the Makefile}
ISTIO_VERSION=${ISTIO_VERSION:-1.6.14}
KIND_CLUSTER=${KIND_CLUSTER:-bee-travels}
# Kubernetes 1.18 is the newest release Istio 1.6 supports; the digest is the one kind v0.14.0 published.
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.18.20@sha256:738cdc23ed4be6cc0b7ea277a2ebcc454c8373d7d8fb991a7fcdbd126188e6d7}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

export PATH="$HOME/.pulumi/bin:$HOME/.local/bin:$PATH"

ensure_pulumi() {
  if command -v pulumi >/dev/null && [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
    return
  fi
  say "installing Pulumi CLI $PULUMI_VERSION with the official installer (into ~/.pulumi/bin)"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION" --no-edit-path
}

current_context() {
  "$PWD/.venv/bin/python" - <<'PY'
import os, pathlib, yaml
path = os.environ.get("KUBECONFIG", str(pathlib.Path.home() / ".kube" / "config")).split(os.pathsep)[0]
try:
    print((yaml.safe_load(open(path)) or {}).get("current-context") or "")
except OSError:
    print("")
PY
}

ensure_cluster() {
  local context
  context=$(current_context)
  if [ -n "$context" ]; then
    say "using the current Kubernetes context: $context"
    return
  fi
  command -v docker >/dev/null || die "no Kubernetes context is configured and Docker (needed for a kind cluster) is not installed"
  # Kubernetes before 1.19 cannot run on a cgroup v2 host (a Kubernetes limitation, see kind's known issues).
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = "cgroup2fs" ]; then
    die "this host uses cgroup v2, where a Kubernetes 1.18 kind node cannot start, and Istio 1.6 supports only Kubernetes 1.15-1.18.
Point kubectl at a 1.15-1.18 cluster (kubectl config use-context ...), or run this on a cgroup v1 host, then run the command again."
  fi
  if ! command -v kind >/dev/null; then
    say "installing kind $KIND_VERSION with the official binary release (into ~/.local/bin)"
    mkdir -p "$HOME/.local/bin"
    local arch; arch=$(uname -m); [ "$arch" = "x86_64" ] && arch=amd64; [ "$arch" = "aarch64" ] && arch=arm64
    curl -fsSLo "$HOME/.local/bin/kind" "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-$(uname -s | tr '[:upper:]' '[:lower:]')-$arch"
    chmod +x "$HOME/.local/bin/kind"
  fi
  say "creating kind cluster '$KIND_CLUSTER' ($KIND_NODE_IMAGE)"
  kind create cluster --name "$KIND_CLUSTER" --image "$KIND_NODE_IMAGE" --config scripts/kind-config.yaml --wait 120s
}

ensure_charts() {
  case "$ISTIO_VERSION" in
    1.6.*) make --no-print-directory istio-charts ISTIO_VERSION="$ISTIO_VERSION" ;;
    *) say "Istio $ISTIO_VERSION charts come from the official Helm repository; nothing to fetch" ;;
  esac
}

ensure_backend() {
  # Local file state and a generated passphrase, both git-ignored; back them up, they are the stack's memory.
  mkdir -p .pulumi-state
  export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}
  if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    if [ ! -s .pulumi-passphrase ]; then
      say "generating a stack passphrase in .pulumi-passphrase (keep it: it decrypts this stack's secrets)"
      (umask 077 && "$PWD/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi-passphrase)
    fi
    export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-passphrase"
  fi
  pulumi stack select "$STACK" --create --non-interactive >/dev/null
}

ensure_policy_pack() {
  # The pack runs in its own virtualenv (policy/PulumiPolicy.yaml); every preview and update is checked by it.
  make --no-print-directory policy-pack
}

run_e2e() {
  # Checks a deployed stack through the gateway (tools/e2e.py); the plain-text check needs STRICT mTLS, so a
  # stack that is not STRICT is switched with `pulumi config set` and updated first (this edits the stack file).
  local namespace gateway=${E2E_GATEWAY:-http://localhost:8080}
  namespace=$(pulumi stack output appNamespace --stack "$STACK")
  kubectl wait -n "$namespace" --for=condition=Available deployment --all --timeout=600s
  pulumi stack output --stack "$STACK" --json > .e2e-outputs.json
  .venv/bin/python -m tools.e2e --namespace "$namespace" all --outputs .e2e-outputs.json --gateway "$gateway" --requests "${REQUESTS:-400}"
  if [ "$(pulumi stack output mtlsMode --stack "$STACK")" != "STRICT" ]; then
    say "switching $STACK to STRICT mTLS for the plain-text check"
    pulumi config set --stack "$STACK" --path security.mtlsMode STRICT
    ensure_policy_pack
    pulumi up --stack "$STACK" --policy-pack policy --yes --skip-preview
    .venv/bin/python -m tools.e2e --namespace "$namespace" plaintext --service hotel
  fi
}

yes=()
[ "${PULUMI_YES:-}" = "1" ] && yes=(--yes --skip-preview)

case "$operation" in
  delete-cluster)
    kind delete cluster --name "$KIND_CLUSTER"
    exit 0 ;;
  up|preview|destroy|e2e) ;;
  *) die "unknown operation '$operation' (up, preview, destroy, e2e or delete-cluster)" ;;
esac

ensure_pulumi
[ "$operation" = "up" ] && ensure_cluster
ensure_charts
ensure_backend
case "$operation" in
  up) ensure_policy_pack; pulumi up --stack "$STACK" --policy-pack policy "${yes[@]}" ;;
  preview) ensure_policy_pack; pulumi preview --stack "$STACK" --diff --policy-pack policy ;;
  destroy) pulumi destroy --stack "$STACK" "${yes[@]}" ;;
  e2e) run_e2e ;;
esac
