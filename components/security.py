"""Mesh security: who may call whom (the access plan), and the mesh-wide mTLS, deny-by-default and shared Sidecars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from builders.catalogue import CATALOGUE, FRONTEND, ExternalHost
from builders.kube import NAMESPACE_LABEL, istio_resource, metadata
from builders.workloads import Identity, identity, identity_labels
from components.mongodb import MEMBER_ACCOUNT, SEED_ACCOUNT, SEED_POD_LABELS
from components.mongodb import PORT as MONGO_PORT
from config.settings import SecuritySettings

TRUST_DOMAIN = "cluster.local"
# What every sidecar reaches in Istio's namespace: istiod's xDS and certificate port.
CONTROL_PLANE_PORT = 15012
# What Prometheus scrapes on every pod: the agent's merged metrics and Envoy's own stats.
SCRAPED_PORTS = (15020, 15090)
DNS_PORT = 53


@dataclass(frozen=True)
class Caller:
    """A workload identity allowed to call a service, and what it may call."""

    principal: str
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    pods: Identity | None = None


@dataclass(frozen=True)
class Destination:
    """Where an identity's pods may open connections: pods of the app namespace, or (`outside`) beyond the cluster,
    which a NetworkPolicy can only name as addresses; the sidecars' egress limits name the host."""

    port: int
    pod_labels: tuple[tuple[str, str], ...] = ()
    outside: bool = False


@dataclass(frozen=True)
class AccessPlan:
    """Who may call each workload and where each identity may go: derived from the settings and the catalogue alone,
    so each service's component and the mesh-wide policy read one plan."""

    # The workloads' identities: service -> data tier -> the ServiceAccount its versions on that tier run as.
    service_accounts: dict[str, dict[str, str]]
    namespace: str
    istio_namespace: str
    gateway_service_account: str
    gateway_pod_labels: dict[str, str]
    # Identities allowed to reach MongoDB (those of the mongodb-tier versions, the seeding Jobs and, in a replica
    # set, the members themselves), and the Services they reach it through; both empty without MongoDB.
    mongo_clients: tuple[Identity, ...]
    mongo_hosts: tuple[str, ...]
    external_hosts: dict[tuple[str, str], tuple[ExternalHost, ...]]  # per (service, data tier)

    def call_graph(self) -> dict[str, list[Caller]]:
        """Who may call each workload (by app label), derived from the catalogue: nothing else is allowed."""
        gateway = identity(self.gateway_service_account, self.gateway_pod_labels, self.istio_namespace)
        graph: dict[str, list[Caller]] = {
            FRONTEND: [Caller(principal(self.istio_namespace, self.gateway_service_account), methods=("GET", "HEAD"), pods=gateway)],
        }
        for caller, accounts in self.service_accounts.items():
            for callee in CATALOGUE[caller].calls:
                if callee in self.service_accounts:
                    paths = tuple(_prefix(p) for p in CATALOGUE[callee].api_paths)
                    graph.setdefault(callee, []).extend(
                        Caller(principal(self.namespace, account), methods=("GET",), paths=paths,
                               pods=identity(account, identity_labels(caller, tier)))
                        for tier, account in accounts.items())
        if self.mongo_clients:
            graph["mongodb"] = [Caller(principal(self.namespace, client.account), ports=(str(MONGO_PORT),), pods=client)
                                for client in self.mongo_clients]
        return graph

    def network_egress(self, service: str, tier: str) -> list[Destination]:
        """Where a service's pods on one tier may connect, as sidecar_egress says, for the NetworkPolicy layer."""
        destinations = [Destination(CATALOGUE[callee].port, (("app", callee),))
                        for callee in CATALOGUE[service].calls if callee in self.service_accounts]
        if tier == "mongodb":
            destinations.append(MONGO_DESTINATION)
        destinations += [Destination(external.port, outside=True) for external in self.external_hosts.get((service, tier), ())]
        return destinations

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
    # Ports in Istio's namespace every sidecar sends to besides istiod's: the tracing collector's, when tracing is on.
    telemetry_ports: tuple[int, ...] = ()


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


MONGO_DESTINATION = Destination(MONGO_PORT, (("app", "mongodb"),))


def _peer(pods: Identity) -> dict[str, Any]:
    peer: dict[str, Any] = {"podSelector": {"matchLabels": dict(pods.pod_labels)}}
    if pods.namespace:
        peer["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: pods.namespace}}
    return peer


def ingress_network_policy_spec(app: str, port: int, callers: list[Caller]) -> dict[str, Any]:
    """Only the callers' pods may open connections to `app`'s pods, on its port: the call graph, below the mesh."""
    return {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [_peer(caller.pods) for caller in callers if caller.pods],
                         "ports": _tcp(port)}]}


def egress_network_policy_spec(pod_labels: dict[str, str], destinations: list[Destination]) -> dict[str, Any]:
    """Where these pods may connect besides DNS and istiod (the namespace-wide rules): their callees and data."""
    rules = [{"to": [{"podSelector": {"matchLabels": dict(d.pod_labels)}}] if not d.outside else
              [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
              "ports": _tcp(d.port)} for d in destinations]
    return {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Egress"], "egress": rules}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policy(resource_name: str, name: str, namespace: str, spec: dict[str, Any],
                   opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(resource_name, metadata=metadata(name, namespace), spec=spec, opts=opts)


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
        """The namespace-wide NetworkPolicies: deny everything, then DNS, the control plane, scraping and MongoDB's callers.

        Each service's own ingress and egress rules come with its component. Traffic that never meets a sidecar (a pod
        outside the mesh, a process bypassing the proxy) then still meets the call graph, at the CNI.
        """
        plan, namespace = args.plan, args.plan.namespace
        istio = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: plan.istio_namespace}}}
        network_policy(f"{name}-default-deny-network", "default-deny", namespace,
                       {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, child)
        network_policy(f"{name}-dns-network", "allow-dns", namespace, {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "UDP", "port": DNS_PORT}, *_tcp(DNS_PORT)]}]}, child)
        network_policy(f"{name}-istio-network", "allow-istio", namespace, {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
            "egress": [{"to": [istio], "ports": _tcp(CONTROL_PLANE_PORT, *args.telemetry_ports)}],
            "ingress": [{"from": [istio], "ports": _tcp(*SCRAPED_PORTS)}]}, child)
        graph = plan.call_graph()
        if "mongodb" in graph:
            network_policy(f"{name}-mongodb-ingress-network", "mongodb-ingress", namespace,
                           ingress_network_policy_spec("mongodb", MONGO_PORT, graph["mongodb"]), child)
            # The seeding Jobs and the members themselves connect to MongoDB; the app's clients say so in their own rules.
            for client in plan.mongo_clients:
                if client.account in (MEMBER_ACCOUNT, SEED_ACCOUNT):
                    network_policy(f"{name}-{client.account}-egress-network", f"{client.account}-egress", namespace,
                                   egress_network_policy_spec(dict(client.pod_labels), [MONGO_DESTINATION]), child)
