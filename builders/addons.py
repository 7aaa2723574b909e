"""What each Istio release's add-ons run, pinned: the Prometheus, Grafana and Kiali charts, Kiali's image, the
tracing backends, Istio's Grafana dashboards, and the ports they serve on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from builders.charts import Chart
from domain.images import TRACING_IMAGES

if TYPE_CHECKING:
    from config.settings import ObservabilitySettings


@dataclass(frozen=True)
class TracingBackend:
    """How one tracing backend runs: image, ports and start-up; Istio sends it Zipkin spans on 9411 either way."""

    image: str
    query_port: int  # the UI, behind the `tracing` Service on port 80
    health_path: str
    health_port: int
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    config: dict[str, Any] | None = None  # a config file, mounted at CONFIG_DIR
    ui_path: str = ""


@dataclass(frozen=True)
class AddonVersions:
    """What one Istio release runs with, pinned. Sources are noted per release."""

    prometheus: Chart
    grafana: Chart
    kiali: Chart
    kiali_image: str
    kiali_v2: bool  # Kiali 2 renamed in_cluster_url to internal_url
    grafana_without_token: dict[str, Any]  # the chart version's key for not mounting the API token
    tracing: dict[str, TracingBackend]
    # The pod labels each chart version gives its server's pods under our values, which the NetworkPolicies select
    # (the real-cluster tiers check them against what the real charts render).
    prometheus_pods: dict[str, str]
    grafana_pods: dict[str, str]
    kiali_pods: dict[str, str]
    # Istio's own dashboards where they are not shipped beside the charts: name -> file in Istio's repository.
    grafana_dashboards: dict[str, str] = field(default_factory=dict)


PROMETHEUS_REPO = "https://prometheus-community.github.io/helm-charts"
ISTIO_DASHBOARDS_URL = "https://raw.githubusercontent.com/istio/istio"
GRAFANA_REPO = "https://grafana.github.io/helm-charts"
KIALI_REPO = "https://kiali.org/helm-charts"
CONFIG_DIR = "/etc/tracing"

# Jaeger v2 as Istio's current add-on runs it (samples/addons/jaeger.yaml), with in-memory storage.
_JAEGER_V2_CONFIG: dict[str, Any] = {
    "service": {
        "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
        "pipelines": {"traces": {"receivers": ["otlp", "zipkin"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}},
    },
    "extensions": {
        "healthcheckv2": {"use_v2": True, "http": {"endpoint": "0.0.0.0:13133"}},
        "jaeger_query": {"base_path": "/jaeger", "storage": {"traces": "memory_storage"}},
        "jaeger_storage": {"backends": {"memory_storage": {"memory": {"max_traces": 50000}}}},
    },
    "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}},
                  "zipkin": {"endpoint": "0.0.0.0:9411"}},
    "processors": {"batch": {}},
    "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory_storage"}},
}

ADDONS: dict[str, AddonVersions] = {
    # Istio 1.6 on Kubernetes 1.18: Prometheus and Grafana charts as Istio's own add-on generator pinned them
    # (manifests/addons/gen.sh), both from before the charts required Kubernetes 1.19 or set seccompProfile, which
    # 1.18 rejects. Kiali's compatibility table pairs Istio 1.6 with Kiali 1.18-1.21, none of which was published as
    # a chart; 1.22 is the oldest kiali-server chart. Jaeger 1.17 and Zipkin 2.21 are what Istio 1.6's add-ons ran.
    "1.6": AddonVersions(
        prometheus=Chart(PROMETHEUS_REPO, "prometheus", "19.6.1"),
        grafana=Chart(GRAFANA_REPO, "grafana", "6.31.1"),
        kiali=Chart(KIALI_REPO, "kiali-server", "1.22.0"),
        kiali_image="v1.22.0",
        kiali_v2=False,
        grafana_without_token={"serviceAccount": {"autoMount": False}},  # grafana 6.31.1 templates/serviceaccount.yaml
        prometheus_pods={"app": "prometheus", "component": "server"},  # prometheus 19.6.1 templates/_helpers.tpl
        grafana_pods={"app.kubernetes.io/name": "grafana"},  # grafana 6.31.1 grafana.selectorLabels
        kiali_pods={"app.kubernetes.io/name": "kiali"},  # kiali-server 1.22.0, named kiali by our nameOverride
        tracing={
            "jaeger": TracingBackend(
                TRACING_IMAGES["1.6"]["jaeger"], 16686, "/", 14269, ui_path="/jaeger",
                # 1.17 names the Zipkin port COLLECTOR_ZIPKIN_HTTP_PORT (renamed in 1.22).
                env={"COLLECTOR_ZIPKIN_HTTP_PORT": "9411", "SPAN_STORAGE_TYPE": "memory", "MEMORY_MAX_TRACES": "50000",
                     "QUERY_BASE_PATH": "/jaeger"}),
            "zipkin": TracingBackend(TRACING_IMAGES["1.6"]["zipkin"], 9411, "/health", 9411,
                                     env={"STORAGE_TYPE": "mem"}),
        },
    ),
    # Current Istio: the versions Istio's add-on generator pins (kiali-server 2.11, prometheus 27.20, grafana 9.2)
    # and the Jaeger its samples run.
    "1.30": AddonVersions(
        prometheus=Chart(PROMETHEUS_REPO, "prometheus", "27.20.0"),
        grafana=Chart(GRAFANA_REPO, "grafana", "9.2.2"),
        kiali=Chart(KIALI_REPO, "kiali-server", "2.11.0"),
        kiali_image="v2.11.0",  # the chart's own default; v2.11 is a moving tag
        kiali_v2=True,
        grafana_without_token={"automountServiceAccountToken": False},  # grafana 9.2.2 templates/_pod.tpl
        # prometheus 27.20.0 labels its pods the recommended way only (templates/_helpers.tpl): no `app`.
        prometheus_pods={"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"},
        grafana_pods={"app.kubernetes.io/name": "grafana"},
        kiali_pods={"app.kubernetes.io/name": "kiali"},  # kiali-server 2.11.0, fixed in its templates/_helpers.tpl
        tracing={
            "jaeger": TracingBackend(TRACING_IMAGES["1.30"]["jaeger"], 16686, "/status", 13133, ui_path="/jaeger",
                                     args=("--config", f"{CONFIG_DIR}/config.yaml"), config=_JAEGER_V2_CONFIG),
            "zipkin": TracingBackend(TRACING_IMAGES["1.30"]["zipkin"], 9411, "/health", 9411,
                                     env={"STORAGE_TYPE": "mem"}),
        },
        # The dashboards of the installed release, fetched by Grafana at start from Istio's repository at the
        # release's tag (the ones its samples/addons/grafana.yaml bundles); grafana.com's ids would pin no release.
        grafana_dashboards={"istio-mesh": "istio-mesh-dashboard.gen.json", "istio-service": "istio-service-dashboard.json",
                            "istio-workload": "istio-workload-dashboard.json",
                            "istio-performance": "istio-performance-dashboard.json",
                            "istio-control-plane": "pilot-dashboard.gen.json"},
    ),
}

# Istio 1.6 ships its dashboards in the release archive beside the charts; Mixer's is left out (telemetry v2 has no Mixer).
ISTIO_DASHBOARD_FILES = {
    "istio": ("pilot-dashboard.json", "istio-performance-dashboard.json"),
    "istio-services": ("istio-mesh-dashboard.json", "istio-service-dashboard.json", "istio-workload-dashboard.json"),
}
ISTIO_DASHBOARD_NAMES = tuple(name for names in ISTIO_DASHBOARD_FILES.values() for name in names)
PROMETHEUS_PORT, GRAFANA_PORT, KIALI_PORT, ZIPKIN_PORT = 9090, 3000, 20001, 9411


def addon_versions(istio_minor: str) -> AddonVersions:
    return ADDONS[istio_minor]


def enabled_charts(settings: ObservabilitySettings, addons: AddonVersions) -> list[Chart]:
    """The add-on charts this stack installs."""
    toggles = {addons.prometheus: settings.prometheus, addons.grafana: settings.grafana, addons.kiali: settings.kiali}
    return [chart for chart, enabled in toggles.items() if enabled]
