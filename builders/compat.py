"""Which Kubernetes versions each supported Istio release runs on, and which API versions a cluster serves."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import pulumi_kubernetes as k8s


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


@dataclass(frozen=True)
class KubernetesApis:
    """API groups/versions for objects whose served version changed across the Kubernetes versions we target."""

    minor: int

    @property
    def policy(self) -> ModuleType:
        # policy/v1 PodDisruptionBudget arrived in 1.21; v1beta1 was removed in 1.25.
        return k8s.policy.v1 if self.minor >= 21 else k8s.policy.v1beta1

    @property
    def autoscaling(self) -> ModuleType:
        # autoscaling/v2 arrived in 1.23; v2beta2 (served since 1.12) was removed in 1.26.
        return k8s.autoscaling.v2 if self.minor >= 23 else k8s.autoscaling.v2beta2

    @property
    def seccomp_annotations(self) -> dict[str, str]:
        """The container runtime's default seccomp profile, up to 1.18: only the alpha pod annotation exists there."""
        return {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"} if self.minor < 19 else {}

    @property
    def seccomp_profile(self) -> dict[str, str] | None:
        """The same as a securityContext field, which exists from 1.19; None up to 1.18 (the annotation carries it)."""
        return {"type": "RuntimeDefault"} if self.minor >= 19 else None

    @property
    def service_app_protocol(self) -> bool:
        """Whether a Service port may carry appProtocol: from 1.19 (beta, on); a 1.18 server refuses the field unless
        its alpha ServiceAppProtocol gate is on, which no managed 1.18 cluster turns on."""
        return self.minor >= 19

    def pod_security_context(self, **fields) -> k8s.core.v1.PodSecurityContextArgs:
        """A pod-level security context with the runtime's default seccomp profile (the field from 1.19)."""
        profile = k8s.core.v1.SeccompProfileArgs(**self.seccomp_profile) if self.seccomp_profile else None
        return k8s.core.v1.PodSecurityContextArgs(seccomp_profile=profile, **fields)

    @property
    def pod_disruption_budget_api(self) -> str:
        return "policy/v1" if self.minor >= 21 else "policy/v1beta1"

    @property
    def horizontal_pod_autoscaler_api(self) -> str:
        return "autoscaling/v2" if self.minor >= 23 else "autoscaling/v2beta2"
