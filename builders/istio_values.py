"""The values of Istio's Helm charts (base, istiod, the ingress gateway) for one install, per Istio release, and
the install's facts other objects depend on (the gateway's labels and account, whether sidecars need the API token).

Every key is read by the pinned chart of its release: Istio 1.6.14's archive charts (1.1.0) and the 1.30.3 charts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import IngressGatewaySettings, IstioSettings, Resources, TracingSettings

from domain.mesh import ISTIO_NAMESPACE

# The ingress gateway's pod labels; Gateways select on them.
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
# Every label the 1.6 gateway chart gives the gateway pods from its values (gateways.istio-ingressgateway.labels).
GATEWAY_POD_LABELS_1_6 = {"app": "istio-ingressgateway", **GATEWAY_SELECTOR}



def _resources(resources: Resources) -> dict[str, Any]:
    return resources.model_dump(mode="json")


# The runtime's default seccomp profile on Istio's own pods: Istio 1.6's charts take pod annotations only (and the
# clusters it runs on, 1.18 and older, know only the annotation); current charts take the securityContext field.
SECCOMP_ANNOTATION = {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
UNPRIVILEGED_PORTS = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
RUNTIME_DEFAULT = {"type": "RuntimeDefault"}


def global_values(istio: IstioSettings, tracing: TracingSettings, pull_policy: str) -> dict[str, Any]:
    values: dict[str, Any] = {"hub": istio.hub, "tag": istio.image_tag, "istioNamespace": ISTIO_NAMESPACE,
                              "imagePullPolicy": pull_policy}
    if istio.minor != "1.6":
        values["proxy"] = {"seccompProfile": RUNTIME_DEFAULT}  # every injected sidecar, the gateway's included
    if istio.minor == "1.6":
        # third-party-jwt needs the API server to issue projected service-account tokens (GKE, EKS, AKS and
        # kubeadm 1.20+ do); kind and older kubeadm clusters at 1.18 need first-party-jwt.
        values["jwtPolicy"] = istio.jwt_policy
        # istiod's budget; the gateway chart's own selects pods by a label they do not carry (see gateway_values).
        values["defaultPodDisruptionBudget"] = {"enabled": istio.ingress_gateway.pod_disruption_budget}
        if tracing.enabled:
            values["tracer"] = {"zipkin": {"address": f"zipkin.{ISTIO_NAMESPACE}:9411"}}
    return values


def base_values() -> dict[str, Any]:
    # The base chart reads only these of the globals (1.6 and 1.30): the rest would be values no template uses.
    return {"global": {"istioNamespace": ISTIO_NAMESPACE}}


def mesh_config(istio: IstioSettings, tracing: TracingSettings) -> dict[str, Any]:
    mesh = istio.mesh_config
    config: dict[str, Any] = {
        "accessLogFile": mesh.access_log_file,
        "outboundTrafficPolicy": {"mode": mesh.outbound_traffic_policy},
        "enableTracing": tracing.enabled,
        "enablePrometheusMerge": True,
    }
    if tracing.enabled:
        config["defaultConfig"] = {"tracing": {"sampling": tracing.sampling,
                                               "zipkin": {"address": f"zipkin.{ISTIO_NAMESPACE}:9411"}}}
    return config


def istiod_values(istio: IstioSettings, tracing: TracingSettings, *, production: bool, pull_policy: str) -> dict[str, Any]:
    return {
        "global": global_values(istio, tracing, pull_policy),
        "revision": istio.revision,
        "meshConfig": mesh_config(istio, tracing),
        "pilot": {
            "resources": _resources(istio.pilot_resources),
            "traceSampling": tracing.sampling,
            # The chart scales istiod with an HPA by default and then ignores replicaCount; say so, and set its floor.
            "autoscaleEnabled": True,
            "autoscaleMin": 2 if production else 1,
            **({"podAnnotations": SECCOMP_ANNOTATION} if istio.minor == "1.6" else {"seccompProfile": RUNTIME_DEFAULT}),
        },
        # kubelet probes are plain HTTP; with STRICT mTLS the sidecar must answer them for the app.
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": True},
    }


def _gateway_ports(gateway: IngressGatewaySettings) -> list[dict[str, Any]]:
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


def gateway_values(istio: IstioSettings, tracing: TracingSettings, pull_policy: str) -> dict[str, Any]:
    gateway = istio.ingress_gateway
    if istio.minor == "1.6":
        return {
            # The chart's budget selects `release: <release name>`, but it labels the pods `release: istio` (and only
            # in istio-system), so under our release name it would select no pod. IstioMesh makes one that does.
            "global": {**global_values(istio, tracing, pull_policy), "defaultPodDisruptionBudget": {"enabled": False}},
            "revision": istio.revision,
            "gateways": {"istio-ingressgateway": {
                "type": gateway.service_type,
                "ports": _gateway_ports(gateway),
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
        "service": {"type": gateway.service_type, "ports": _gateway_ports(gateway)},
        "replicaCount": gateway.replicas,
        "autoscaling": {
            "enabled": gateway.autoscaling.enabled,
            "minReplicas": gateway.autoscaling.min_replicas,
            "maxReplicas": gateway.autoscaling.max_replicas,
            "targetCPUUtilizationPercentage": gateway.autoscaling.target_cpu_percent,
        },
        "resources": _resources(gateway.resources),
        # Given any pod context, the chart drops its own, which only lets the proxy bind ports below 1024: that
        # sysctl is kept beside the runtime's default seccomp profile (templates/deployment.yaml at 1.30.3).
        "securityContext": {"seccompProfile": RUNTIME_DEFAULT, "sysctls": [UNPRIVILEGED_PORTS]},
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
