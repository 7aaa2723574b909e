"""Bee Travels on an Istio mesh: settings -> mesh install -> data -> services -> traffic -> security -> observability -> outputs."""

import pulumi

from components.charts import require_local_charts
from components.compat import KubernetesApis
from components.gateway_tls import SelfSignedCertificate, SelfSignedCertificateArgs
from components.istio import IstioMesh, IstioMeshArgs, chart_source, repository_charts
from components.mongodb import SEED_ACCOUNT, MongoDB, MongoDBArgs
from components.monitoring_rules import monitored_services
from components.observability import Observability, ObservabilityArgs, addon_versions, enabled_charts, istio_dashboards
from components.security import MeshSecurity, MeshSecurityArgs
from components.stack_config import RawStackConfig, load_settings, read_secrets, stack_file_name
from components.traffic import TrafficRules, TrafficRulesArgs, external_hosts, external_hosts_by_identity
from components.workloads import BeeTravels, BeeTravelsArgs, DataConnections

# 1. Settings: read and checked once. A bad stack file or missing charts stop here, before anything is registered.
raw_config = RawStackConfig.from_pulumi()
settings = load_settings(raw_config, stack_file_name())
secrets = read_secrets(raw_config, pulumi.Config())
charts = chart_source(settings.istio, settings.helm)
addons = addon_versions(settings.istio.minor)
require_local_charts([*repository_charts(settings.istio), *enabled_charts(settings.observability, addons)],
                     settings.helm.charts_dir, stack_file_name())
dashboards = istio_dashboards(charts) if settings.observability.grafana else {}
kubernetes = KubernetesApis(settings.kubernetes_minor)

# 2. Mesh install: Istio base -> istiod -> ingress gateway, and the app namespace with injection.
mesh = IstioMesh("istio", IstioMeshArgs(
    istio=settings.istio, charts=charts, tracing=settings.observability.tracing,
    app_namespace=settings.app_namespace, production=settings.production,
))
namespace = settings.app_namespace

# 3. Data: MongoDB only when some deployed version keeps its data there.
seeded = settings.services_using("mongodb")
mongodb = MongoDB("mongodb", MongoDBArgs(
    settings=settings.mongodb, images=settings.images, namespace=mesh.app_namespace, seeded_services=seeded,
    istio_minor=settings.istio.minor, kubernetes=kubernetes, production=settings.production, after=[mesh],
)) if seeded else None

# 4. Services: every configured service and version.
app = BeeTravels("bee-travels", BeeTravelsArgs(
    services=settings.services, images=settings.images, namespace=mesh.app_namespace, kubernetes=kubernetes,
    production=settings.production, after=[mesh],
    data=DataConnections(
        mongo_secret=mongodb.connection_secret_name if mongodb else None,
        mongo_ready={service: mongodb.ready_for(service) for service in seeded} if mongodb else {},
        cloud_url=secrets.cloud_database_url if settings.uses_tier("cloud") else None,
        cloud_cert=secrets.cloud_database_cert if settings.uses_tier("cloud") else None,
    ),
))

# 5. Traffic: the gateway, canary weights from the stack file, resilience and faults, and egress.
# Istio resources wait for the whole mesh component: its CRDs, istiod's webhook and the app namespace.
egress = external_hosts_by_identity(settings.services, settings.cloud_database)
tls_mode = settings.gateway.tls.mode
certificate = SelfSignedCertificate("gateway-tls", SelfSignedCertificateArgs(
    hosts=settings.gateway.hosts, gateway_namespace=mesh.gateway_namespace, after=mesh.control_plane,
)) if tls_mode == "self-signed" else None
traffic = TrafficRules("traffic", TrafficRulesArgs(
    services=settings.services,
    resilience={name: settings.resilience_of(name) for name in settings.services},
    gateway=settings.gateway, gateway_selector=mesh.gateway_selector, gateway_namespace=mesh.gateway_namespace,
    tls_credential_name=certificate.credential_name if certificate else (
        settings.gateway.tls.credential_name if tls_mode == "secret" else None),
    mtls=settings.security.mtls_mode != "DISABLE", namespace=namespace,
    external_hosts=external_hosts(egress),
    after=[mesh],
))

# 6. Security: mTLS, deny-by-default authorization for exactly the call graph, egress limits.
security = MeshSecurity("security", MeshSecurityArgs(
    security=settings.security, service_accounts=app.service_accounts, namespace=namespace,
    istio_namespace=mesh.gateway_namespace, gateway_service_account=mesh.gateway_service_account,
    mongo_clients=(*app.accounts_on_tier("mongodb"), SEED_ACCOUNT, *mongodb.peer_accounts) if mongodb else (),
    mongo_hosts=mongodb.service_hosts if mongodb else (),
    external_hosts=egress,
    production=settings.production, after=[mesh],
))

# 7. Observability: Prometheus with a service-level rule per deployed version, Grafana, tracing and Kiali, as set.
observability = Observability("observability", ObservabilityArgs(
    settings=settings.observability, addons=addons, charts_dir=settings.helm.charts_dir,
    services=monitored_services({name: tuple(service.versions) for name, service in settings.services.items()},
                                {name: settings.service_level_of(name) for name in settings.services}),
    istio_dashboards=dashboards, app_namespace=namespace, namespace=mesh.gateway_namespace,
    gateway_labels=mesh.gateway_selector, production=settings.production, after=[mesh],
))

# 8. Outputs.
pulumi.export("istioVersion", mesh.version)
pulumi.export("istioRevision", mesh.revision)
pulumi.export("appNamespace", mesh.app_namespace)
pulumi.export("gatewaySelector", mesh.gateway_selector)
pulumi.export("mtlsMode", settings.security.mtls_mode)
pulumi.export("canaryWeights", {name: service.effective_weights() for name, service in settings.services.items()})
pulumi.export("matchRoutes", {name: [route.model_dump(exclude_none=True) for route in service.match_routes]
                              for name, service in settings.services.items() if service.match_routes})
if mongodb:
    pulumi.export("mongoConnectionUrl", mongodb.connection_url)
pulumi.export("observability", observability.port_forwards)
if observability.grafana_admin_password is not None:
    pulumi.export("grafanaAdminPassword", observability.grafana_admin_password)
