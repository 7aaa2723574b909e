"""A self-signed TLS certificate for the Gateway on non-production stacks, kept in a Secret the gateway reads."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from builders.kube import metadata

SELF_SIGNED_SECRET = "bee-travels-self-signed-tls"


@dataclass(frozen=True)
class SelfSignedCertificateArgs:
    hosts: list[str]
    # Istio reads credentialName Secrets from the ingress gateway's own namespace.
    gateway_namespace: str
    after: list[pulumi.Resource]
    # An app stack's namespace: its Secret is named for it, as the app stacks of one platform share the gateway's namespace.
    app_stack_namespace: str | None = None

    @property
    def credential_name(self) -> str:
        return f"{self.app_stack_namespace}-{SELF_SIGNED_SECRET}" if self.app_stack_namespace else SELF_SIGNED_SECRET


class SelfSignedCertificate(pulumi.ComponentResource):
    """Owns a generated private key, a self-signed certificate for the Gateway's hosts and their TLS Secret."""

    credential_name: str

    def __init__(self, name: str, args: SelfSignedCertificateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:SelfSignedCertificate", name, None, opts)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self))
        # "*" is not a certificate name; a wildcard-only gateway gets a certificate for localhost.
        dns_names = [host for host in args.hosts if host != "*"] or ["localhost"]
        certificate = tls.SelfSignedCert(
            f"{name}-certificate",
            private_key_pem=key.private_key_pem,
            dns_names=dns_names,
            subject=tls.SelfSignedCertSubjectArgs(common_name=dns_names[0], organization="Bee Travels (self-signed)"),
            validity_period_hours=24 * 90,
            early_renewal_hours=24 * 14,
            allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=metadata(args.credential_name, args.gateway_namespace),
            type="kubernetes.io/tls",
            string_data=pulumi.Output.secret({"tls.crt": certificate.cert_pem, "tls.key": key.private_key_pem}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        self.credential_name = args.credential_name
        self.register_outputs({"credentialName": args.credential_name, "certificatePem": certificate.cert_pem})
