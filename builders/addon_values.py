"""The add-ons' Helm values (Prometheus with the service-level rules, Grafana, Kiali), Istio's own dashboards, and how
a workstation reaches each UI. Every key is read by the pinned chart of its version (builders/addons.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi

from builders.addons import (
    GRAFANA_PORT,
    ISTIO_DASHBOARD_FILES,
    ISTIO_DASHBOARD_NAMES,
    ISTIO_DASHBOARDS_URL,
    KIALI_PORT,
    PROMETHEUS_PORT,
    AddonVersions,
)
from builders.charts import PROJECT_ROOT, ChartSource
from builders.compat import KubernetesApis
from builders.monitoring_rules import MonitoredService, alerting_rules, recording_rules

if TYPE_CHECKING:
    from config.settings import ImageSettings, ObservabilitySettings

# Grafana's Service keeps its charts' default port. Grafana 6.31.1 also declares the Service's port on the container,
# beside Grafana's own 3000 (templates/_pod.tpl), so a Service on 3000 made the same port twice, which the API
# server's field tracking refuses (the 1.18 real-cluster tier's server logged it for every update).
GRAFANA_SERVICE_PORT = 80
GRAFANA_ADMIN_SECRET = "grafana-admin"
# The add-ons read the mesh from outside it, as Istio's own do. Istio 1.6's injector reads only the annotation;
# current Istio prefers the label: both are set wherever a chart takes them.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
ADDON_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}
# The small helpers the charts run beside their servers (Prometheus' config reloader, Grafana's dashboard download).
HELPER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
# Without a volume, Prometheus keeps its data on an emptyDir: capped, so a busy mesh cannot fill the node's disk
# (past it the kubelet evicts the pod, which loses only what it would lose on any restart).
PROMETHEUS_SCRATCH_LIMIT = "4Gi"
CONFINED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                      "capabilities": {"drop": ["ALL"]}}
KIALI_CONTAINER = {**CONFINED_CONTAINER, "privileged": False}


@dataclass(frozen=True)
class AddonPlan:
    """What the add-ons' values are made from: the settings, the pinned versions, the monitored services, the mesh."""

    settings: ObservabilitySettings
    addons: AddonVersions
    services: list[MonitoredService]
    istio_dashboards: dict[str, dict[str, str]]
    istio_version: str
    namespace: str  # the Istio namespace, where Istio's add-ons live and its mesh config points
    gateway_labels: dict[str, str]
    production: bool
    kubernetes: KubernetesApis
    images: ImageSettings  # the tracing backend's digest and pull policy


def _pod_seccomp(args: AddonPlan) -> dict[str, Any]:
    """A chart's pod securityContext value with the runtime's default seccomp profile, where the field exists (up to
    Kubernetes 1.18 the pod annotation carries it); Helm merges it into the chart's default context."""
    profile = args.kubernetes.seccomp_profile
    return {"securityContext": {"seccompProfile": profile}} if profile else {}


class DashboardsMissingError(pulumi.RunError):
    """Istio 1.6's dashboards are not beside its charts; raised before any resource is registered."""


def istio_dashboards(charts: ChartSource, settings: ObservabilitySettings) -> dict[str, dict[str, str]]:
    """Istio's own dashboards per Grafana folder, compact JSON by file name; empty without Grafana, or where Grafana
    fetches them by id."""
    if not settings.grafana or charts.dashboards is None:
        return {}
    folder = Path(charts.dashboards)
    folder = folder if folder.is_absolute() else PROJECT_ROOT / folder
    missing = [name for name in ISTIO_DASHBOARD_NAMES if not (folder / name).is_file()]
    if missing:
        raise DashboardsMissingError(f"Istio's Grafana dashboards {', '.join(missing)} are not in {folder}; they come with "
                                     "the release archive: run `make istio-charts`, or set observability.grafana to false")
    # Compact JSON: the dashboards share ConfigMaps, which hold at most 1 MiB.
    return {provider: {name: json.dumps(json.loads((folder / name).read_text()), separators=(",", ":")) for name in names}
            for provider, names in ISTIO_DASHBOARD_FILES.items()}


def _host(service: str, namespace: str, port: int, path: str = "") -> str:
    return f"http://{service}.{namespace}:{port}{path}"


# ---- Prometheus --------------------------------------------------------------------------------

def _keep(labels: list[str], regex: str) -> dict[str, Any]:
    return {"source_labels": labels, "action": "keep", "regex": regex}


_POD_LABELS = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]


def scrape_configs(namespace: str, gateway_labels: dict[str, str]) -> list[dict[str, Any]]:
    """istiod and the ingress gateway by name, every other annotated pod (the sidecars' merged metrics) once.

    Each target is scraped by exactly one job: a pod scraped twice would count every request twice.
    """
    gateway_label, gateway_value = next(iter(gateway_labels.items()))
    gateway_meta = f"__meta_kubernetes_pod_label_{gateway_label}"
    return [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
        {"job_name": "istiod",
         "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [namespace]}}],
         "relabel_configs": [_keep(["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
                                   "istiod(-.+)?;http-monitoring")]},
        {"job_name": "ingress-gateway", "metrics_path": "/stats/prometheus",
         "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
         "relabel_configs": [_keep([gateway_meta], gateway_value),
                             _keep(["__meta_kubernetes_pod_container_port_name"], ".*-envoy-prom"), *_POD_LABELS]},
        {"job_name": "kubernetes-pods",
         "kubernetes_sd_configs": [{"role": "pod"}],
         "relabel_configs": [
             _keep(["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true"),
             {"source_labels": [gateway_meta], "action": "drop", "regex": gateway_value},
             {"source_labels": ["__meta_kubernetes_pod_label_app"], "action": "drop", "regex": "istiod"},
             {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "drop", "regex": "Pending|Succeeded|Failed"},
             {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace",
              "target_label": "__metrics_path__", "regex": "(.+)"},
             {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"], "action": "replace",
              "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2", "target_label": "__address__"},
             {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
             *_POD_LABELS,
         ]},
    ]


RULE_FILES = {"recording_rules.yml": "/etc/config/recording_rules.yml", "alerting_rules.yml": "/etc/config/alerting_rules.yml"}


def prometheus_files(args: AddonPlan) -> dict[str, Any]:
    """The chart's serverFiles: prometheus.yml's scrape jobs and rule files, and the rules themselves."""
    return {
        "prometheus.yml": {"rule_files": list(RULE_FILES.values()), "scrape_configs": scrape_configs(args.namespace, args.gateway_labels)},
        "recording_rules.yml": recording_rules(args.services),
        "alerting_rules.yml": alerting_rules(args.services, args.production),
    }


def prometheus_values(args: AddonPlan) -> dict[str, Any]:
    settings = args.settings
    return {
        # Only the server: alert routing, node and cluster-state exporters are outside this stack's concern.
        "alertmanager": {"enabled": False},
        "prometheus-pushgateway": {"enabled": False},
        "kube-state-metrics": {"enabled": False},
        "prometheus-node-exporter": {"enabled": False},
        "configmapReload": {"prometheus": {"resources": HELPER_RESOURCES,
                                           "containerSecurityContext": CONFINED_CONTAINER,
                                           "image": {"pullPolicy": args.images.pull_policy}}},
        "server": {
            "fullnameOverride": "prometheus",
            "podLabels": NO_SIDECAR,
            "podAnnotations": {**NO_SIDECAR, **args.kubernetes.seccomp_annotations},
            **_pod_seccomp(args),
            # Prometheus writes only its data folder (a volume or the capped emptyDir) and runs as the chart's 65534.
            "containerSecurityContext": CONFINED_CONTAINER,
            "image": {"pullPolicy": args.images.pull_policy},
            "service": {"type": "ClusterIP", "servicePort": PROMETHEUS_PORT},
            "retention": settings.retention,
            "persistentVolume": {"enabled": True, "size": settings.storage_size} if settings.storage_size else {"enabled": False},
            "emptyDir": {"sizeLimit": PROMETHEUS_SCRATCH_LIMIT},
            "resources": ADDON_RESOURCES,
            "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        },
        "serverFiles": prometheus_files(args),
    }


# ---- Grafana -----------------------------------------------------------------------------------

def _provider(name: str) -> dict[str, Any]:
    return {"name": name, "orgId": 1, "folder": name, "type": "file", "disableDeletion": True,
            "options": {"path": f"/var/lib/grafana/dashboards/{name}"}}


# Grafana's chart downloads with `curl -skf` by default (no TLS check). Verified TLS, redirects followed, and an
# HTTP error fails Grafana's start instead of leaving an empty dashboard. No `datasource` rewrite: the chart pipes
# that through sed, which would hide a failed download, and Istio's dashboards pick the datasource themselves.
DASHBOARD_CURL_OPTIONS = "-sSLf"


def fetched_dashboard(istio_version: str, file: str) -> dict[str, str]:
    return {"url": f"{ISTIO_DASHBOARDS_URL}/{istio_version}/manifests/addons/dashboards/{file}",
            "curlOptions": DASHBOARD_CURL_OPTIONS}


def grafana_values(args: AddonPlan, dashboard_maps: dict[str, str]) -> dict[str, Any]:
    fetched = {} if args.istio_dashboards else args.addons.grafana_dashboards
    providers = [*dashboard_maps, *(["istio"] if fetched else [])]
    values: dict[str, Any] = {
        "rbac": {"pspEnabled": False},
        "testFramework": {"enabled": False},
        "podLabels": {"app": "grafana", **NO_SIDECAR},
        "podAnnotations": {**NO_SIDECAR, **args.kubernetes.seccomp_annotations},
        "image": {"pullPolicy": args.images.pull_policy},
        # Grafana reads dashboards from mounted ConfigMaps and its own files, never the Kubernetes API.
        **args.addons.grafana_without_token,
        # Not a read-only root: Grafana's image writes its log file under /var/log/grafana.
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        # The admin password is generated and read from a Secret; anonymous access and sign-up stay off.
        "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
        "grafana.ini": {"auth.anonymous": {"enabled": False}, "users": {"allow_sign_up": False},
                        "analytics": {"reporting_enabled": False, "check_for_updates": False}},
        "service": {"type": "ClusterIP", "port": GRAFANA_SERVICE_PORT},
        "persistence": {"enabled": False},
        "resources": ADDON_RESOURCES,
        "datasources": {"datasources.yaml": {"apiVersion": 1, "datasources": [{
            "name": "Prometheus", "type": "prometheus", "access": "proxy", "isDefault": True,
            "url": _host("prometheus", args.namespace, PROMETHEUS_PORT), "jsonData": {"timeInterval": "15s"}}]}},
        "dashboardProviders": {"dashboardproviders.yaml": {"apiVersion": 1, "providers": [_provider(name) for name in providers]}},
        "dashboardsConfigMaps": dashboard_maps,
    }
    if fetched:
        values["dashboards"] = {"istio": {name: fetched_dashboard(args.istio_version, file) for name, file in fetched.items()}}
        # The chart's own security context for the download (no escalation, no capabilities, RuntimeDefault) stays.
        values["downloadDashboards"] = {"resources": HELPER_RESOURCES}
        values["downloadDashboardsImage"] = {"pullPolicy": args.images.pull_policy}
    return values


# ---- Kiali -------------------------------------------------------------------------------------

def kiali_values(args: AddonPlan) -> dict[str, Any]:
    settings, addons, ns = args.settings, args.addons, args.namespace
    internal = "internal_url" if addons.kiali_v2 else "in_cluster_url"
    tracing = settings.tracing
    # Kiali reads traces from Jaeger's query API only.
    jaeger = tracing.enabled and tracing.backend == "jaeger"
    deployment: dict[str, Any] = {"image_version": addons.kiali_image, "service_type": "ClusterIP",
                                  "view_only_mode": args.production, "resources": ADDON_RESOURCES}
    # The Service is `kiali` whatever the chart version's naming defaults: 2.x names everything after
    # deployment.instance_name, 1.x after the usual name overrides.
    naming: dict[str, Any] = {}
    if addons.kiali_v2:
        deployment.update(cluster_wide_access=True, ingress={"enabled": False}, instance_name="kiali", pod_labels=NO_SIDECAR,
                          # Replaces the chart's default context (templates/deployment.yaml at 2.11.0), so restated.
                          security_context={**KIALI_CONTAINER, "seccompProfile": {"type": "RuntimeDefault"}})
    else:
        # The 1.x charts create an Ingress for /kiali by default; nothing here is exposed outside the cluster. They
        # have no pod_labels (and Istio 1.6's injector reads only the annotation).
        deployment.update(accessible_namespaces=["**"], ingress_enabled=False,
                          pod_annotations={**NO_SIDECAR, **args.kubernetes.seccomp_annotations})
        naming = {"nameOverride": "kiali", "fullnameOverride": "kiali"}
    # Kiali 2 would otherwise try Jaeger's gRPC port (16685); Kiali 1.22 speaks HTTP only and has no such key.
    protocol = {"use_grpc": False} if addons.kiali_v2 else {}
    return {
        **naming,
        "istio_namespace": ns,
        # Sign in with a Kubernetes token: no anonymous admin.
        "auth": {"strategy": "token"},
        "deployment": deployment,
        "external_services": {
            "prometheus": {"url": _host("prometheus", ns, PROMETHEUS_PORT)},
            # Grafana admits no anonymous reader, and handing Kiali its admin password would spread it: Kiali's
            # Grafana links stay off; the dashboards are one port-forward away.
            "grafana": {"enabled": False},
            # Jaeger's HTTP query API on the tracing Service.
            "tracing": {"enabled": True, internal: _host("tracing", ns, 80, "/jaeger"), **protocol} if jaeger else {"enabled": False},
        },
    }


def port_forwards(args: AddonPlan) -> dict[str, str]:
    """How to reach each UI from a workstation: nothing is exposed outside the cluster."""
    settings, ns = args.settings, args.namespace
    wanted = {
        "prometheus": (settings.prometheus, f"svc/prometheus {PROMETHEUS_PORT}:{PROMETHEUS_PORT}", f"http://localhost:{PROMETHEUS_PORT}"),
        "grafana": (settings.grafana, f"svc/grafana {GRAFANA_PORT}:{GRAFANA_SERVICE_PORT}", f"http://localhost:{GRAFANA_PORT}"),
        "kiali": (settings.kiali, f"svc/kiali {KIALI_PORT}:{KIALI_PORT}", f"http://localhost:{KIALI_PORT}/kiali"),
        "tracing": (settings.tracing.enabled, "svc/tracing 16686:80",
                    f"http://localhost:16686{args.addons.tracing[settings.tracing.backend].ui_path}"),
    }
    return {name: f"kubectl -n {ns} port-forward {target}  # then open {url}" for name, (on, target, url) in wanted.items() if on}
