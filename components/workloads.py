"""The Bee Travels services: per service a Service, per data tier in use a ServiceAccount, per version a Deployment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.catalogue import CATALOGUE, ServiceSpec
from components.compat import KubernetesApis
from components.kube import metadata
from components.settings import ImageSettings, ServiceSettings

CLOUD_SECRET = "cloud-database"
SCRATCH = "/tmp"
NODE_UID = 1000  # the `node` user of the node:alpine base image
SERVICE_PORT = 80
TIER_LABEL = "data-tier"


@dataclass(frozen=True)
class DataConnections:
    """Where each data tier's connection details live, as Secret names and keys."""

    mongo_secret: str | None = None
    mongo_key: str = "MONGO_CONNECTION_URL"
    # What a mongodb-tier version of each service waits for: the database, its connection Secret and its seeding Job.
    mongo_ready: Mapping[str, tuple[pulumi.Resource, ...]] = field(default_factory=dict)
    cloud_url: pulumi.Output[str] | None = None
    cloud_cert: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class BeeTravelsArgs:
    services: dict[str, ServiceSettings]
    images: ImageSettings
    namespace: pulumi.Input[str]
    kubernetes: KubernetesApis
    production: bool
    data: DataConnections
    after: list[pulumi.Resource]


def account_name(service: str, tier: str) -> str:
    """The ServiceAccount that a service's versions on a tier run under."""
    # A database is opened by identity, so versions on a database tier get their own (hotel-mongodb, hotel-cloud)
    # and the json versions, which read bundled files, keep the plain service name (hotel).
    return service if tier == "json" else f"{service}-{tier}"


def identity_labels(service: str, tier: str) -> dict[str, str]:
    """The pod labels that select exactly the pods running as account_name(service, tier)."""
    return {"app": service, TIER_LABEL: tier}


def image(images: ImageSettings, spec: ServiceSpec, tier: str) -> str:
    return f"{images.registry}/{spec.image_for(tier)}:{images.tag}"


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
        if data.cloud_cert is not None:
            env.append(_secret_env("DATABASE_CERT", CLOUD_SECRET, "ca.pem"))
    return env


def _probe(path: str, port: int, initial_delay: int) -> k8s.core.v1.ProbeArgs:
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=port),
        initial_delay_seconds=initial_delay, period_seconds=10, timeout_seconds=3, failure_threshold=3,
    )


def container(spec: ServiceSpec, version: str, tier: str, settings: ServiceSettings, args: BeeTravelsArgs) -> k8s.core.v1.ContainerArgs:
    return k8s.core.v1.ContainerArgs(
        name=spec.name,
        image=image(args.images, spec, tier),
        image_pull_policy=args.images.pull_policy,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.port)],
        env=container_env(spec, version, tier, args.data),
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
        image=image(images, spec, "cloud"),
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


class BeeTravels(pulumi.ComponentResource):
    """Owns the Bee Travels Services, ServiceAccounts, Deployments, disruption budgets and autoscalers."""

    service_accounts: dict[str, dict[str, str]]  # service -> tier -> ServiceAccount, for the tiers its versions use
    deployments: dict[tuple[str, str], k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: BeeTravelsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:app:BeeTravels", name, None, opts)
        self._args = args
        self.service_accounts = {}
        self.deployments = {}
        cloud_secret = self._cloud_secret(name) if args.data.cloud_url is not None else None
        for service, settings in args.services.items():
            spec = CATALOGUE[service]
            self.service_accounts[service] = {tier: self._service_account(service, tier) for tier in settings.tiers}
            self._service(spec)
            for version, version_settings in settings.versions.items():
                after = {"cloud": [cloud_secret] if cloud_secret else [], "mongodb": list(args.data.mongo_ready.get(service, ()))}.get(
                    version_settings.tier, [])
                self.deployments[(service, version)] = self._deploy_version(spec, version, version_settings.tier, settings, after)
        self.register_outputs({
            "serviceAccounts": self.service_accounts,
            "deployments": {f"{service}-{version}": deployment.metadata.apply(lambda meta: meta["name"])
                            for (service, version), deployment in self.deployments.items()},
        })

    def accounts_on_tier(self, tier: str) -> tuple[str, ...]:
        """The ServiceAccounts of every version on `tier`, across services."""
        return tuple(accounts[tier] for accounts in self.service_accounts.values() if tier in accounts)

    def _opts(self, *after: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=[*self._args.after, *after])

    def _cloud_secret(self, name: str) -> k8s.core.v1.Secret:
        data = {"url": self._args.data.cloud_url}
        if self._args.data.cloud_cert is not None:
            data["ca.pem"] = self._args.data.cloud_cert
        return k8s.core.v1.Secret(
            f"{name}-cloud-database", metadata=metadata(CLOUD_SECRET, self._args.namespace),
            string_data=pulumi.Output.secret(data), opts=self._opts(),
        )

    def _service_account(self, service: str, tier: str) -> str:
        account = account_name(service, tier)
        k8s.core.v1.ServiceAccount(f"{account}-service-account",
                                   metadata=metadata(account, self._args.namespace, identity_labels(service, tier)),
                                   opts=self._opts())
        return account

    def _service(self, spec: ServiceSpec) -> None:
        k8s.core.v1.Service(
            f"{spec.name}-service",
            metadata=metadata(spec.name, self._args.namespace, {"app": spec.name}),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector={"app": spec.name},
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http", protocol="TCP")],
            ),
            opts=self._opts(),
        )

    def _deploy_version(self, spec: ServiceSpec, version: str, tier: str, settings: ServiceSettings,
                 after: list[pulumi.Resource]) -> k8s.apps.v1.Deployment:
        args = self._args
        labels = {"app": spec.name, "version": version}
        pod_labels = {**labels, **identity_labels(spec.name, tier)}
        name = f"{spec.name}-{version}"
        replicas = settings.replicas_of(version)
        autoscaled = settings.autoscaling.enabled
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(name, args.namespace, pod_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # Left to the autoscaler when there is one: two owners of .spec.replicas fight on every update.
                replicas=None if autoscaled else replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                    max_surge="25%", max_unavailable=0 if args.production else "25%")),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=self.service_accounts[spec.name][tier],
                        containers=[container(spec, version, tier, settings, args)],
                        init_containers=[writable_app_copy(spec, args.images)] if tier == "cloud" else None,
                        volumes=[k8s.core.v1.VolumeArgs(name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                                     size_limit="64Mi" if name == "scratch" else None)) for name in writable_folders(spec, tier)],
                        **(spread(labels, args.kubernetes) if args.production else {}),
                    ),
                ),
            ),
            opts=self._opts(*after),
        )
        if args.production or replicas > 1 or autoscaled:
            self._disruption_budget(name, labels, deployment)
        if autoscaled:
            self._autoscaler(name, settings, deployment)
        return deployment

    def _disruption_budget(self, name: str, labels: dict[str, str], deployment: k8s.apps.v1.Deployment) -> None:
        policy = self._args.kubernetes.policy
        policy.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata(name, self._args.namespace, labels),
            spec=policy.PodDisruptionBudgetSpecArgs(min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )

    def _autoscaler(self, name: str, settings: ServiceSettings, deployment: k8s.apps.v1.Deployment) -> None:
        autoscaling = self._args.kubernetes.autoscaling
        scaling = settings.autoscaling
        autoscaling.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=metadata(name, self._args.namespace),
            spec=autoscaling.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=autoscaling.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                metrics=[autoscaling.MetricSpecArgs(type="Resource", resource=autoscaling.ResourceMetricSourceArgs(
                    name="cpu", target=autoscaling.MetricTargetArgs(type="Utilization", average_utilization=scaling.target_cpu_percent)))],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
