"""Observability in the Istio namespace: Prometheus with the service-level rules, Grafana, a tracing backend and Kiali."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from builders.addon_values import (
    ADDON_RESOURCES,
    GRAFANA_ADMIN_SECRET,
    NO_SIDECAR,
    AddonPlan,
    grafana_values,
    kiali_values,
    port_forwards,
    prometheus_values,
)
from builders.addons import CONFIG_DIR, ZIPKIN_PORT, TracingBackend
from builders.charts import Chart, chart_ref
from builders.kube import container_port, helm_release, metadata, workload_service
from builders.monitoring_rules import dashboard_json
from domain.images import pinned

TRACING_UID = 10001  # an unprivileged uid the tracing images run under; they write nothing outside /tmp


@dataclass(frozen=True)
class ObservabilityArgs(AddonPlan):
    """The add-on plan, and what the installs wait for and where their charts come from."""

    after: list[pulumi.Resource]
    charts_dir: str | None = None  # helm.chartsDir: install the charts from this folder, not their repositories


class Observability(pulumi.ComponentResource):
    """Owns Prometheus and its service-level rules, Grafana and its dashboards, the tracing backend and Kiali."""

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:mesh:Observability", name, None, opts)
        self._args, self._name = args, name
        settings, addons = args.settings, args.addons
        prometheus = self._chart("prometheus", addons.prometheus, prometheus_values(args)) if settings.prometheus else None
        tracing = self._tracing(addons.tracing[settings.tracing.backend]) if settings.tracing.enabled else []
        self.grafana_admin_password: pulumi.Output[str] | None = None
        grafana = self._grafana() if settings.grafana else None
        if settings.kiali:
            self._chart("kiali", addons.kiali, kiali_values(args), after=[r for r in (prometheus, grafana) if r] + tracing)
        self.port_forwards = port_forwards(args)
        self.register_outputs({"portForwards": self.port_forwards})

    def _opts(self, after: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=[*self._args.after, *(after or [])])

    def _chart(self, release: str, chart: Chart, values: dict[str, Any], after: list[pulumi.Resource] | None = None) -> k8s.helm.v3.Release:
        return helm_release(f"{self._name}-{release}", release, chart_ref(chart, self._args.charts_dir), self._args.namespace,
                            values, opts=self._opts(after))

    def _config_map(self, name: str, data: dict[str, str]) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(f"{self._name}-{name}", metadata=metadata(name, self._args.namespace), data=data, opts=self._opts())

    def _grafana(self) -> k8s.helm.v3.Release:
        args = self._args
        password = random.RandomPassword(f"{self._name}-grafana-admin-password", length=32, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        secret = k8s.core.v1.Secret(
            f"{self._name}-grafana-admin", metadata=metadata(GRAFANA_ADMIN_SECRET, args.namespace),
            string_data=pulumi.Output.secret({"admin-user": "admin", "admin-password": password.result}), opts=self._opts(),
        )
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        # One ConfigMap per Grafana folder: ours, and Istio's where they ship with its charts.
        folders = {"bee-travels": {"canary.json": dashboard_json(args.services)}, **args.istio_dashboards}
        maps = {provider: f"{provider}-grafana-dashboards" for provider in folders}
        dashboards = [self._config_map(maps[provider], files) for provider, files in folders.items()]
        return self._chart("grafana", args.addons.grafana, grafana_values(args, maps), after=[secret, *dashboards])

    def _tracing(self, backend: TracingBackend) -> list[pulumi.Resource]:
        ns = self._args.namespace
        labels = {"app": "tracing"}
        config = self._config_map("tracing-config", {"config.yaml": yaml.safe_dump(backend.config, sort_keys=False)}) if backend.config else None
        mounts = [k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")]
        volumes = [k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs())]
        if config:
            mounts.append(k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True))
            volumes.append(k8s.core.v1.VolumeArgs(name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name="tracing-config")))
        probe = k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path=backend.health_path, port=backend.health_port),
                                      initial_delay_seconds=5, period_seconds=10)
        deployment = k8s.apps.v1.Deployment(
            f"{self._name}-tracing",
            metadata=metadata("tracing", ns, labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,  # traces live in its memory: one copy, lost on restart, as Istio's own add-on
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={**labels, **NO_SIDECAR},
                                                        annotations={**NO_SIDECAR, **self._args.kubernetes.seccomp_annotations}),
                    spec=k8s.core.v1.PodSpecArgs(
                        automount_service_account_token=False,  # no sidecar, and it never talks to the API
                        security_context=self._args.kubernetes.pod_security_context(run_as_non_root=True, run_as_user=TRACING_UID),
                        containers=[k8s.core.v1.ContainerArgs(
                            name="tracing", image=pinned(self._args.images, backend.image), args=list(backend.args) or None,
                            image_pull_policy=self._args.images.pull_policy,
                            env=[k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in backend.env.items()] or None,
                            ports=[container_port(port_name, port)
                                   for port, port_name in {backend.query_port: "http-query", ZIPKIN_PORT: "http-zipkin"}.items()],
                            liveness_probe=probe, readiness_probe=probe,
                            resources=ADDON_RESOURCES, volume_mounts=mounts,
                            security_context=k8s.core.v1.SecurityContextArgs(
                                run_as_non_root=True, run_as_user=TRACING_UID, allow_privilege_escalation=False,
                                read_only_root_filesystem=True, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                        )],
                        volumes=volumes,
                    ),
                ),
            ),
            opts=self._opts([config] if config else None),
        )
        # Istio's mesh config sends spans to zipkin.<istio namespace>:9411, whichever backend receives them.
        services = [self._service("zipkin", [("http-zipkin", ZIPKIN_PORT, ZIPKIN_PORT)], labels),
                    self._service("tracing", [("http-query", 80, backend.query_port)], labels)]
        return [deployment, *services]

    def _service(self, name: str, ports: list[tuple[str, int, int]], selector: dict[str, str]) -> k8s.core.v1.Service:
        return workload_service(
            f"{self._name}-{name}-service", name, self._args.namespace, selector,
            k8s.core.v1.ServiceSpecArgs(type="ClusterIP", selector=selector, ports=[
                k8s.core.v1.ServicePortArgs(name=port_name, port=port, target_port=target, protocol="TCP")
                for port_name, port, target in ports]),
            opts=self._opts(),
        )
