#!/usr/bin/env bash
# bridged-provider.sh NAME UPSTREAM_MODULE OUTDIR VERSION: builds pulumi-resource-NAME from the wrapper module
# tools/toolchain/pulumi-resource-NAME, which bridges the upstream Terraform provider with pulumi-terraform-bridge.
# The schema is generated at build time by the bridge's tfgen from the provider itself (into the git-ignored gen/),
# stamped with VERSION and embedded; HCL examples are skipped (converting them needs a plugin not available here).
set -euo pipefail
name=${1:?NAME} upstream=${2:?UPSTREAM_MODULE} out=${3:?OUTDIR} version=${4:?VERSION}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/pulumi-resource-$name"
ldflags="-s -w -X bee-travels.invalid/toolchain/pulumi-resource-$name/info.Version=$version"
rm -rf gen && mkdir -p gen
go build -trimpath -ldflags "$ldflags" -o "gen/pulumi-tfgen-$name" ./internal/tfgen
# Resource and property descriptions come from the upstream module's docs/ in the module cache.
go mod download "$upstream"
UPSTREAM_REPO_PATH="$(go list -m -f '{{.Dir}}' "$upstream")" "./gen/pulumi-tfgen-$name" schema --skip-examples --out gen >&2
python3 "$here/stamp-schema.py" gen/schema.json gen/schema-embed.json "$version"
go build -trimpath -ldflags "$ldflags" -o "$out/pulumi-resource-$name" .
rm -f "gen/pulumi-tfgen-$name"
