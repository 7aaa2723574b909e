"""The Istio install: istio-system, base (CRDs), istiod, the ingress gateway, and the injected app namespace."""

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
from domain.mesh import ISTIO_NAMESPACE, injection_labels


@dataclass(frozen=True)
class IstioMeshArgs:
    istio: IstioSettings
    charts: ChartSource
    tracing: TracingSettings
    app_namespace: str
    production: bool
    kubernetes: KubernetesApis
    image_pull_policy: str = "IfNotPresent"  # images.pullPolicy: istiod's, the gateway's and every sidecar's


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
        istiod = self._release(name, "istiod", istiod_name, charts.istiod, istiod_values(istio, args.tracing, production=args.production, pull_policy=args.image_pull_policy), args, [base])
        gateway = self._release(name, "ingress-gateway", "istio-ingressgateway", charts.gateway, gateway_values(istio, args.tracing, args.image_pull_policy), args, [istiod])
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
        self.sidecars_need_account_token = sidecar_needs_account_token(istio)
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
