#!/usr/bin/env bash
# Builds pulumi-resource-kubernetes VERSION into OUTDIR from the provider's published module.
# The two files its main package embeds are git-ignored upstream and made at release time from the committed
# schema.json and terraform-mapping.json; this makes them the same way (the schema stamped with the version).
set -euo pipefail
out=${1:?usage: build.sh OUTDIR VERSION} version=${2:?usage: build.sh OUTDIR VERSION}
cd "$(dirname "$0")"
module=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
python3 - "$module/cmd/pulumi-resource-kubernetes" "$version" <<'PY'
import json, pathlib, sys
source, version = pathlib.Path(sys.argv[1]), sys.argv[2]
schema = json.loads((source / "schema.json").read_text())
schema["version"] = version
pathlib.Path("schema-embed.json").write_text(json.dumps(schema, separators=(",", ":")))
mapping = json.loads((source / "terraform-mapping.json").read_text())
pathlib.Path("terraform-mapping-embed.json").write_text(json.dumps(mapping, separators=(",", ":")))
PY
go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$version" \
  -o "$out/pulumi-resource-kubernetes" .
