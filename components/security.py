"""Mesh security: mTLS mode, deny-by-default authorization for exactly the app's call graph, and egress limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.catalogue import CATALOGUE, FRONTEND, ExternalHost
from components.kube import istio_resource
from components.mongodb import MEMBER_ACCOUNT, SEED_POD_LABELS
from components.settings import SecuritySettings
from components.workloads import identity_labels

TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Caller:
    """A workload identity allowed to call a service, and what it may call."""

    principal: str
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeshSecurityArgs:
    security: SecuritySettings
    # The workloads' identities: service -> data tier -> the ServiceAccount its versions on that tier run as.
    service_accounts: dict[str, dict[str, str]]
    namespace: str
    istio_namespace: str
    gateway_service_account: str
    # Service accounts allowed to reach MongoDB (those of the mongodb-tier versions, the seeding Jobs and, in a replica
    # set, the members themselves), and the Services they reach it through; both empty without MongoDB.
    mongo_clients: tuple[str, ...]
    mongo_hosts: tuple[str, ...]
    external_hosts: dict[tuple[str, str], tuple[ExternalHost, ...]]  # per (service, data tier)
    production: bool
    after: list[pulumi.Resource]


def principal(namespace: str, service_account: str) -> str:
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def call_graph(args: MeshSecurityArgs) -> dict[str, list[Caller]]:
    """Who may call each workload (by app label), derived from the catalogue: nothing else is allowed."""
    graph: dict[str, list[Caller]] = {
        FRONTEND: [Caller(principal(args.istio_namespace, args.gateway_service_account), methods=("GET", "HEAD"))],
    }
    for caller, accounts in args.service_accounts.items():
        for callee in CATALOGUE[caller].calls:
            if callee in args.service_accounts:
                paths = tuple(_prefix(p) for p in CATALOGUE[callee].api_paths)
                graph.setdefault(callee, []).extend(Caller(principal(args.namespace, account), methods=("GET",), paths=paths)
                                                    for account in accounts.values())
    if args.mongo_clients:
        graph["mongodb"] = [Caller(principal(args.namespace, account), ports=("27017",)) for account in args.mongo_clients]
    return graph


def _prefix(path: str) -> str:
    # /info and /live are exact; API roots take their sub-paths and query strings.
    return path if path in ("/info", "/live") else f"{path}*"


def _rule(caller: Caller) -> dict[str, Any]:
    operation = {key: list(value) for key, value in (("methods", caller.methods), ("paths", caller.paths), ("ports", caller.ports)) if value}
    return {"from": [{"source": {"principals": [caller.principal]}}], "to": [{"operation": operation}]}


def authorization_spec(app: str, callers: list[Caller]) -> dict[str, Any]:
    return {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW", "rules": [_rule(c) for c in callers]}


def mongo_egress(args: MeshSecurityArgs) -> list[str]:
    return [f"./{host}.{args.namespace}.svc.cluster.local" for host in args.mongo_hosts]


def sidecar_egress(service: str, tier: str, args: MeshSecurityArgs) -> list[str]:
    """The hosts a service's pods on one tier may reach: its callees, that tier's database, external hosts, Istio itself."""
    hosts = [f"./{callee}.{args.namespace}.svc.cluster.local" for callee in CATALOGUE[service].calls if callee in args.service_accounts]
    if tier == "mongodb":
        hosts += mongo_egress(args)
    hosts += [f"./{external.host}" for external in args.external_hosts.get((service, tier), ())]
    hosts.append(f"{args.istio_namespace}/*")
    return hosts


class MeshSecurity(pulumi.ComponentResource):
    """Owns PeerAuthentications, AuthorizationPolicies and Sidecars of the app namespace and the mesh root."""

    def __init__(self, name: str, args: MeshSecurityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:MeshSecurity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.after)
        mtls = {"mtls": {"mode": args.security.mtls_mode}}
        # The root namespace's policy is the mesh-wide default; the app namespace states its own explicitly.
        istio_resource(f"{name}-mesh-peer-authentication", "PeerAuthentication", "default", args.istio_namespace, mtls, child)
        istio_resource(f"{name}-app-peer-authentication", "PeerAuthentication", "default", args.namespace, mtls, child)

        self.call_graph = call_graph(args) if args.security.authorization else {}
        if args.security.authorization:
            # An ALLOW policy with no rules matches nothing: every request not allowed below is denied.
            istio_resource(f"{name}-deny-by-default", "AuthorizationPolicy", "deny-by-default", args.namespace, {}, child)
            # Prometheus needs no rule: it scrapes the agent's merged-metrics port (15020), which the sidecar does not
            # intercept, so no application port is opened to callers without a mesh identity.
            for app, callers in self.call_graph.items():
                istio_resource(f"{name}-allow-{app}", "AuthorizationPolicy", f"allow-{app}", args.namespace,
                               authorization_spec(app, callers), child)

        if args.security.restrict_egress:
            outbound = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}} if args.production else {}
            istio_resource(f"{name}-namespace-sidecar", "Sidecar", "default", args.namespace,
                           {"egress": [{"hosts": [f"{args.istio_namespace}/*"]}], **outbound}, child)
            if args.mongo_hosts:
                istio_resource(f"{name}-seed-sidecar", "Sidecar", "seed-jobs", args.namespace, {
                    "workloadSelector": {"labels": SEED_POD_LABELS},
                    "egress": [{"hosts": [*mongo_egress(args), f"{args.istio_namespace}/*"]}],
                    **outbound,
                }, child)
            if MEMBER_ACCOUNT in args.mongo_clients:
                istio_resource(f"{name}-mongodb-sidecar", "Sidecar", "mongodb", args.namespace, {
                    "workloadSelector": {"labels": {"app": "mongodb"}},
                    "egress": [{"hosts": [*mongo_egress(args), f"{args.istio_namespace}/*"]}],
                    **outbound,
                }, child)
            # One Sidecar per identity, named after it. Istio applies one selecting Sidecar per pod, and every pod
            # carries exactly one data tier, so selecting on app and tier never overlaps and keeps mongo off json pods.
            for service, accounts in args.service_accounts.items():
                for tier, account in accounts.items():
                    istio_resource(f"{name}-{account}-sidecar", "Sidecar", account, args.namespace, {
                        "workloadSelector": {"labels": identity_labels(service, tier)},
                        "egress": [{"hosts": sidecar_egress(service, tier, args)}],
                        **outbound,
                    }, child)
        self.register_outputs({"mtlsMode": args.security.mtls_mode,
                               "allowedCallers": {app: [c.principal for c in callers] for app, callers in self.call_graph.items()}})
