#!/usr/bin/env bash
# Builds pulumi-resource-kubernetes VERSION into OUTDIR from the provider's published module.
# The two files its main package embeds are git-ignored upstream and made at release time from the committed
# schema.json (stamped with the version) and terraform-mapping.json (compacted); this makes them the same way.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR VERSION} version=${2:?usage: build.sh OUTDIR VERSION}
cd "$(dirname "$0")"
# `go list -m` names a module's folder only once it is downloaded, which a fresh machine has not done yet.
go mod download github.com/pulumi/pulumi-kubernetes/provider/v4
source=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
python3 ../stamp-schema.py "$source/schema.json" schema-embed.json "$version"
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")), end="")' \
  "$source/terraform-mapping.json" > terraform-mapping-embed.json
go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$version" \
  -o "$out/pulumi-resource-kubernetes" .
