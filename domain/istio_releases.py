"""Which Kubernetes versions each Istio release this stack installs runs on, and what its istiod accepts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IstioRelease:
    minor: str
    kubernetes_minors: tuple[int, int]  # officially supported, inclusive
    why: str
    # What a route's retryOn may name besides HTTP status codes: istiod's supportedRetryOnPolicies
    # (pkg/config/validation/validation.go of 1.6.14 and 1.30.3).
    retry_on_policies: frozenset[str]


_GRPC_RETRY_ON = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")


ISTIO_RELEASES: dict[str, IstioRelease] = {
    "1.6": IstioRelease(
        "1.6",
        (15, 18),
        "Istio 1.6 supports Kubernetes 1.15-1.18 and cannot run on 1.22 or later "
        "(its CRDs, webhooks and istiod use v1beta1 APIs that 1.22 removed)",
        frozenset(("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
                   "retriable-status-codes", *_GRPC_RETRY_ON)),
    ),
    "1.30": IstioRelease(
        "1.30", (32, 36), "Istio 1.30 supports Kubernetes 1.32-1.36",
        frozenset(("5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
                   "refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
                   "http3-post-connect-failure", *_GRPC_RETRY_ON)),
    ),
}


def istio_release(version: str) -> IstioRelease | None:
    return ISTIO_RELEASES.get(".".join(version.split(".")[:2]))


def kubernetes_supported(istio_version: str, kubernetes_minor: int) -> bool:
    release = istio_release(istio_version)
    return release is not None and release.kubernetes_minors[0] <= kubernetes_minor <= release.kubernetes_minors[1]
