"""Traffic: the mesh-wide Gateway, its rate limit and the egress ServiceEntries (the specs are builders/routes.py's)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from builders.kube import istio_resource
from builders.rate_limits import Limits, rate_limit_filter_spec
from builders.routes import GATEWAY_NAME, gateway_spec, service_entry_spec
from config.settings import GatewaySettings
from domain.catalogue import ExternalHost


@dataclass(frozen=True)
class TrafficRulesArgs:
    gateway: GatewaySettings
    gateway_selector: dict[str, str]
    gateway_namespace: str
    tls_credential_name: str | None  # the TLS Secret the Gateway serves, when TLS is on
    namespace: str
    external_hosts: tuple[ExternalHost, ...]
    after: list[pulumi.Resource]
    limits: Limits | None = None  # the ingress gateway's rate limits, in the Envoy API of the stack's Istio


class TrafficRules(pulumi.ComponentResource):
    """Owns the app's Gateway and the ServiceEntries of the hosts outside the mesh it may reach."""

    def __init__(self, name: str, args: TrafficRulesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:TrafficRules", name, None, opts)
        # Istio resources are refused until the CRDs and istiod's validation webhook exist.
        child = pulumi.ResourceOptions(parent=self, depends_on=args.after)
        ns = args.namespace
        istio_resource(f"{name}-gateway", "Gateway", GATEWAY_NAME, ns,
                       gateway_spec(args.gateway, args.gateway_selector, args.tls_credential_name), child)
        for external in args.external_hosts:
            istio_resource(f"{name}-egress-{external.host}", "ServiceEntry", external.host.replace(".", "-"), ns,
                           service_entry_spec(external), child)
        limit = rate_limit_filter_spec(args.gateway_selector, "GATEWAY", args.limits, "ingress_gateway") if args.limits else None
        if limit is not None:
            istio_resource(f"{name}-gateway-rate-limit", "EnvoyFilter", "ingress-gateway-rate-limit", args.gateway_namespace,
                           limit, child)
        self.register_outputs({"gateway": f"{ns}/{GATEWAY_NAME}", "externalHosts": [e.host for e in args.external_hosts]})
