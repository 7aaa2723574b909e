// The kubernetes resource plugin: pulumi-kubernetes' own provider, served from its published module.
// The schema and mapping files it embeds are not in the module (upstream generates them at release),
// so build.sh produces them from the module's committed schema.json before compiling.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
