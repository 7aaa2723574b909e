"""One Bee Travels service: its identities, Service, a Deployment per version, its routing, who may call it and where it may go."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from builders.access import (
    AccessPlan,
    Caller,
    Destination,
    authorization_spec,
    egress_network_policy_spec,
    ingress_network_policy_spec,
    outbound_policy,
)
from builders.compat import KubernetesApis
from builders.kube import TAKE_BACK_FIELDS, istio_resource, metadata, moved_from, network_policy, workload_service
from builders.rate_limits import Limits, rate_limit_filter_spec
from builders.routes import GATEWAY_NAME, MIRROR_WRITES_ACCEPTED, destination_rule_spec, virtual_service_spec
from builders.workloads import (
    SERVICE_PORT,
    DataConnections,
    account_name,
    container,
    identity_labels,
    spread,
    writable_app_copy,
    writable_folders,
)
from config.settings import GatewaySettings, ImageSettings, Resilience, SecuritySettings, ServiceSettings
from domain.catalogue import CATALOGUE, FRONTEND, ServiceSpec


@dataclass(frozen=True)
class MeshServiceArgs:
    settings: ServiceSettings
    resilience: Resilience
    images: ImageSettings
    namespace: pulumi.Input[str]  # the app namespace as the mesh created it, so everything here waits for it
    namespace_name: str
    kubernetes: KubernetesApis
    production: bool
    data: DataConnections
    security: SecuritySettings  # which layers enforce the access plan: authorization, NetworkPolicies, Sidecars
    plan: AccessPlan  # who may call it, and where each of its identities may go
    gateway: GatewaySettings  # the ingress gateway's hosts: the front end's routes are served there
    after: list[pulumi.Resource]  # the mesh's control plane: CRDs, istiod and its webhooks
    limits: Limits  # its rate limits, in the Envoy API of the stack's Istio
    # Whether pods mount their ServiceAccount's API token: only where the sidecar authenticates with it.
    mount_account_token: bool = False
    # Versions whose autoscaling this update turns off: their autoscaler stays, pinned, for one more update.
    autoscalers_handing_over: frozenset[str] = frozenset()


class MeshService(pulumi.ComponentResource):
    """Owns everything that exists because of one service: accounts, Service, Deployments, routes, authorization, Sidecars."""

    accounts: dict[str, str]  # data tier -> the ServiceAccount its versions on that tier run as
    deployments: dict[str, k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: MeshServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:app:MeshService", name, None, opts)
        self._name, self._args, self._spec = name, args, CATALOGUE[name]
        self.accounts = {tier: self._service_account(tier) for tier in args.settings.tiers}
        self._kubernetes_service()
        self.deployments = {version: self._deployment(version, settings.tier)
                            for version, settings in args.settings.versions.items()}
        self._routes()
        self._rate_limit()
        callers = args.plan.callers_of(name)
        if args.security.authorization:
            self._authorization(callers)
        if args.security.network_policies:
            self._network_policies(callers, {tier: args.plan.network_egress(name, tier) for tier in args.settings.tiers})
        if args.security.restrict_egress:
            for tier in args.settings.tiers:
                self._sidecar(tier, args.plan.sidecar_egress(name, tier))
        self.register_outputs({
            "serviceAccounts": self.accounts,
            "deployments": {version: f"{name}-{version}" for version in self.deployments},
            "weights": args.settings.effective_weights(),
        })

    def _opts(self, kind: str, *after: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=[*self._args.after, *after], aliases=[moved_from(kind)])

    # ---- workloads -----------------------------------------------------------------------------

    def _service_account(self, tier: str) -> str:
        account = account_name(self._name, tier)
        k8s.core.v1.ServiceAccount(f"{account}-service-account",
                                   metadata=metadata(account, self._args.namespace, identity_labels(self._name, tier)),
                                   opts=self._opts("workload"))
        return account

    def _kubernetes_service(self) -> None:
        workload_service(
            f"{self._name}-service", self._name, self._args.namespace, {"app": self._name},
            k8s.core.v1.ServiceSpecArgs(
                selector={"app": self._name},
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http", protocol="TCP")],
            ),
            opts=self._opts("workload"),
        )

    def _deployment(self, version: str, tier: str) -> k8s.apps.v1.Deployment:
        args, spec, settings = self._args, self._spec, self._args.settings
        labels = {"app": spec.name, "version": version}
        pod_labels = {**labels, **identity_labels(spec.name, tier)}
        name = f"{spec.name}-{version}"
        replicas = settings.replicas_of(version)
        autoscaled = settings.autoscaling.enabled
        scaler = (settings.autoscaling.min_replicas, settings.autoscaling.max_replicas) if autoscaled else (
            (replicas, replicas) if version in args.autoscalers_handing_over else None)
        if scaler and not autoscaled:
            pulumi.log.warn(f"{spec.name} {version}: autoscaling is off; this update pins its HorizontalPodAutoscaler at "
                            f"{replicas} replicas so the count moves there without a fight, and the next `pulumi up` "
                            "removes it", resource=self)
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            # Server-side apply takes .spec.replicas back from the autoscaler's manager once there is none.
            metadata=metadata(name, args.namespace, pod_labels, annotations=TAKE_BACK_FIELDS),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # Under an autoscaler this is only the count a new Deployment starts at: the update keeps the live count.
                replicas=scaler[0] if scaler else replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                    max_surge="25%", max_unavailable=0 if args.production else "25%")),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels, annotations=args.kubernetes.seccomp_annotations or None),
                    spec=self._pod_spec(spec, version, tier, labels),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(self._opts("workload", *self._data_ready(tier)), pulumi.ResourceOptions(
                # The autoscaler owns the live count: the provider leaves it as it is, instead of resetting it.
                ignore_changes=["spec.replicas"] if scaler else None)),
        )
        if args.production or replicas > 1 or autoscaled:
            self._disruption_budget(name, labels, deployment)
        if scaler:
            self._autoscaler(name, deployment, *scaler)
        return deployment

    def _data_ready(self, tier: str) -> list[pulumi.Resource]:
        """What a version on `tier` waits for before it starts: its database, connection Secret and seeded data."""
        data = self._args.data
        if tier == "mongodb":
            return list(data.mongo_ready)
        if tier == "cloud" and data.cloud_secret is not None:
            return [data.cloud_secret]
        return []

    def _pod_spec(self, spec: ServiceSpec, version: str, tier: str, labels: dict[str, str]) -> k8s.core.v1.PodSpecArgs:
        args = self._args
        return k8s.core.v1.PodSpecArgs(
            service_account_name=self.accounts[tier],
            automount_service_account_token=args.mount_account_token,
            security_context=args.kubernetes.pod_security_context(run_as_non_root=True),
            containers=[container(spec, version, tier, args.settings, args.images, args.data)],
            init_containers=[writable_app_copy(spec, args.images)] if tier == "cloud" else None,
            volumes=[k8s.core.v1.VolumeArgs(name=volume, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                size_limit="64Mi" if volume == "scratch" else None)) for volume in writable_folders(spec, tier)],
            **(spread(labels, args.kubernetes) if args.production else {}),
        )

    def _disruption_budget(self, name: str, labels: dict[str, str], deployment: k8s.apps.v1.Deployment) -> None:
        policy = self._args.kubernetes.policy
        policy.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata(name, self._args.namespace, labels),
            spec=policy.PodDisruptionBudgetSpecArgs(min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels)),
            opts=self._opts("workload", deployment),
        )

    def _autoscaler(self, name: str, deployment: k8s.apps.v1.Deployment, minimum: int, maximum: int) -> None:
        autoscaling = self._args.kubernetes.autoscaling
        scaling = self._args.settings.autoscaling
        autoscaling.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=metadata(name, self._args.namespace),
            spec=autoscaling.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=autoscaling.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                # Pinned (minimum == maximum) it holds the count without metrics: the controller enforces the range first.
                min_replicas=minimum,
                max_replicas=maximum,
                metrics=[autoscaling.MetricSpecArgs(type="Resource", resource=autoscaling.ResourceMetricSourceArgs(
                    name="cpu", target=autoscaling.MetricTargetArgs(type="Utilization", average_utilization=scaling.target_cpu_percent)))],
            ),
            opts=self._opts("workload", deployment),
        )

    # ---- routing -------------------------------------------------------------------------------

    def routed_versions(self) -> list[str]:
        """The versions the VirtualService sends traffic to: weighted above zero, or the target of a match route."""
        settings = self._args.settings
        weighted = [version for version, weight in settings.effective_weights().items() if weight > 0]
        mirrored = [settings.mirror.version] if settings.mirror else []
        return list(dict.fromkeys([*weighted, *(route.version for route in settings.match_routes), *mirrored]))

    def _routes(self) -> None:
        # Subset first, then the route, and the route only once the versions it sends traffic to are ready:
        # a canary step that adds a version never routes to pods that do not exist yet.
        args, name = self._args, self._name
        ns = args.namespace_name
        subsets = istio_resource(f"traffic-{name}-destination-rule", "DestinationRule", name, ns,
                                 destination_rule_spec(name, args.settings, args.resilience, args.security.mtls_mode != "DISABLE", ns), self._opts("traffic"))
        ready = [self.deployments[version] for version in self.routed_versions()]
        gateway_ref = f"{ns}/{GATEWAY_NAME}"
        mirror = args.settings.mirror
        istio_resource(f"traffic-{name}-virtual-service", "VirtualService", name, ns,
                       virtual_service_spec(name, args.settings, args.resilience, ns, args.gateway if name == FRONTEND else None, gateway_ref),
                       self._opts("traffic", subsets, *ready),
                       annotations={MIRROR_WRITES_ACCEPTED: "true"} if mirror and mirror.safe_to_mirror else None)

    def _rate_limit(self) -> None:
        spec = rate_limit_filter_spec({"app": self._name}, "SIDECAR_INBOUND", self._args.limits, self._name.replace("-", "_"))
        if spec is None:
            return
        # Born here: no former parent to alias.
        istio_resource(f"traffic-{self._name}-rate-limit", "EnvoyFilter", f"{self._name}-rate-limit", self._args.namespace_name,
                       spec, pulumi.ResourceOptions(parent=self, depends_on=self._args.after))

    # ---- security ------------------------------------------------------------------------------

    def _network_policies(self, callers: list[Caller], egress: dict[str, list[Destination]]) -> None:
        args = self._args
        # Born here: no former parent to alias.
        opts = pulumi.ResourceOptions(parent=self, depends_on=args.after)
        network_policy(f"{self._name}-ingress-network", f"{self._name}-ingress", args.namespace_name,
                       ingress_network_policy_spec(self._name, self._spec.port, callers), opts)
        for tier, destinations in egress.items():
            if not destinations:
                continue  # it calls nothing: the namespace's deny-by-default and DNS/istiod rules are all it gets
            account = self.accounts[tier]
            network_policy(f"{account}-egress-network", f"{account}-egress", args.namespace_name,
                           egress_network_policy_spec(identity_labels(self._name, tier), destinations), opts)

    def _authorization(self, callers: list[Caller]) -> None:
        istio_resource(f"security-allow-{self._name}", "AuthorizationPolicy", f"allow-{self._name}", self._args.namespace_name,
                       authorization_spec(self._name, callers), self._opts("security"))

    def _sidecar(self, tier: str, hosts: list[str]) -> None:
        # One Sidecar per identity, named after it. Istio applies one selecting Sidecar per pod, and every pod carries
        # exactly one data tier, so selecting on app and tier never overlaps and keeps mongo off json pods.
        account = self.accounts[tier]
        istio_resource(f"security-{account}-sidecar", "Sidecar", account, self._args.namespace_name, {
            "workloadSelector": {"labels": identity_labels(self._name, tier)},
            "egress": [{"hosts": hosts}],
            **outbound_policy(self._args.production),
        }, self._opts("security"))
