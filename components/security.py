"""Mesh security: who may call whom (the access plan), and the mesh-wide mTLS, deny-by-default and shared Sidecars."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from builders.access import (
    CONTROL_PLANE_PORT,
    MONGO_DESTINATION,
    SCRAPED_PORTS,
    AccessPlan,
    authorization_spec,
    egress_network_policy_spec,
    ingress_network_policy_spec,
    namespace_peer,
    namespace_wide_policies,
    outbound_policy,
    tcp_ports,
)
from builders.istio_fence import IstioNamespaceFence
from builders.kube import istio_resource, network_policy
from config.settings import SecuritySettings
from domain.mongodb import MEMBER_ACCOUNT, SEED_ACCOUNT, SEED_POD_LABELS
from domain.mongodb import PORT as MONGO_PORT


@dataclass(frozen=True)
class MeshSecurityArgs:
    security: SecuritySettings
    plan: AccessPlan
    production: bool
    after: list[pulumi.Resource]
    # Istio's own namespace, fenced as the app's is when NetworkPolicies are on; None on an app stack, whose platform
    # stack owns Istio's namespace and its mesh-wide mTLS default.
    istio_fence: IstioNamespaceFence | None
    # Ports in Istio's namespace every sidecar sends to besides istiod's: the tracing collector's, when tracing is on.
    telemetry_ports: tuple[int, ...] = ()

    @property
    def owns_istio_namespace(self) -> bool:
        return self.istio_fence is not None


class MeshSecurity(pulumi.ComponentResource):
    """Owns the mesh-wide policy: PeerAuthentications, deny-by-default, MongoDB's callers, and the shared Sidecars."""

    def __init__(self, name: str, args: MeshSecurityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:MeshSecurity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.after)
        plan = args.plan
        mtls = {"mtls": {"mode": args.security.mtls_mode}}
        # The root namespace's policy is the mesh-wide default; the app namespace states its own explicitly.
        if args.owns_istio_namespace:
            istio_resource(f"{name}-mesh-peer-authentication", "PeerAuthentication", "default", plan.istio_namespace, mtls, child)
        istio_resource(f"{name}-app-peer-authentication", "PeerAuthentication", "default", plan.namespace, mtls, child)

        self.call_graph = plan.call_graph if args.security.authorization else {}
        if args.security.authorization:
            # An ALLOW policy with no rules matches nothing: every request not allowed by a service's own policy is denied.
            istio_resource(f"{name}-deny-by-default", "AuthorizationPolicy", "deny-by-default", plan.namespace, {}, child)
            # Prometheus needs no rule: it scrapes the agent's merged-metrics port (15020), which the sidecar does not
            # intercept, so no application port is opened to callers without a mesh identity.
            if "mongodb" in self.call_graph:
                istio_resource(f"{name}-allow-mongodb", "AuthorizationPolicy", "allow-mongodb", plan.namespace,
                               authorization_spec("mongodb", self.call_graph["mongodb"]), child)

        if args.security.restrict_egress:
            outbound = outbound_policy(args.production)
            istio_resource(f"{name}-namespace-sidecar", "Sidecar", "default", plan.namespace,
                           {"egress": [{"hosts": [f"{plan.istio_namespace}/*"]}], **outbound}, child)
            if plan.mongo_hosts:
                istio_resource(f"{name}-seed-sidecar", "Sidecar", "seed-jobs", plan.namespace, {
                    "workloadSelector": {"labels": SEED_POD_LABELS},
                    "egress": [{"hosts": [*plan.mongo_egress(), f"{plan.istio_namespace}/*"]}],
                    **outbound,
                }, child)
            if any(client.account == MEMBER_ACCOUNT for client in plan.mongo_clients):
                istio_resource(f"{name}-mongodb-sidecar", "Sidecar", "mongodb", plan.namespace, {
                    "workloadSelector": {"labels": {"app": "mongodb"}},
                    "egress": [{"hosts": [*plan.mongo_egress(), f"{plan.istio_namespace}/*"]}],
                    **outbound,
                }, child)
        if args.security.network_policies:
            self._network_policies(name, args, child)
        self.register_outputs({"mtlsMode": args.security.mtls_mode,
                               "allowedCallers": {app: [c.principal for c in callers] for app, callers in self.call_graph.items()}})

    def _network_policies(self, name: str, args: MeshSecurityArgs, child: pulumi.ResourceOptions) -> None:
        """Istio's namespace fenced (builders/istio_fence.py), and the app namespace's own NetworkPolicies: deny
        everything, then DNS, the control plane, scraping and MongoDB's callers.

        Each service's own ingress and egress rules come with its component. Traffic that never meets a sidecar (a pod
        outside the mesh, a process bypassing the proxy) then still meets the call graph, at the CNI.
        """
        plan, namespace = args.plan, args.plan.namespace
        fence = args.istio_fence
        for policy, spec in (fence.policies() if fence else {}).items():
            network_policy(f"{name}-istio-system-{policy}-network", policy, fence.namespace, spec, child)
        istio = namespace_peer(plan.istio_namespace)
        resource_names = {"default-deny": f"{name}-default-deny-network", "allow-dns": f"{name}-dns-network"}  # as first named
        for policy, spec in namespace_wide_policies().items():
            network_policy(resource_names[policy], policy, namespace, spec, child)
        network_policy(f"{name}-istio-network", "allow-istio", namespace, {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
            "egress": [{"to": [istio], "ports": tcp_ports(CONTROL_PLANE_PORT, *args.telemetry_ports)}],
            "ingress": [{"from": [istio], "ports": tcp_ports(*SCRAPED_PORTS)}]}, child)
        graph = plan.call_graph
        if "mongodb" in graph:
            network_policy(f"{name}-mongodb-ingress-network", "mongodb-ingress", namespace,
                           ingress_network_policy_spec("mongodb", MONGO_PORT, graph["mongodb"]), child)
            # The seeding Jobs and the members themselves connect to MongoDB; the app's clients say so in their own rules.
            for client in plan.mongo_clients:
                if client.account in (MEMBER_ACCOUNT, SEED_ACCOUNT):
                    network_policy(f"{name}-{client.account}-egress-network", f"{client.account}-egress", namespace,
                                   egress_network_policy_spec(dict(client.pod_labels), [MONGO_DESTINATION]), child)
