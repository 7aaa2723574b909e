"""Who may call whom: the access plan derived from the settings and the catalogue, and the AuthorizationPolicy,
NetworkPolicy and Sidecar specs that enforce it, in the mesh and below it."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builders.kube import NAMESPACE_LABEL
from builders.workloads import Identity, identity, identity_labels
from domain.catalogue import CATALOGUE, FRONTEND, ExternalHost
from domain.mongodb import PORT as MONGO_PORT

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

    def callers_of(self, service: str) -> list[Caller]:
        return self.call_graph.get(service, [])

    @functools.cached_property
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


# Peers a NetworkPolicy can only name by address: the API server, hosts outside the cluster.
ANYWHERE = ({"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}})


def namespace_peer(namespace: str) -> dict[str, Any]:
    """A NetworkPolicy peer: every pod of the namespace named."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}}}


def pod_peer(labels: Mapping[str, str], namespace: str | None = None) -> dict[str, Any]:
    """A NetworkPolicy peer: the pods with these labels, in the policy's own namespace or the one named."""
    return {"podSelector": {"matchLabels": dict(labels)}, **(namespace_peer(namespace) if namespace else {})}


def _peer(pods: Identity) -> dict[str, Any]:
    return pod_peer(pods.pod_labels, pods.namespace)


def ingress_network_policy_spec(app: str, port: int, callers: list[Caller]) -> dict[str, Any]:
    """Only the callers' pods may open connections to `app`'s pods, on its port: the call graph, below the mesh."""
    return {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [_peer(caller.pods) for caller in callers if caller.pods],
                         "ports": tcp_ports(port)}]}


def egress_network_policy_spec(pod_labels: dict[str, str], destinations: list[Destination]) -> dict[str, Any]:
    """Where these pods may connect besides DNS and istiod (the namespace-wide rules): their callees and data."""
    rules = [{"to": [pod_peer(dict(d.pod_labels))] if not d.outside else list(ANYWHERE), "ports": tcp_ports(d.port)}
             for d in destinations]
    return {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Egress"], "egress": rules}


def namespace_wide_policies() -> dict[str, dict[str, Any]]:
    """What opens a fenced namespace: every pod denied both ways, then DNS for all of them."""
    return {"default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            "allow-dns": {"podSelector": {}, "policyTypes": ["Egress"],
                          "egress": [{"ports": [{"protocol": "UDP", "port": DNS_PORT}, *tcp_ports(DNS_PORT)]}]}}


def tcp_ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def outbound_policy(production: bool) -> dict[str, Any]:
    """What every Sidecar of the app says about hosts outside the registry: nothing (mesh default), or REGISTRY_ONLY."""
    return {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}} if production else {}
