"""Bee Travels on an Istio mesh: settings -> mesh -> data -> one component per service -> gateway and mesh-wide policy -> observability -> outputs."""

import pulumi

from builders.access import AccessPlan
from builders.addon_values import istio_dashboards
from builders.addons import ZIPKIN_PORT, addon_versions, enabled_charts
from builders.charts import chart_source, repository_charts, require_local_charts
from builders.compat import KubernetesApis
from builders.istio_fence import istio_namespace_fence
from builders.monitoring_rules import monitored_services
from builders.rate_limits import limits_of
from builders.routes import external_hosts, external_hosts_by_identity, served_credential
from builders.workloads import DataConnections, identities_on_tier, service_accounts
from components.cloud_database import CloudDatabase, CloudDatabaseArgs
from components.gateway_tls import SelfSignedCertificate, SelfSignedCertificateArgs
from components.istio import IstioMesh, IstioMeshArgs, PlatformNamespace, PlatformNamespaceArgs
from components.mongodb import MongoDB, MongoDBArgs
from components.observability import Observability, ObservabilityArgs
from components.security import MeshSecurity, MeshSecurityArgs
from components.service import MeshService, MeshServiceArgs
from components.traffic import TrafficRules, TrafficRulesArgs
from config.deployed import autoscalers_handing_over, facts_of, last_deployed, stack_outputs
from config.live_cluster import live_cluster
from config.platform import app_stacks_of, require_platform, with_platform
from config.stack_config import (
    RawStackConfig,
    kubernetes_provider_config,
    load_settings,
    project_dir,
    read_secrets,
    stack_file_name,
)
from domain.mesh import ISTIO_NAMESPACE

# 1. Settings: read and checked once. A bad stack file, missing charts or (on an app stack) a platform that has not
# admitted this stack stop here, before anything is registered.
stack, project = pulumi.get_stack(), project_dir()
raw_config = with_platform(RawStackConfig.from_pulumi(), stack, project)
deployed = last_deployed()
settings = load_settings(raw_config, stack_file_name(), deployed, live_cluster(kubernetes_provider_config()))
secrets = read_secrets(raw_config, pulumi.Config())
require_platform(settings, stack, deployed, stack_outputs)
app_stacks = app_stacks_of(settings, stack, project)
addons = addon_versions(settings.istio.minor)
kubernetes = KubernetesApis(settings.kubernetes_minor)
namespace = settings.app_namespace

# 2. Mesh: Istio base -> istiod -> ingress gateway, and the app namespace with injection; on an app stack, only its
# namespace on the platform stack's mesh.
if settings.is_app_stack:
    mesh = PlatformNamespace("platform", PlatformNamespaceArgs(
        istio=settings.istio, platform_stack=settings.platform_stack, app_namespace=namespace, production=settings.production,
    ))
else:
    charts = chart_source(settings.istio, settings.helm)
    require_local_charts([*repository_charts(settings.istio), *enabled_charts(settings.observability, addons)],
                         settings.helm.charts_dir, stack_file_name())
    dashboards = istio_dashboards(charts, settings.observability)
    mesh = IstioMesh("istio", IstioMeshArgs(
        istio=settings.istio, charts=charts, tracing=settings.observability.tracing,
        app_namespace=namespace, production=settings.production, kubernetes=kubernetes,
        image_pull_policy=settings.images.pull_policy,
    ))

# 3. Data: MongoDB when some version keeps its data there; the cloud database's Secret when some version uses it.
seeded = settings.services_using("mongodb")
mongodb = MongoDB("mongodb", MongoDBArgs(
    settings=settings.mongodb, images=settings.images, namespace=mesh.app_namespace, namespace_name=namespace, seeded_services=seeded,
    istio_minor=settings.istio.minor, kubernetes=kubernetes, production=settings.production, after=mesh.prerequisites,
    mount_account_token=mesh.sidecars_need_account_token, mtls_mode=settings.security.mtls_mode,
)) if seeded else None
cloud = CloudDatabase("cloud-database", CloudDatabaseArgs(
    url=secrets.cloud_database_url, cert=secrets.cloud_database_cert, namespace=mesh.app_namespace, after=mesh.prerequisites,
)) if settings.uses_tier("cloud") else None

# Who may call whom and where each identity may go, from the settings alone; services and mesh policy share it.
accounts = service_accounts(settings.services)
egress = external_hosts_by_identity(settings.services, settings.cloud_database)
plan = AccessPlan(
    service_accounts=accounts, namespace=namespace, istio_namespace=ISTIO_NAMESPACE,
    gateway_service_account=mesh.gateway_service_account, gateway_pod_labels=mesh.gateway_selector,
    mongo_clients=(*identities_on_tier(accounts, "mongodb"), *mongodb.own_clients) if mongodb else (),
    mongo_hosts=mongodb.service_hosts if mongodb else (), external_hosts=egress,
)
handing_over = autoscalers_handing_over(settings, deployed)

# 4. One component per service: its identities, Service, Deployments, routes (after their subsets and ready pods),
# inbound authorization and Sidecars.
services = {name: MeshService(name, MeshServiceArgs(
    settings=service, resilience=settings.resilience_of(name), images=settings.images,
    namespace=mesh.app_namespace, namespace_name=namespace, kubernetes=kubernetes, production=settings.production,
    data=DataConnections(
        mongo_secret=mongodb.connection_secret_name if mongodb else None,
        mongo_ready=mongodb.ready_for(name) if mongodb else (),
        cloud_secret=cloud.secret if cloud else None, cloud_has_cert=bool(cloud and cloud.has_cert),
    ),
    security=settings.security, plan=plan, gateway=settings.gateway,
    after=mesh.prerequisites, autoscalers_handing_over=handing_over.get(name, frozenset()), mount_account_token=mesh.sidecars_need_account_token,
    limits=limits_of(settings.istio.minor, service),
)) for name, service in settings.services.items()}

# 5. Gateway and mesh-wide policy: the Gateway (and its certificate), egress ServiceEntries, mTLS, deny-by-default.
certificate = SelfSignedCertificate("gateway-tls", SelfSignedCertificateArgs(
    hosts=settings.gateway.hosts, gateway_namespace=mesh.gateway_namespace, after=mesh.control_plane,
    app_stack_namespace=namespace if settings.is_app_stack else None,
)) if settings.gateway.tls.mode == "self-signed" else None
traffic = TrafficRules("traffic", TrafficRulesArgs(
    gateway=settings.gateway, gateway_selector=mesh.gateway_selector, gateway_namespace=mesh.gateway_namespace,
    tls_credential_name=served_credential(settings.gateway.tls, certificate.credential_name if certificate else None),
    namespace=namespace, external_hosts=external_hosts(egress), after=mesh.prerequisites,
    # The ingress gateway's own limits are its installer's: the platform stack's.
    limits=None if settings.is_app_stack else limits_of(settings.istio.minor, settings.istio.ingress_gateway),
))
security = MeshSecurity("security", MeshSecurityArgs(
    security=settings.security, plan=plan, production=settings.production, after=mesh.prerequisites,
    istio_fence=None if settings.is_app_stack else istio_namespace_fence(settings, addons, bool(dashboards), app_stacks),
    telemetry_ports=(ZIPKIN_PORT,) if settings.observability.tracing.enabled else (),
))

# 6. Observability: Prometheus with a service-level rule per deployed version (this stack's and its app stacks'),
# Grafana, tracing and Kiali, as set; an app stack's are its platform's.
observability = None if settings.is_app_stack else Observability("observability", ObservabilityArgs(
    settings=settings.observability, addons=addons, charts_dir=settings.helm.charts_dir,
    services=[*monitored_services(settings), *(service for app in app_stacks for service in monitored_services(app.settings, app.name))],
    istio_dashboards=dashboards, istio_version=settings.istio.version, namespace=mesh.gateway_namespace,
    gateway_labels=mesh.gateway_selector, production=settings.production, kubernetes=kubernetes, after=mesh.prerequisites,
    images=settings.images,
))

# 7. Outputs.
pulumi.export("istioVersion", mesh.version)
pulumi.export("istioRevision", mesh.revision)
pulumi.export("appNamespace", mesh.app_namespace)
pulumi.export("gatewaySelector", mesh.gateway_selector)
pulumi.export("mtlsMode", settings.security.mtls_mode)
pulumi.export("networkPolicies", settings.security.network_policies)
pulumi.export("canaryWeights", {name: service.effective_weights() for name, service in settings.services.items()})
pulumi.export("matchRoutes", {name: [route.model_dump(exclude_none=True) for route in service.match_routes]
                              for name, service in settings.services.items() if service.match_routes})
if mongodb:
    pulumi.export("mongoConnectionUrl", mongodb.connection_url)
for fact, value in facts_of(settings, deployed).items():
    pulumi.export(fact, value)
if observability is None:
    pulumi.export("platformStack", settings.platform_stack)
    pulumi.export("observability", mesh.observability)
else:
    pulumi.export("appStacks", {app.name: app.settings.app_namespace for app in app_stacks})
    pulumi.export("observability", observability.port_forwards)
    if observability.grafana_admin_password is not None:
        pulumi.export("grafanaAdminPassword", observability.grafana_admin_password)
