"""Builders for a service version's pods: identities, image, environment, probes, a locked-down container, spreading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from builders.compat import KubernetesApis
from builders.kube import container_port
from domain.catalogue import ServiceSpec
from domain.images import service_image

if TYPE_CHECKING:
    from config.settings import ImageSettings, ServiceSettings

CLOUD_SECRET = "cloud-database"
SCRATCH = "/tmp"
NODE_UID = 1000  # the `node` user of the node:alpine base image
SERVICE_PORT = 80
TIER_LABEL = "data-tier"


@dataclass(frozen=True)
class DataConnections:
    """Where one service's data tiers connect: Secret names and keys, and what its versions wait for."""

    mongo_secret: str | None = None
    mongo_key: str = "MONGO_CONNECTION_URL"
    # What a mongodb-tier version waits for: the database, its connection Secret and the service's seeding Job.
    mongo_ready: tuple[pulumi.Resource, ...] = ()
    cloud_secret: pulumi.Resource | None = None  # the cloud tier's connection Secret (CLOUD_SECRET)
    cloud_has_cert: bool = False


def account_name(service: str, tier: str) -> str:
    """The ServiceAccount that a service's versions on a tier run under."""
    # A database is opened by identity, so versions on a database tier get their own (hotel-mongodb, hotel-cloud)
    # and the json versions, which read bundled files, keep the plain service name (hotel).
    return service if tier == "json" else f"{service}-{tier}"


def service_accounts(services: dict[str, ServiceSettings]) -> dict[str, dict[str, str]]:
    """service -> data tier -> ServiceAccount, for the tiers each service's versions use."""
    return {name: {tier: account_name(name, tier) for tier in service.tiers} for name, service in services.items()}


def accounts_on_tier(accounts: dict[str, dict[str, str]], tier: str) -> tuple[str, ...]:
    """The ServiceAccounts of every version on `tier`, across services."""
    return tuple(by_tier[tier] for by_tier in accounts.values() if tier in by_tier)


def identity_labels(service: str, tier: str) -> dict[str, str]:
    """The pod labels that select exactly the pods running as account_name(service, tier)."""
    return {"app": service, TIER_LABEL: tier}


@dataclass(frozen=True)
class Identity:
    """A workload identity: its ServiceAccount, which Istio's rules name, and its pods' labels, which NetworkPolicies select."""

    account: str
    pod_labels: tuple[tuple[str, str], ...]
    namespace: str | None = None  # None: the app namespace


def identity(account: str, pod_labels: dict[str, str], namespace: str | None = None) -> Identity:
    return Identity(account, tuple(sorted(pod_labels.items())), namespace)


def identities_on_tier(accounts: dict[str, dict[str, str]], tier: str) -> tuple[Identity, ...]:
    """The identities of every version on `tier`, across services."""
    return tuple(identity(by_tier[tier], identity_labels(service, tier)) for service, by_tier in accounts.items() if tier in by_tier)


def _env(name: str, value: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(name=name, value=value)


def _secret_env(name: str, secret: str, key: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(name=name, value_from=k8s.core.v1.EnvVarSourceArgs(
        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret, key=key)))


def container_env(spec: ServiceSpec, version: str, tier: str, data: DataConnections) -> list[k8s.core.v1.EnvVarArgs]:
    # The images start through Yarn 2, which writes its global folder under $HOME: point it at the scratch volume.
    env = [_env("PORT", str(spec.port)), _env("LOG_LEVEL", "info"), _env("HOME", SCRATCH), _env("YARN_ENABLE_TELEMETRY", "0")]
    env += [_env(name, value) for name, value in spec.fixed_env.items()]
    env += [_env(variable, f"http://{callee}:{SERVICE_PORT}") for callee, variable in spec.calls.items()]
    if spec.info_name:
        # v3 runs the v2 image; SERVICE is what /info reports, and how the UI's service graph tells them apart.
        env.append(_env("SERVICE", f"{spec.info_name}-{version}"))
    if tier == "mongodb":
        env += [_env("DATABASE", "mongodb"), _secret_env("MONGO_CONNECTION_URL", data.mongo_secret, data.mongo_key)]
    if tier == "cloud":
        env += [_env("DATABASE", "mongodb"), _secret_env("MONGO_CONNECTION_URL", CLOUD_SECRET, "url")]
        if data.cloud_has_cert:
            env.append(_secret_env("DATABASE_CERT", CLOUD_SECRET, "ca.pem"))
    return env


def _probe(path: str, port: int, initial_delay: int) -> k8s.core.v1.ProbeArgs:
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=port),
        initial_delay_seconds=initial_delay, period_seconds=10, timeout_seconds=3, failure_threshold=3,
    )


def container(spec: ServiceSpec, version: str, tier: str, settings: ServiceSettings, images: ImageSettings,
              data: DataConnections) -> k8s.core.v1.ContainerArgs:
    return k8s.core.v1.ContainerArgs(
        name=spec.name,
        image=service_image(images, spec, tier),
        image_pull_policy=images.pull_policy,
        ports=[container_port("http", spec.port)],
        env=container_env(spec, version, tier, data),
        liveness_probe=_probe(spec.liveness.path, spec.port, 15),
        readiness_probe=_probe(spec.readiness.path, spec.port, 5),
        resources=settings.resources.model_dump(mode="json"),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=name, mount_path=path) for name, path in writable_folders(spec, tier).items()],
        security_context=LOCKED_DOWN,
    )


def writable_folders(spec: ServiceSpec, tier: str) -> dict[str, str]:
    """The only writable places of a read-only container, as volume name -> mount path."""
    folders = {"scratch": SCRATCH}
    if tier == "cloud":
        folders["app"] = spec.database_workdir  # filled by writable_app_copy
    return folders


LOCKED_DOWN = k8s.core.v1.SecurityContextArgs(
    run_as_non_root=True, run_as_user=NODE_UID, allow_privilege_escalation=False,
    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]), read_only_root_filesystem=True,
)


def writable_app_copy(spec: ServiceSpec, images: ImageSettings) -> k8s.core.v1.ContainerArgs:
    """The cloud tier writes DATABASE_CERT to ./cert.pem in its root-owned working folder. A copy of that folder on a
    writable volume, mounted over it, lets it run non-root on a read-only root filesystem like the other tiers."""
    return k8s.core.v1.ContainerArgs(
        name="copy-app",
        image=service_image(images, spec, "cloud"),
        image_pull_policy=images.pull_policy,
        command=["/bin/sh", "-c", "cp -R . /writable/"],
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="app", mount_path="/writable")],
        resources={"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        security_context=LOCKED_DOWN,
    )


def spread(labels: dict[str, str], kubernetes: KubernetesApis) -> dict:
    """Keep a version's replicas on different nodes where the cluster allows it, without blocking scheduling."""
    if kubernetes.minor >= 18:
        return {"topology_spread_constraints": [k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1, topology_key="kubernetes.io/hostname", when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels))]}
    # Topology spread is off by default before 1.18; anti-affinity says the same thing there.
    return {"affinity": k8s.core.v1.AffinityArgs(pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
        preferred_during_scheduling_ignored_during_execution=[k8s.core.v1.WeightedPodAffinityTermArgs(
            weight=100, pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                topology_key="kubernetes.io/hostname", label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels)))]))}
