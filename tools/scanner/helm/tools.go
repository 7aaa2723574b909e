//go:build tools

// Package helm pins Helm's command for `make scanner`: `helm template` renders each chart release the way the
// Kubernetes provider does, since the provider embeds this same Helm module (tests/test_toolchain.py keeps them equal).
package helm

import _ "helm.sh/helm/v3/cmd/helm"
