"""Istio's namespace fenced like the app's: deny by default, then exactly the connections istiod, the ingress gateway
and the add-ons need, each on the port the pinned chart or Istio release serves it on.

What each workload needs was read from the charts of the pinned versions and Istio's sources (docs/security.md,
"Istio's namespace"); the real-cluster tiers check that every pod the real charts render is selected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builders.access import ANYWHERE, CONTROL_PLANE_PORT, namespace_peer, namespace_wide_policies, pod_peer, tcp_ports
from builders.addons import PROMETHEUS_PORT, ZIPKIN_PORT
from builders.istio_values import GATEWAY_SELECTOR
from domain.catalogue import CATALOGUE, FRONTEND
from domain.mesh import ISTIO_NAMESPACE

if TYPE_CHECKING:
    from builders.addons import AddonVersions
    from config.platform import AppStack
    from config.settings import Settings

ISTIOD_PODS = {"app": "istiod"}  # istiod's pods in both lines, with or without a revision
TRACING_PODS = {"app": "tracing"}  # the tracing backend this stack runs itself
MONITORING_PORT = 15014  # istiod's metrics (and, for Kiali 1.x, its version)
WEBHOOK_PORT = 15017  # istiod's injection and validation webhooks, behind its Service's 443
ENVOY_METRICS_PORT = 15090  # the gateway's Envoy statistics, which Prometheus' ingress-gateway job scrapes
MERGED_METRICS_PORT = 15020  # a sidecar's agent: the app's and Envoy's metrics merged, for the kubernetes-pods job
# The gateway's listeners (Gateway ports 80 and 443 land on 8080 and 8443, istio_values.py) and its health check.
GATEWAY_LISTENER_PORTS = (8080, 8443, 15021)
KIALI_METRICS_PORT = 9090  # Kiali's pods carry prometheus.io/scrape, so the kubernetes-pods job scrapes them
HTTPS_PORT = 443
# The API server is reached by address, not as a pod: its Service's 443, or the port behind it once the CNI has
# translated the Service address (6443 on kubeadm, kind and most managed clusters).
API_SERVER_PORTS = (443, 6443)


def _rule(direction: str, peers: list[dict[str, Any]] | tuple[dict[str, Any], ...] | None, ports: tuple[int, ...]) -> dict[str, Any]:
    """One ingress or egress rule; no peers means from or to anywhere."""
    rule: dict[str, Any] = {"ports": tcp_ports(*ports)}
    if peers is not None:
        rule["from" if direction == "ingress" else "to"] = list(peers)
    return rule


def _policy(pods: dict[str, str], ingress: list[dict[str, Any]], egress: list[dict[str, Any]]) -> dict[str, Any]:
    """A NetworkPolicy spec that opens these rules; a direction with none stays closed by the namespace's default-deny
    (an empty list would be dropped by the API server, and the live object would differ from the declared one)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pods)},
                            "policyTypes": [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules]}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return spec


@dataclass(frozen=True)
class IstioNamespaceFence:
    """The workloads in Istio's namespace, which of them this stack runs, and whom each must reach."""

    app_namespaces: tuple[str, ...]  # the stack's own, then its app stacks' (config/platform.py)
    frontend_port: int  # the front end's pods, which the gateway forwards to
    gateway_watches_secrets: bool  # Istio 1.6's gateway agent reads its TLS Secrets from the API server itself
    prometheus: dict[str, str] | None  # each add-on's pod labels, None when it is off
    grafana: dict[str, str] | None
    kiali: dict[str, str] | None
    grafana_downloads: bool  # Grafana fetches Istio's dashboards over HTTPS as it starts
    kiali_reads_istiod: bool  # Kiali 1.x asks istiod's monitoring port for its version; 2.x goes through the API server
    tracing_query_port: int | None  # the tracing backend's query port, None without tracing
    kiali_reads_traces: bool
    api_server_cidrs: tuple[str, ...] = ()  # none given: the API server may be anywhere
    namespace: str = ISTIO_NAMESPACE

    @property
    def _api_server(self) -> list[dict[str, Any]]:
        """Where the API server is: its given addresses, else anywhere (the address differs per cluster)."""
        return [{"ipBlock": {"cidr": cidr}} for cidr in self.api_server_cidrs] or list(ANYWHERE)

    def _sidecars(self) -> list[dict[str, Any]]:
        """Every proxy of the mesh: the app namespaces' sidecars and the ingress gateway."""
        return [*map(namespace_peer, self.app_namespaces), pod_peer(GATEWAY_SELECTOR)]

    def policies(self) -> dict[str, dict[str, Any]]:
        """NetworkPolicy name -> spec, for Istio's namespace."""
        policies = {
            **namespace_wide_policies(),
            "istiod": self._istiod(),
            "ingress-gateway": self._gateway(),
        }
        for name, pods, build in (("prometheus", self.prometheus, self._prometheus), ("grafana", self.grafana, self._grafana),
                                  ("kiali", self.kiali, self._kiali)):
            if pods is not None:
                policies[name] = build(pods)
        if self.tracing_query_port is not None:
            policies["tracing"] = self._tracing(self.tracing_query_port)
        return policies

    def _istiod(self) -> dict[str, Any]:
        ingress = [_rule("ingress", self._sidecars(), (CONTROL_PLANE_PORT,)),
                   # The API server calls the webhooks from its own address, which no pod selector names.
                   _rule("ingress", self._api_server if self.api_server_cidrs else None, (WEBHOOK_PORT,))]
        monitors = [pod_peer(pods) for pods in (self.prometheus, self.kiali if self.kiali_reads_istiod else None) if pods]
        if monitors:
            ingress.append(_rule("ingress", monitors, (MONITORING_PORT,)))
        return _policy(ISTIOD_PODS, ingress, [_rule("egress", self._api_server, API_SERVER_PORTS)])

    def _gateway(self) -> dict[str, Any]:
        ingress = [_rule("ingress", None, GATEWAY_LISTENER_PORTS)]
        if self.prometheus:
            ingress.append(_rule("ingress", [pod_peer(self.prometheus)], (ENVOY_METRICS_PORT,)))
        egress = [_rule("egress", [pod_peer(ISTIOD_PODS)], (CONTROL_PLANE_PORT,)),
                  _rule("egress", [pod_peer({"app": FRONTEND}, namespace) for namespace in self.app_namespaces], (self.frontend_port,))]
        if self.tracing_query_port is not None:
            egress.append(_rule("egress", [pod_peer(TRACING_PODS)], (ZIPKIN_PORT,)))
        if self.gateway_watches_secrets:
            egress.append(_rule("egress", self._api_server, API_SERVER_PORTS))
        return _policy(GATEWAY_SELECTOR, ingress, egress)

    def _prometheus(self, pods: dict[str, str]) -> dict[str, Any]:
        readers = [pod_peer(reader) for reader in (self.grafana, self.kiali) if reader]
        egress = [_rule("egress", self._api_server, API_SERVER_PORTS),  # service discovery
                  _rule("egress", [pod_peer(ISTIOD_PODS)], (MONITORING_PORT,)),
                  _rule("egress", [pod_peer(GATEWAY_SELECTOR)], (ENVOY_METRICS_PORT,)),
                  _rule("egress", list(map(namespace_peer, self.app_namespaces)), (MERGED_METRICS_PORT,))]
        if self.kiali:
            egress.append(_rule("egress", [pod_peer(self.kiali)], (KIALI_METRICS_PORT,)))
        return _policy(pods, [_rule("ingress", readers, (PROMETHEUS_PORT,))] if readers else [], egress)

    def _grafana(self, pods: dict[str, str]) -> dict[str, Any]:
        egress = [_rule("egress", [pod_peer(self.prometheus)], (PROMETHEUS_PORT,))] if self.prometheus else []
        if self.grafana_downloads:
            egress.append(_rule("egress", ANYWHERE, (HTTPS_PORT,)))
        # No ingress: its UI is reached by `kubectl port-forward`, which no NetworkPolicy sees.
        return _policy(pods, [], egress)

    def _kiali(self, pods: dict[str, str]) -> dict[str, Any]:
        egress = [_rule("egress", self._api_server, API_SERVER_PORTS)]
        if self.prometheus:
            egress.append(_rule("egress", [pod_peer(self.prometheus)], (PROMETHEUS_PORT,)))
        if self.kiali_reads_traces and self.tracing_query_port is not None:
            egress.append(_rule("egress", [pod_peer(TRACING_PODS)], (self.tracing_query_port,)))
        if self.kiali_reads_istiod:
            egress.append(_rule("egress", [pod_peer(ISTIOD_PODS)], (MONITORING_PORT,)))
        ingress = [_rule("ingress", [pod_peer(self.prometheus)], (KIALI_METRICS_PORT,))] if self.prometheus else []
        return _policy(pods, ingress, egress)

    def _tracing(self, query_port: int) -> dict[str, Any]:
        ingress = [_rule("ingress", self._sidecars(), (ZIPKIN_PORT,))]
        if self.kiali and self.kiali_reads_traces:
            ingress.append(_rule("ingress", [pod_peer(self.kiali)], (query_port,)))
        return _policy(TRACING_PODS, ingress, [])


def istio_namespace_fence(settings: Settings, addons: AddonVersions, dashboards_shipped: bool,
                          app_stacks: tuple[AppStack, ...] = ()) -> IstioNamespaceFence:
    """The fence of this stack's Istio namespace: which add-ons it runs, on which Istio line, for which namespaces."""
    observability = settings.observability
    tracing = observability.tracing
    kiali_reads_traces = observability.kiali and tracing.enabled and tracing.backend == "jaeger"
    return IstioNamespaceFence(
        app_namespaces=(settings.app_namespace, *(app.settings.app_namespace for app in app_stacks)),
        frontend_port=CATALOGUE[FRONTEND].port,
        gateway_watches_secrets=settings.istio.minor == "1.6",
        prometheus=dict(addons.prometheus_pods) if observability.prometheus else None,
        grafana=dict(addons.grafana_pods) if observability.grafana else None,
        kiali=dict(addons.kiali_pods) if observability.kiali else None,
        grafana_downloads=observability.grafana and not dashboards_shipped and bool(addons.grafana_dashboards),
        kiali_reads_istiod=not addons.kiali_v2,
        tracing_query_port=addons.tracing[tracing.backend].query_port if tracing.enabled else None,
        kiali_reads_traces=kiali_reads_traces,
        api_server_cidrs=tuple(settings.security.api_server_cidrs),
    )
