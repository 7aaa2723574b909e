// Package info maps the Terraform tls provider onto the Pulumi "tls" package, using the
// same tokens as the published pulumi_tls SDK (tls:index/privateKey:PrivateKey, ...).
package info

import (
	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Version is stamped by build.sh via -ldflags -X.
var Version = "0.0.0-dev"

// Provider returns the bridge mapping. metadata is the bridge-metadata.json produced by
// tfgen (nil when running tfgen itself).
func Provider(metadata []byte) tfbridge.ProviderInfo {
	prov := tfbridge.ProviderInfo{
		P:            pf.ShimProvider(shim.NewProvider()),
		Name:         "tls",
		Description:  "A Pulumi package to create TLS resources in Pulumi programs.",
		Keywords:     []string{"pulumi", "tls"},
		License:      "Apache-2.0",
		Homepage:     "https://pulumi.io",
		Repository:   "https://github.com/pulumi/pulumi-tls",
		GitHubOrg:    "hashicorp",
		Version:      Version,
		MetadataInfo: tfbridge.NewProviderMetadata(metadata),
		Resources: map[string]*tfbridge.ResourceInfo{
			"tls_self_signed_cert": {PreStateUpgradeHook: selfSignedCertStateFixup},
		},
		Python:                         &tfbridge.PythonInfo{RespectSchemaVersion: true},
		EnableZeroDefaultSchemaVersion: true,
		EnableAccurateBridgePreview:    true,
	}
	prov.MustComputeTokens(tokens.SingleModule("tls_", "index", tokens.MakeStandard("tls")))
	return prov
}

// selfSignedCertStateFixup normalises states written by pre-plugin-framework versions of
// the provider (missing false booleans, empty subject strings, missing allowedUses) so they
// do not produce spurious diffs. It does nothing once upstream versions its schema.
func selfSignedCertStateFixup(a tfbridge.PreStateUpgradeHookArgs) (int64, resource.PropertyMap, error) {
	if a.ResourceSchemaVersion != 0 || a.PriorStateSchemaVersion != 0 {
		return a.PriorStateSchemaVersion, a.PriorState, nil
	}
	s := a.PriorState
	for _, k := range []resource.PropertyKey{"setSubjectKeyId", "setAuthorityKeyId", "isCaCertificate"} {
		if _, ok := s[k]; !ok {
			s[k] = resource.NewBoolProperty(false)
		}
	}
	if subj, ok := s["subject"]; ok && subj.IsObject() {
		o := subj.ObjectValue()
		for k, v := range o {
			if v.IsString() && v.StringValue() == "" {
				delete(o, k)
			}
		}
		if sa, ok := o["streetAddresses"]; ok && sa.IsArray() && len(sa.ArrayValue()) == 0 {
			delete(o, "streetAddresses")
		}
	}
	if _, ok := s["allowedUses"]; !ok {
		s["allowedUses"] = resource.NewArrayProperty(nil)
	}
	return 0, s, nil
}
