#!/usr/bin/env bash
# CI: writes the stack's kubeconfig (KUBECONFIG_CONTENT, from a repository secret) to a private file and points
# later steps at it. Fails with the secret's name when it is missing, instead of previewing against nothing.
set -euo pipefail
if [ -z "${KUBECONFIG_CONTENT:-}" ]; then
  echo "error: no kubeconfig for this stack: set the KUBECONFIG_DEV / KUBECONFIG_PROD secret of this job's environment" >&2
  exit 1
fi
target="${RUNNER_TEMP:?set by GitHub Actions}/kubeconfig"
(umask 077 && printf '%s\n' "$KUBECONFIG_CONTENT" > "$target")
echo "KUBECONFIG=$target" >> "${GITHUB_ENV:?set by GitHub Actions}"
