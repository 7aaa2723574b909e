"""Mesh security: who may call whom (the access plan), and the mesh-wide mTLS, deny-by-default and shared Sidecars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from builders.catalogue import CATALOGUE, FRONTEND, ExternalHost
from builders.kube import istio_resource
from components.mongodb import MEMBER_ACCOUNT, SEED_POD_LABELS
from config.settings import SecuritySettings

TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Caller:
    """A workload identity allowed to call a service, and what it may call."""

    principal: str
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessPlan:
    """Who may call each workload and where each identity may go: derived from the settings and the catalogue alone,
    so each service's component and the mesh-wide policy read one plan."""

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

    def call_graph(self) -> dict[str, list[Caller]]:
        """Who may call each workload (by app label), derived from the catalogue: nothing else is allowed."""
        graph: dict[str, list[Caller]] = {
            FRONTEND: [Caller(principal(self.istio_namespace, self.gateway_service_account), methods=("GET", "HEAD"))],
        }
        for caller, accounts in self.service_accounts.items():
            for callee in CATALOGUE[caller].calls:
                if callee in self.service_accounts:
                    paths = tuple(_prefix(p) for p in CATALOGUE[callee].api_paths)
                    graph.setdefault(callee, []).extend(Caller(principal(self.namespace, account), methods=("GET",), paths=paths)
                                                        for account in accounts.values())
        if self.mongo_clients:
            graph["mongodb"] = [Caller(principal(self.namespace, account), ports=("27017",)) for account in self.mongo_clients]
        return graph

    def mongo_egress(self) -> list[str]:
        return [f"./{host}.{self.namespace}.svc.cluster.local" for host in self.mongo_hosts]

    def sidecar_egress(self, service: str, tier: str) -> list[str]:
        """The hosts a service's pods on one tier may reach: its callees, that tier's database, external hosts, Istio itself."""
        hosts = [f"./{callee}.{self.namespace}.svc.cluster.local" for callee in CATALOGUE[service].calls if callee in self.service_accounts]
        if tier == "mongodb":
            hosts += self.mongo_egress()
        hosts += [f"./{external.host}" for external in self.external_hosts.get((service, tier), ())]
        hosts.append(f"{self.istio_namespace}/*")
        return hosts


@dataclass(frozen=True)
class MeshSecurityArgs:
    security: SecuritySettings
    plan: AccessPlan
    production: bool
    after: list[pulumi.Resource]


def principal(namespace: str, service_account: str) -> str:
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def _prefix(path: str) -> str:
    # /info and /live are exact; API roots take their sub-paths and query strings.
    return path if path in ("/info", "/live") else f"{path}*"


def _rule(caller: Caller) -> dict[str, Any]:
    operation = {key: list(value) for key, value in (("methods", caller.methods), ("paths", caller.paths), ("ports", caller.ports)) if value}
    return {"from": [{"source": {"principals": [caller.principal]}}], "to": [{"operation": operation}]}


def authorization_spec(app: str, callers: list[Caller]) -> dict[str, Any]:
    return {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW", "rules": [_rule(c) for c in callers]}


def outbound_policy(production: bool) -> dict[str, Any]:
    """What every Sidecar of the app says about hosts outside the registry: nothing (mesh default), or REGISTRY_ONLY."""
    return {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}} if production else {}


class MeshSecurity(pulumi.ComponentResource):
    """Owns the mesh-wide policy: PeerAuthentications, deny-by-default, MongoDB's callers, and the shared Sidecars."""

    def __init__(self, name: str, args: MeshSecurityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:MeshSecurity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.after)
        plan = args.plan
        mtls = {"mtls": {"mode": args.security.mtls_mode}}
        # The root namespace's policy is the mesh-wide default; the app namespace states its own explicitly.
        istio_resource(f"{name}-mesh-peer-authentication", "PeerAuthentication", "default", plan.istio_namespace, mtls, child)
        istio_resource(f"{name}-app-peer-authentication", "PeerAuthentication", "default", plan.namespace, mtls, child)

        self.call_graph = plan.call_graph() if args.security.authorization else {}
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
            if MEMBER_ACCOUNT in plan.mongo_clients:
                istio_resource(f"{name}-mongodb-sidecar", "Sidecar", "mongodb", plan.namespace, {
                    "workloadSelector": {"labels": {"app": "mongodb"}},
                    "egress": [{"hosts": [*plan.mongo_egress(), f"{plan.istio_namespace}/*"]}],
                    **outbound,
                }, child)
        self.register_outputs({"mtlsMode": args.security.mtls_mode,
                               "allowedCallers": {app: [c.principal for c in callers] for app, callers in self.call_graph.items()}})
