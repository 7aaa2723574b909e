"""Which API versions a cluster of a given Kubernetes minor serves, as the SDK's modules and as apiVersion strings."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import pulumi_kubernetes as k8s


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
