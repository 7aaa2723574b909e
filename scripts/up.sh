#!/usr/bin/env bash
# Runs a Pulumi operation on a stack from a fresh machine: pinned Pulumi CLI, a Kubernetes context
# (a local kind cluster when none is configured), the Istio charts, local file state and a passphrase.
# Usage: scripts/up.sh up|down|preview|destroy|e2e|delete-cluster
#   STACK, PULUMI_VERSION, KIND_VERSION come from the Makefile; STACK_ORIGIN=file (make's $(origin STACK)) means
#   STACK is only the Makefile's default, so `up` chooses the stack that fits this machine. PULUMI_YES=1 answers "yes" (CI).
# Which stack, which cluster and the exact kind/pulumi commands are decided by tools/up_plan.py (tested there);
# this script installs what they need, runs them, and records what `up` created so `down` removes just that.
set -euo pipefail
cd "$(dirname "$0")/.."

operation=${1:-up}
PULUMI_VERSION=${PULUMI_VERSION:?set by the Makefile}
KIND_CLUSTER=${KIND_CLUSTER:-bee-travels}
requested_stack=${STACK:-}
[ "${STACK_ORIGIN:-}" = "file" ] && requested_stack=""

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
plan() { "$PWD/.venv/bin/python" -m tools.up_plan "$@"; }

export PATH="$HOME/.pulumi/bin:$PATH"

# What the plan assigns (tools/up_plan.py prints them as quoted shell assignments).
stack="" istio_version="" context="" kind_version="" kind_cluster="" next_steps=""
create_cluster=() deploy=() destroy=() delete_cluster=()

ensure_pulumi() {
  if command -v pulumi >/dev/null && [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
    return
  fi
  say "installing Pulumi CLI $PULUMI_VERSION with the official installer (into ~/.pulumi/bin)"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION" --no-edit-path
}

ensure_kind() {
  # The pinned kind, beside the clone, so a kind already on PATH at another version is neither used nor replaced.
  local version=$1 folder os arch
  folder="$PWD/.cache/kind/$version"
  export PATH="$folder:$PATH"
  if [ -x "$folder/kind" ] && kind version | grep -q " $version "; then
    return
  fi
  os=$(uname -s | tr '[:upper:]' '[:lower:]')
  arch=$(uname -m); [ "$arch" = "x86_64" ] && arch=amd64; [ "$arch" = "aarch64" ] && arch=arm64
  say "installing kind $version from its GitHub release (into $folder), checked against the release's sha256"
  mkdir -p "$folder"
  local base="https://github.com/kubernetes-sigs/kind/releases/download/$version/kind-$os-$arch"
  curl -fsSLo "$folder/kind-$os-$arch" "$base"
  curl -fsSLo "$folder/kind-$os-$arch.sha256sum" "$base.sha256sum"
  if command -v sha256sum >/dev/null; then
    (cd "$folder" && sha256sum -c "kind-$os-$arch.sha256sum" >/dev/null)
  else
    (cd "$folder" && shasum -a 256 -c "kind-$os-$arch.sha256sum" >/dev/null)
  fi
  mv "$folder/kind-$os-$arch" "$folder/kind"
  chmod +x "$folder/kind"
}

ensure_charts() {
  case "$1" in
    1.6.*) make --no-print-directory istio-charts ISTIO_VERSION="$1" ;;
    *) say "Istio $1 charts come from the official Helm repository; nothing to fetch" ;;
  esac
}

use_local_backend() {
  # Local file state and a generated passphrase, both git-ignored; back them up, they are the stack's memory.
  mkdir -p .pulumi-state
  # metadata=skip: no in-place sidecar beside each state file for a concurrent read to find empty (tools/stack_run.py).
  export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state?metadata=skip}
  if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    if [ ! -s .pulumi-passphrase ]; then
      say "generating a stack passphrase in .pulumi-passphrase (keep it: it decrypts this stack's secrets)"
      (umask 077 && "$PWD/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi-passphrase)
    fi
    export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-passphrase"
  fi
}

ensure_stack() {
  use_local_backend
  pulumi stack select "$stack" --create --non-interactive >/dev/null
}

ensure_policy_pack() {
  # The pack runs in its own virtualenv (policy/PulumiPolicy.yaml); every preview and update is checked by it.
  make --no-print-directory policy-pack
}

run_up() {
  local planned yes_flag=()
  [ "${PULUMI_YES:-}" = "1" ] && yes_flag=(--yes)
  # The plan says which stack and why before anything is installed or created, and stops here if nothing fits.
  planned=$(plan up --stack "$requested_stack" --kind-cluster "$KIND_CLUSTER" --kind-version "${KIND_VERSION:-}" ${yes_flag[@]+"${yes_flag[@]}"})
  eval "$planned"
  ensure_pulumi
  if [ ${#create_cluster[@]} -gt 0 ]; then
    ensure_kind "$kind_version"
    "${create_cluster[@]}"
  fi
  # After kind made the cluster (`kind create` fails on a name already taken), before anything is deployed to it.
  plan record --stack "$stack" --context "$context" --created-cluster "$kind_cluster"
  ensure_charts "$istio_version"
  ensure_stack
  ensure_policy_pack
  # An earlier update cut off leaves a lock, pending operations or a pending Helm release; recover them first.
  recover_interrupted --apply
  "${deploy[@]}"
  printf '\n%s\n' "$next_steps"
}

run_down() {
  local planned yes_flag=()
  [ "${PULUMI_YES:-}" = "1" ] && yes_flag=(--yes)
  planned=$(plan down --kind-version "${KIND_VERSION:-}" ${yes_flag[@]+"${yes_flag[@]}"})
  eval "$planned"
  [ -n "$stack" ] || exit 0
  ensure_pulumi
  use_local_backend
  # A failed destroy stops here and keeps the cluster, so what is left can still be destroyed.
  "${destroy[@]}"
  if [ ${#delete_cluster[@]} -gt 0 ]; then
    ensure_kind "$kind_version"
    "${delete_cluster[@]}"
  fi
  plan forget
}

run_delete_cluster() {
  local planned
  planned=$(plan delete-cluster --kind-version "${KIND_VERSION:-}")
  eval "$planned"
  [ ${#delete_cluster[@]} -gt 0 ] || exit 0
  ensure_kind "$kind_version"
  "${delete_cluster[@]}"
  # The stack's objects lived in that cluster; nothing of this deployment is left to remove.
  plan forget
}

run_e2e() {
  # Checks a deployed stack through the gateway (tools/e2e.py); the plain-text check needs STRICT mTLS, so a
  # stack that is not STRICT is switched with `pulumi config set` and updated first (this edits the stack file).
  local namespace gateway=${E2E_GATEWAY:-http://localhost:8080}
  namespace=$(pulumi stack output appNamespace --stack "$stack")
  kubectl wait -n "$namespace" --for=condition=Available deployment --all --timeout=600s
  pulumi stack output --stack "$stack" --json > .e2e-outputs.json
  .venv/bin/python -m tools.e2e --namespace "$namespace" --stack "$stack" all --outputs .e2e-outputs.json --gateway "$gateway" --requests "${REQUESTS:-400}"
  if [ "$(pulumi stack output mtlsMode --stack "$stack")" != "STRICT" ]; then
    say "switching $stack to STRICT mTLS for the plain-text check"
    pulumi config set --stack "$stack" --path security.mtlsMode STRICT
    ensure_policy_pack
    pulumi up --stack "$stack" --policy-pack policy --yes --skip-preview
    .venv/bin/python -m tools.e2e --namespace "$namespace" --stack "$stack" plaintext --service hotel
  fi
}

recover_interrupted() {
  "$PWD/.venv/bin/python" -m tools.recover --stack "$stack" "$@"
}

run_on_stack() {
  # preview, destroy, e2e: the stack asked for, else the one `make up` deployed, else dev.
  local yes=()
  [ "${PULUMI_YES:-}" = "1" ] && yes=(--yes --skip-preview)
  eval "$(plan stack --stack "$requested_stack")"
  ensure_pulumi
  ensure_charts "$istio_version"
  ensure_stack
  case "$operation" in
    # A preview changes nothing: it says what an interrupted update left and what to run, then previews anyway.
    preview) ensure_policy_pack; recover_interrupted || true; pulumi preview --stack "$stack" --diff --policy-pack policy ;;
    recover) recover_interrupted --apply ;;
    destroy) pulumi destroy --stack "$stack" ${yes[@]+"${yes[@]}"} ;;
    e2e) run_e2e ;;
  esac
}

case "$operation" in
  up) run_up ;;
  down) run_down ;;
  delete-cluster) run_delete_cluster ;;
  preview|destroy|e2e|recover) run_on_stack ;;
  *) die "unknown operation '$operation' (up, down, preview, destroy, e2e, recover or delete-cluster)" ;;
esac
