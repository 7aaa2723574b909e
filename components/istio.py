"""The mesh an app namespace joins: the Istio install (istio-system, base CRDs, istiod, the ingress gateway) and the
injected app namespace; or, on an app stack, only its namespace on the platform stack's install."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from builders.charts import ChartRef, ChartSource
from builders.compat import KubernetesApis
from builders.istio_values import (
    GATEWAY_POD_LABELS_1_6,
    GATEWAY_SELECTOR,
    base_values,
    gateway_service_account,
    gateway_values,
    istiod_values,
    sidecar_needs_account_token,
)
from builders.kube import NAMESPACE_LABEL, helm_release, metadata
from config.settings import IstioSettings, TracingSettings
from domain.mesh import ISTIO_NAMESPACE, SIDECAR_JWT_POLICY, injection_labels


@dataclass(frozen=True)
class IstioMeshArgs:
    istio: IstioSettings
    charts: ChartSource
    tracing: TracingSettings
    app_namespace: str
    production: bool
    kubernetes: KubernetesApis
    image_pull_policy: str = "IfNotPresent"  # images.pullPolicy: istiod's, the gateway's and every sidecar's


def injected_namespace(resource_name: str, namespace: str, istio: IstioSettings, production: bool,
                       opts: pulumi.ResourceOptions, annotations: dict[str, str] | None = None) -> k8s.core.v1.Namespace:
    """The app namespace, labelled for sidecar injection by this Istio; kept, not deleted, on a production stack."""
    return k8s.core.v1.Namespace(
        resource_name, metadata=metadata(namespace, labels={NAMESPACE_LABEL: namespace, **injection_labels(istio.revision)},
                                         annotations=annotations),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=production, retain_on_delete=production)),
    )


class _JoinedMesh(pulumi.ComponentResource):
    """What the app's components need to know of the mesh they join, the same whoever installed it."""

    control_plane: list[pulumi.Resource]
    # What the app's objects wait for: the CRDs, istiod (its injector and validation webhook) and the injected app
    # namespace. Not the ingress gateway: Helm waits for its load balancer's address, which a cloud may take long to give.
    prerequisites: list[pulumi.Resource]
    app_namespace: pulumi.Output[str]

    def _joined(self, istio: IstioSettings, app_namespace: k8s.core.v1.Namespace) -> None:
        self.app_namespace = app_namespace.metadata.apply(lambda meta: meta["name"])
        self.gateway_selector = dict(GATEWAY_SELECTOR)
        self.gateway_namespace = ISTIO_NAMESPACE
        self.gateway_service_account = gateway_service_account(istio)
        self.sidecars_need_account_token = sidecar_needs_account_token(istio)
        self.version = istio.version
        self.revision = istio.revision

    def _register(self, **more: Any) -> None:
        self.register_outputs({
            "version": self.version,
            "revision": self.revision,
            "gatewaySelector": self.gateway_selector,
            "gatewayNamespace": self.gateway_namespace,
            "appNamespace": self.app_namespace,
            **more,
        })


class IstioMesh(_JoinedMesh):
    """Owns the Istio control plane install, the ingress gateway and the app namespace with sidecar injection."""

    def __init__(self, name: str, args: IstioMeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:IstioMesh", name, None, opts)
        istio, charts = args.istio, args.charts

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=metadata(ISTIO_NAMESPACE, labels={NAMESPACE_LABEL: ISTIO_NAMESPACE}),
            opts=pulumi.ResourceOptions(parent=self)
        )
        base = self._release(name, "base", "istio-base", charts.base, base_values(), args, [namespace], with_globals=False)
        istiod_name = f"istiod-{istio.revision}" if istio.revision else "istiod"
        istiod = self._release(name, "istiod", istiod_name, charts.istiod, istiod_values(istio, args.tracing, production=args.production, pull_policy=args.image_pull_policy), args, [base])
        gateway = self._release(name, "ingress-gateway", "istio-ingressgateway", charts.gateway, gateway_values(istio, args.tracing, args.image_pull_policy), args, [istiod])
        if istio.minor == "1.6" and istio.ingress_gateway.pod_disruption_budget:
            self._gateway_disruption_budget(args, gateway)

        # Pods created before istiod's injector is up would start without sidecars, so the namespace waits.
        app_namespace = injected_namespace(f"{name}-app-namespace", args.app_namespace, istio, args.production,
                                           pulumi.ResourceOptions(parent=self, depends_on=[istiod]))

        # Istio custom resources need the CRDs (base) and istiod's validating webhook to answer.
        self.control_plane = [base, istiod]
        self.prerequisites = [base, istiod, app_namespace]
        self.ingress_gateway = gateway
        self._joined(istio, app_namespace)
        self._register()

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


@dataclass(frozen=True)
class PlatformNamespaceArgs:
    istio: IstioSettings  # the platform's, from its stack file (config/platform.py)
    platform_stack: str
    app_namespace: str
    production: bool


class PlatformNamespace(_JoinedMesh):
    """Owns an app stack's injected namespace on its platform stack's mesh, and the reference to that stack."""

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:PlatformNamespace", name, None, opts)
        # The platform admitted this stack and runs this Istio: checked from its outputs before anything was registered.
        platform = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{args.platform_stack}",
                                         opts=pulumi.ResourceOptions(parent=self))
        # The policy pack reads from it what it reads from istiod's release on the platform: how the sidecars here prove
        # themselves to istiod (first-party-jwt: with the pod's own ServiceAccount token, which the pods then mount).
        app_namespace = injected_namespace(f"{name}-app-namespace", args.app_namespace, args.istio, args.production,
                                           pulumi.ResourceOptions(parent=self), {SIDECAR_JWT_POLICY: args.istio.jwt_policy})
        self.control_plane: list[pulumi.Resource] = []
        self.prerequisites = [app_namespace]
        self._joined(args.istio, app_namespace)
        # Where the platform's add-ons answer: the commands (make promote, e2e) read it from this stack's outputs.
        self.observability = platform.get_output("observability")
        self._register(platformStack=args.platform_stack)
