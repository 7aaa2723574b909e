// Local shim living under the upstream provider's own module path, so that Go's
// internal-package rule lets it import terraform-provider-random/internal/provider.
module github.com/terraform-providers/terraform-provider-random/shim

go 1.25.8

require (
	github.com/hashicorp/terraform-plugin-framework v1.19.0
	github.com/terraform-providers/terraform-provider-random v1.3.2-0.20260824155315-e1092b0cfc07
)
