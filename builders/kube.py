"""Small builders shared by the components: object metadata and Istio custom resources."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from builders.charts import ChartRef

# Versions served by Istio 1.6 and still served by current Istio (1.30): the same stack code runs on both.
ISTIO_API_VERSIONS = {
    "Gateway": "networking.istio.io/v1beta1",
    "VirtualService": "networking.istio.io/v1beta1",
    "DestinationRule": "networking.istio.io/v1beta1",
    "ServiceEntry": "networking.istio.io/v1beta1",
    "Sidecar": "networking.istio.io/v1beta1",
    "EnvoyFilter": "networking.istio.io/v1alpha3",  # never promoted beyond v1alpha3
    "PeerAuthentication": "security.istio.io/v1beta1",
    "AuthorizationPolicy": "security.istio.io/v1beta1",
}

HELM_MAX_HISTORY = 10

# Where each kind of app resource lived before services had a component of their own; the aliases keep existing
# stacks' resources (their URNs) across the move instead of replacing them.
FORMER_PARENTS = {"workload": ("beetravels:app:BeeTravels", "bee-travels"),
                  "traffic": ("beetravels:mesh:TrafficRules", "traffic"),
                  "security": ("beetravels:mesh:MeshSecurity", "security")}


def moved_from(kind: str) -> pulumi.Alias:
    """An alias to the URN a resource had under its former parent component (same name and type)."""
    type_, name = FORMER_PARENTS[kind]
    return pulumi.Alias(parent=f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}")

MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "bee-travels"}
# The label NetworkPolicies select namespaces by. The API server sets it from Kubernetes 1.21; the stack sets it on
# its own namespaces too, so the same policies work on 1.18.
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=namespace, labels={**MANAGED_BY, **(labels or {})}, annotations=annotations
    )


# The provider holds a Service with a selector until its Endpoints appear and then 10 s more, on every create and
# every update (pulumi-kubernetes 4.25.0, await/service.go), in one of the engine's parallel slots. Each of our
# Services fronts a workload whose own readiness is awaited (a Deployment's Ready pods, MongoDB's Ready members and
# its replica-set Job), and whatever connects through a Service waits on that workload, never on the Service: so the
# Service's wait guards nothing and costs 10 s a Service (84% of a dev-shaped update's step time, docs/performance.md).
# Deleting a Service still waits until it is gone.
NO_ENDPOINT_WAIT = {"pulumi.com/skipAwait": "true"}


def workload_service(resource_name: str, name: str, namespace: pulumi.Input[str], labels: dict[str, str],
                     spec: k8s.core.v1.ServiceSpecArgs, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
    """A Service in front of a workload whose readiness is awaited on the workload itself (see NO_ENDPOINT_WAIT)."""
    return k8s.core.v1.Service(resource_name, metadata=metadata(name, namespace, labels, NO_ENDPOINT_WAIT), spec=spec, opts=opts)


def container_port(name: str, port: int) -> k8s.core.v1.ContainerPortArgs:
    """A TCP container port with its protocol spelled out: before Kubernetes 1.20 server-side apply keys the list by
    port and protocol before defaulting, so a 1.18 server refuses a port without one (kubernetes/kubernetes#92332)."""
    return k8s.core.v1.ContainerPortArgs(name=name, container_port=port, protocol="TCP")


# The provider's server-side apply then forces the fields it declares, taking them back from another manager (a hand
# edit with kubectl, or the autoscaler's count once autoscaling is off) instead of failing on the conflict: the
# stack file is what runs, and drift is undone by the next refreshed update (`pulumi up --refresh`).
TAKE_BACK_FIELDS = {"pulumi.com/patchForce": "true"}


def istio_resource(resource_name: str, kind: str, name: str, namespace: str, spec: dict[str, Any],
                   opts: pulumi.ResourceOptions, annotations: dict[str, str] | None = None) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=ISTIO_API_VERSIONS[kind],
        kind=kind,
        metadata=metadata(name, namespace, annotations={**TAKE_BACK_FIELDS, **(annotations or {})}),
        spec=spec,
        opts=opts,
    )


def network_policy(resource_name: str, name: str, namespace: str, spec: dict[str, Any],
                   opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(resource_name, metadata=metadata(name, namespace), spec=spec, opts=opts)


def helm_release(resource_name: str, release_name: str, chart: ChartRef, namespace: str, values: dict[str, Any],
                 opts: pulumi.ResourceOptions, value_files: list[str] | None = None) -> k8s.helm.v3.Release:
    """A Helm release that waits until its workloads are ready, so whatever depends on it starts after."""
    return k8s.helm.v3.Release(
        resource_name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name,
            chart=chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository) if chart.repository else None,
            namespace=namespace,
            values=values,
            value_yaml_files=[pulumi.FileAsset(path) for path in value_files] if value_files else None,
            skip_await=False,
            timeout=600,
            cleanup_on_fail=True,
            # Helm keeps every revision as a Secret otherwise; ten is enough to roll back by hand.
            max_history=HELM_MAX_HISTORY,
        ),
        opts=opts,
    )
