"""Small builders shared by the components: object metadata and Istio custom resources."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

# Versions served by Istio 1.6 and still served by current Istio (1.30): the same stack code runs on both.
ISTIO_API_VERSIONS = {
    "Gateway": "networking.istio.io/v1beta1",
    "VirtualService": "networking.istio.io/v1beta1",
    "DestinationRule": "networking.istio.io/v1beta1",
    "ServiceEntry": "networking.istio.io/v1beta1",
    "Sidecar": "networking.istio.io/v1beta1",
    "PeerAuthentication": "security.istio.io/v1beta1",
    "AuthorizationPolicy": "security.istio.io/v1beta1",
}

MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "bee-travels"}


def metadata(name: str, namespace: str | None = None, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=namespace, labels={**MANAGED_BY, **(labels or {})}, annotations=annotations
    )


def istio_resource(resource_name: str, kind: str, name: str, namespace: str, spec: dict[str, Any],
                   opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=ISTIO_API_VERSIONS[kind],
        kind=kind,
        metadata=metadata(name, namespace),
        spec=spec,
        opts=opts,
    )
