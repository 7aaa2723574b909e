// Build-time schema generator: `go run ./internal/tfgen schema --out DIR` writes
// schema.json and bridge-metadata.json for main.go to embed.
// UPSTREAM_REPO_PATH (set by build.sh to the upstream module's directory in the Go module
// cache) lets tfgen read the upstream docs/ for resource and property descriptions.
package main

import (
	"os"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"bee-travels.invalid/toolchain/pulumi-resource-tls/info"
)

func main() {
	p := info.Provider(nil)
	p.UpstreamRepoPath = os.Getenv("UPSTREAM_REPO_PATH")
	tfgen.Main("tls", p)
}
