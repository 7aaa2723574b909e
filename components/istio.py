"""The Istio install: istio-system, base (CRDs), istiod, the ingress gateway, and the injected app namespace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from builders.charts import ChartRef, ChartSource
from builders.compat import KubernetesApis
from builders.kube import NAMESPACE_LABEL, helm_release, metadata
from config.settings import IstioSettings, Resources, TracingSettings
from domain.mesh import ISTIO_NAMESPACE, injection_labels

# The ingress gateway's pod labels; Gateways select on them.
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
# Every label the 1.6 gateway chart gives the gateway pods from its values (gateways.istio-ingressgateway.labels).
GATEWAY_POD_LABELS_1_6 = {"app": "istio-ingressgateway", **GATEWAY_SELECTOR}


@dataclass(frozen=True)
class IstioMeshArgs:
    istio: IstioSettings
    charts: ChartSource
    tracing: TracingSettings
    app_namespace: str
    production: bool
    kubernetes: KubernetesApis
    image_pull_policy: str = "IfNotPresent"  # images.pullPolicy: istiod's, the gateway's and every sidecar's


def _resources(resources: Resources) -> dict[str, Any]:
    return resources.model_dump(mode="json")


# The runtime's default seccomp profile on Istio's own pods: Istio 1.6's charts take pod annotations only (and the
# clusters it runs on, 1.18 and older, know only the annotation); current charts take the securityContext field.
SECCOMP_ANNOTATION = {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
RUNTIME_DEFAULT = {"type": "RuntimeDefault"}


def global_values(args: IstioMeshArgs) -> dict[str, Any]:
    istio = args.istio
    values: dict[str, Any] = {"hub": istio.hub, "tag": istio.image_tag, "istioNamespace": ISTIO_NAMESPACE,
                              "imagePullPolicy": args.image_pull_policy}
    if istio.minor != "1.6":
        values["proxy"] = {"seccompProfile": RUNTIME_DEFAULT}  # every injected sidecar, the gateway's included
    if istio.minor == "1.6":
        # third-party-jwt needs the API server to issue projected service-account tokens (GKE, EKS, AKS and
        # kubeadm 1.20+ do); kind and older kubeadm clusters at 1.18 need first-party-jwt.
        values["jwtPolicy"] = istio.jwt_policy
        # istiod's budget; the gateway chart's own selects pods by a label they do not carry (see gateway_values).
        values["defaultPodDisruptionBudget"] = {"enabled": istio.ingress_gateway.pod_disruption_budget}
        if args.tracing.enabled:
            values["tracer"] = {"zipkin": {"address": f"zipkin.{ISTIO_NAMESPACE}:9411"}}
    return values


def base_values() -> dict[str, Any]:
    # The base chart reads only these of the globals (1.6 and 1.30): the rest would be values no template uses.
    return {"global": {"istioNamespace": ISTIO_NAMESPACE}}


def mesh_config(args: IstioMeshArgs) -> dict[str, Any]:
    mesh = args.istio.mesh_config
    config: dict[str, Any] = {
        "accessLogFile": mesh.access_log_file,
        "outboundTrafficPolicy": {"mode": mesh.outbound_traffic_policy},
        "enableTracing": args.tracing.enabled,
        "enablePrometheusMerge": True,
    }
    if args.tracing.enabled:
        config["defaultConfig"] = {"tracing": {"sampling": args.tracing.sampling,
                                               "zipkin": {"address": f"zipkin.{ISTIO_NAMESPACE}:9411"}}}
    return config


def istiod_values(args: IstioMeshArgs) -> dict[str, Any]:
    istio = args.istio
    return {
        "global": global_values(args),
        "revision": istio.revision,
        "meshConfig": mesh_config(args),
        "pilot": {
            "resources": _resources(istio.pilot_resources),
            "traceSampling": args.tracing.sampling,
            # The chart scales istiod with an HPA by default and then ignores replicaCount; say so, and set its floor.
            "autoscaleEnabled": True,
            "autoscaleMin": 2 if args.production else 1,
            **({"podAnnotations": SECCOMP_ANNOTATION} if istio.minor == "1.6" else {"seccompProfile": RUNTIME_DEFAULT}),
        },
        # kubelet probes are plain HTTP; with STRICT mTLS the sidecar must answer them for the app.
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": True},
    }


def _gateway_ports(args: IstioMeshArgs) -> list[dict[str, Any]]:
    gateway = args.istio.ingress_gateway
    ports = [
        {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
        {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
    ]
    node_ports = {"http2": gateway.http_node_port, "https": gateway.https_node_port}
    for port in ports:
        if node_ports.get(port["name"]):
            port["nodePort"] = node_ports[port["name"]]
    return ports


def gateway_values(args: IstioMeshArgs) -> dict[str, Any]:
    istio, gateway = args.istio, args.istio.ingress_gateway
    if istio.minor == "1.6":
        return {
            # The chart's budget selects `release: <release name>`, but it labels the pods `release: istio` (and only
            # in istio-system), so under our release name it would select no pod. IstioMesh makes one that does.
            "global": {**global_values(args), "defaultPodDisruptionBudget": {"enabled": False}},
            "revision": istio.revision,
            "gateways": {"istio-ingressgateway": {
                "type": gateway.service_type,
                "ports": _gateway_ports(args),
                "replicaCount": gateway.replicas,
                "autoscaleEnabled": gateway.autoscaling.enabled,
                "autoscaleMin": gateway.autoscaling.min_replicas,
                "autoscaleMax": gateway.autoscaling.max_replicas,
                "cpu": {"targetAverageUtilization": gateway.autoscaling.target_cpu_percent},
                "resources": _resources(gateway.resources),
                "podAnnotations": SECCOMP_ANNOTATION,
                # The chart runs the gateway as root by default, for ports below 1024; it listens on 8080 and 8443.
                # Off, it writes a non-root pod (1337) and a confined container (no escalation, no capabilities,
                # read-only root): templates/deployment.yaml at 1.6.14.
                "runAsRoot": False,
            }},
        }
    values: dict[str, Any] = {
        "revision": istio.revision,
        "labels": dict(GATEWAY_SELECTOR),
        "service": {"type": gateway.service_type, "ports": _gateway_ports(args)},
        "replicaCount": gateway.replicas,
        "autoscaling": {
            "enabled": gateway.autoscaling.enabled,
            "minReplicas": gateway.autoscaling.min_replicas,
            "maxReplicas": gateway.autoscaling.max_replicas,
            "targetCPUUtilizationPercentage": gateway.autoscaling.target_cpu_percent,
        },
        "resources": _resources(gateway.resources),
    }
    if gateway.pod_disruption_budget:
        values["podDisruptionBudget"] = {"minAvailable": 1}
    return values


def gateway_service_account(istio: IstioSettings) -> str:
    # The 1.6 chart names it after the gateway; the current chart after the Helm release.
    return "istio-ingressgateway-service-account" if istio.minor == "1.6" else "istio-ingressgateway"


def sidecar_needs_account_token(istio: IstioSettings) -> bool:
    """Istio 1.6 under first-party-jwt proves a sidecar to istiod with the pod's own ServiceAccount token; a
    third-party JWT (every current Istio) comes in the projected istio-token volume the injector adds, so no pod
    needs the API token mounted."""
    return istio.minor == "1.6" and istio.jwt_policy == "first-party-jwt"


class IstioMesh(pulumi.ComponentResource):
    """Owns the Istio control plane install, the ingress gateway and the app namespace with sidecar injection."""

    control_plane: list[pulumi.Resource]
    # What the app's objects wait for: the CRDs, istiod (its injector and validation webhook) and the injected app
    # namespace. Not the ingress gateway: Helm waits for its load balancer's address, which a cloud may take long to give.
    prerequisites: list[pulumi.Resource]
    app_namespace: pulumi.Output[str]

    def __init__(self, name: str, args: IstioMeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:IstioMesh", name, None, opts)
        istio, charts = args.istio, args.charts

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=metadata(ISTIO_NAMESPACE, labels={NAMESPACE_LABEL: ISTIO_NAMESPACE}),
            opts=pulumi.ResourceOptions(parent=self)
        )
        base = self._release(name, "base", "istio-base", charts.base, base_values(), args, [namespace], with_globals=False)
        istiod_name = f"istiod-{istio.revision}" if istio.revision else "istiod"
        istiod = self._release(name, "istiod", istiod_name, charts.istiod, istiod_values(args), args, [base])
        gateway = self._release(name, "ingress-gateway", "istio-ingressgateway", charts.gateway, gateway_values(args), args, [istiod])
        if istio.minor == "1.6" and istio.ingress_gateway.pod_disruption_budget:
            self._gateway_disruption_budget(args, gateway)

        # Pods created before istiod's injector is up would start without sidecars, so the namespace waits.
        app_namespace = k8s.core.v1.Namespace(
            f"{name}-app-namespace",
            metadata=metadata(args.app_namespace, labels={NAMESPACE_LABEL: args.app_namespace, **injection_labels(istio.revision)}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[istiod], protect=args.production,
                                        retain_on_delete=args.production),
        )

        # Istio custom resources need the CRDs (base) and istiod's validating webhook to answer.
        self.control_plane = [base, istiod]
        self.prerequisites = [base, istiod, app_namespace]
        self.ingress_gateway = gateway
        self.app_namespace = app_namespace.metadata.apply(lambda meta: meta["name"])
        self.gateway_selector = dict(GATEWAY_SELECTOR)
        self.gateway_namespace = ISTIO_NAMESPACE
        self.gateway_service_account = gateway_service_account(istio)
        self.version = istio.version
        self.revision = istio.revision
        self.register_outputs({
            "version": self.version,
            "revision": self.revision,
            "gatewaySelector": self.gateway_selector,
            "gatewayNamespace": self.gateway_namespace,
            "appNamespace": self.app_namespace,
        })

    def _gateway_disruption_budget(self, args: IstioMeshArgs, gateway: k8s.helm.v3.Release) -> None:
        """Istio 1.6: one gateway pod stays through a drain, selected by the labels the pods really carry."""
        policy = args.kubernetes.policy
        policy.PodDisruptionBudget(
            "istio-ingress-gateway-pdb",
            metadata=metadata("istio-ingressgateway", ISTIO_NAMESPACE, GATEWAY_POD_LABELS_1_6),
            spec=policy.PodDisruptionBudgetSpecArgs(
                min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=GATEWAY_POD_LABELS_1_6)),
            # After the release: on a stack that had the chart's budget of the same name, Helm removes it first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )

    def _release(self, name: str, part: str, release_name: str, chart: ChartRef, values: dict[str, Any],
                 args: IstioMeshArgs, after: list[pulumi.Resource], with_globals: bool = True) -> k8s.helm.v3.Release:
        charts = args.charts
        return helm_release(
            f"{name}-{part}", release_name, chart, ISTIO_NAMESPACE, values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            value_files=[charts.global_values] if charts.global_values and with_globals else None,
        )
