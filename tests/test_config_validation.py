"""Bad stack files stop the program before any resource is registered, with the file, key and fix named."""

import pytest

from config.stack_config import StackConfigError
from tools.stack_run import DELETE, run_stack

CLOUD_SECRETS = {"cloudDatabaseUrl": "mongodb://user:pw@db.example.com:27017/beetravels?tls=true"}

# (stack, overrides, secrets, key path in the message, fragment of the message)
BAD_CONFIGS = [
    ("dev", {"services.hotel.weights.v2": 40}, {}, "services.hotel.weights", "add up to 90"),
    ("dev", {"services.hotel.weights.v1": 150, "services.hotel.weights.v2": -50}, {}, "services.hotel.weights.v1", "less than or equal to 100"),
    ("dev", {"services.hotel.weights.v2": "50"}, {}, "services.hotel.weights.v2", "valid integer"),
    ("dev", {"services.hotel.weights.v2": 49.5, "services.hotel.weights.v1": 50.5}, {}, "services.hotel.weights.v1", "valid integer"),
    ("dev", {"services.hotel.weights.v3": 10, "services.hotel.weights.v1": 40}, {}, "services.hotel.weights.v3", "does not deploy"),
    ("dev", {"services.destination.versions.v3": {"tier": "json"}}, {}, "services.destination.weights.v3", "gets no traffic"),
    ("dev", {"services.destination.weights": DELETE}, {}, "services.destination.weights", "gives no weights"),
    ("dev", {"services.hotel.matchRoutes[0].version": "v3"}, {}, "services.hotel.matchRoutes[0].version", "does not deploy"),
    ("dev", {"services.hotel.versions.v2.tier": "postgres"}, {}, "services.hotel.versions.v2.tier", "'json', 'mongodb' or 'cloud'"),
    ("dev", {"services.currencyexchange.versions.v1.tier": "mongodb"}, {}, "services.currencyexchange.versions.v1.tier", "supports: json"),
    ("dev", {"mongodb.enabled": False}, {}, "mongodb.enabled", "use the mongodb tier"),
    ("dev", {"services.hotel.versions.v2.tier": "cloud"}, CLOUD_SECRETS, "cloudDatabase.host", "is required because hotel.v2 uses the cloud tier"),
    ("dev", {"services.hotel.versions.v2.tier": "cloud", "cloudDatabase.host": "db.example.com"}, {}, "cloudDatabaseUrl", "pulumi config set --secret cloudDatabaseUrl"),
    ("dev", {"services.hotel.versions.v2.tier": "cloud", "cloudDatabase.host": "db.example.com",
             "cloudDatabaseUrl": "mongodb://user:pw@db.example.com"}, {}, "cloudDatabaseUrl", "stored in plain text"),
    ("dev", {"services.hotel.replicas": 0}, {}, "services.hotel.replicas", "greater than or equal to 1"),
    ("prod", {"services.hotel.replicas": 1}, {}, "services.hotel.replicas", "at least 2 replicas"),
    ("prod", {"services.hotel.versions.v2.replicas": 1}, {}, "services.hotel.versions.v2.replicas", "at least 2 replicas"),
    ("dev", {"services.hotel.resources.requests.cpu": "200 millicores"}, {}, "services.hotel.resources.requests.cpu", "not a Kubernetes quantity"),
    ("dev", {"services.hotel.resources": {"requests": {"cpu": "100m", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}, {}, "services.hotel.resources", "larger than limits.memory"),
    ("dev", {"gateway.hosts": ["bee_travels.example.com"]}, {}, "gateway.hosts.0", "not a valid DNS name"),
    ("dev", {"security.mtlsMode": "STRICTEST"}, {}, "security.mtlsMode", "'STRICT', 'PERMISSIVE' or 'DISABLE'"),
    ("dev", {"istio.ingressGateway.serviceType": "ExternalIP"}, {}, "istio.ingressGateway.serviceType", "'ClusterIP', 'NodePort' or 'LoadBalancer'"),
    ("dev", {"resilience.loadBalancer": "FASTEST"}, {}, "resilience.loadBalancer", "'LEAST_CONN'"),
    ("dev", {"servces": {}}, {}, "servces", "did you mean 'services'?"),
    ("dev", {"services.hotel.resources": {"requests": {"memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}}, {}, "services.hotel.resources.requests.cpu", "is missing"),
    ("dev", {"services.hotel.weigths": {"v1": 100}}, {}, "services.hotel.weigths", "did you mean 'weights'?"),
    ("dev", {"istio.meshconfig": {}}, {}, "istio.meshconfig", "did you mean 'meshConfig'?"),
    ("dev", {"services.hotels": {"versions": {"v1": {"tier": "json"}}}}, {}, "services.hotels", "did you mean 'hotel'?"),
    ("dev", {"kubernetesVersion": "1.24"}, {}, "kubernetesVersion", "cannot run on 1.22 or later"),
    ("dev", {"istio.version": "1.30.3", "kubernetesVersion": "1.18"}, {}, "kubernetesVersion", "Istio 1.30 supports Kubernetes 1.32-1.36"),
    ("dev", {"istio.version": "1.12.0"}, {}, "istio.version", "use one of: 1.6.x, 1.30.x"),
    ("prod", {"services.hotel.fault": {"abort": {"httpStatus": 503, "percent": 5}}}, {}, "services.hotel.fault", "refused on a production stack"),
    ("dev", {"resilience.timeout": "3s", "resilience.retries": {"attempts": 3, "perTryTimeout": "2s"}}, {}, "resilience.retries", "longer than the 3s timeout"),
    ("dev", {"services.hotel.resilience.retries": {"attempts": 5, "perTryTimeout": "5s"}}, {}, "services.hotel.resilience.retries", "longer than the 10s timeout"),
    ("prod", {"security.mtlsMode": "PERMISSIVE"}, {}, "security.mtlsMode", "production requires STRICT"),
    ("dev", {"security.mtlsMode": "DISABLE"}, {}, "security.mtlsMode", "every request would be denied"),
    ("prod", {"gateway.tls.mode": "off"}, {}, "gateway.tls.mode", "production serves HTTPS"),
    ("prod", {"security.authorization": False}, {}, "security.authorization", "production denies by default"),
    ("dev", {"gateway.tls.mode": "secret"}, {}, "gateway.tls.credentialName", "is required when gateway.tls.mode is 'secret'"),
    ("dev", {"gateway.tls.credentialName": "leftover-tls"}, {}, "gateway.tls.credentialName", "gateway.tls.mode is 'off'"),
    ("dev", {"services.hotel.matchRoutes[0].header": "X-Bee Canary!"}, {}, "services.hotel.matchRoutes.0", "lower-case header names"),
    ("dev", {"images.tag": "latest"}, {}, "images.tag", "not a pinned tag"),
    ("prod", {"images.digests": {"docker.io/beetravels/hotel-v1": "sha256:abc"}}, {}, 'images.digests["docker.io/beetravels/hotel-v1"]',
     "is not an image digest: write sha256:<64 hex digits>"),
    ("prod", {"images.digests": {"docker.io/beetravels/hotel-v9": "sha256:" + "a" * 64}}, {}, 'images.digests["docker.io/beetravels/hotel-v9"]',
     "runs no image from docker.io/beetravels/hotel-v9 (did you mean 'docker.io/beetravels/hotel-v2'?)"),
    ("dev", {"mongodb.version": "latest"}, {}, "mongodb.version", "not a pinned MAJOR.MINOR.PATCH"),
    ("dev", {"mongodb.replicas": 2}, {}, "mongodb.replicas", "use 1 or 3"),
    ("prod", {"mongodb.replicas": 1}, {}, "mongodb.replicas", "at least 3 members"),
    ("dev", {"mongodb.replicas": 9}, {}, "mongodb.replicas", "less than or equal to 7"),
    ("dev", {"services.hotel.versions.V2_new": {"tier": "json"}, "services.hotel.weights.V2_new": 0}, {}, "services.hotel.versions.V2_new", "version names become Kubernetes labels"),
    ("dev", {"istio.ingressGateway.httpNodePort": 8080}, {}, "istio.ingressGateway.httpNodePort", "outside the NodePort range"),
    ("dev", {"observability.prometheus": False}, {}, "observability.kiali", "set observability.prometheus to true"),
    ("dev", {"observability.prometheus": False, "observability.grafana": False, "observability.kiali": False,
             "observability.storageSize": "10Gi"}, {}, "observability.storageSize", "set observability.prometheus to true"),
    ("dev", {"observability.retention": "15 days"}, {}, "observability.retention", "not a Prometheus duration"),
    ("dev", {"serviceLevel.minSuccessRatePercent": 101}, {}, "serviceLevel.minSuccessRatePercent", "less than or equal to 100"),
    ("prod", {"services.hotel.serviceLevel.maxP95LatencyMs": 0}, {}, "services.hotel.serviceLevel.maxP95LatencyMs", "greater than or equal to 1"),
    ("dev", {"services.hotel.serviceLevel.maxP95Latency": 300}, {}, "services.hotel.serviceLevel.maxP95Latency", "did you mean 'maxP95LatencyMs'"),
    ("dev", {"canary.steps": [10, 5, 100]}, {}, "canary", "must rise strictly"),
    ("prod", {"canary.steps": [10, 50]}, {}, "canary", "must end at 100"),
    ("dev", {"canary.minRequests": 0}, {}, "canary.minRequests", "greater than or equal to 1"),
    # What the API server, istiod or Prometheus would refuse half-way through an update.
    ("dev", {"istio.ingressGateway.resources.requests.cpu": -1}, {}, "istio.ingressGateway.resources.requests.cpu", "negative, which Kubernetes refuses"),
    ("dev", {"mongodb.storageSize": "-5Gi"}, {}, "mongodb.storageSize", "negative"),
    ("dev", {"services.hotel.replicas": 1000000000000}, {}, "services.hotel.replicas", "less than or equal to 2147483647"),
    ("dev", {"resilience.connectionPool.maxConnections": 2**31}, {}, "resilience.connectionPool.maxConnections", "less than or equal to 2147483647"),
    ("dev", {"resilience.retries.retryOn": "v1"}, {}, "resilience.retries.retryOn", "Istio 1.6 refuses v1: retryOn takes HTTP status codes"),
    ("dev", {"resilience.retries.retryOn": "5xx,envoy-ratelimited"}, {}, "resilience.retries.retryOn", "Istio 1.6 refuses envoy-ratelimited"),
    ("prod", {"services.hotel.resilience.retries": {"attempts": 2, "perTryTimeout": "2s", "retryOn": "5xx,conect-failure"}}, {},
     "services.hotel.resilience.retries.retryOn", "did you mean 'connect-failure'?"),
    ("dev", {"resilience.retries.retryOn": "5xx, reset"}, {}, "resilience.retries.retryOn", "without spaces"),
    ("dev", {"resilience.timeout": "0s"}, {}, "resilience.timeout", "below 1ms, which Istio refuses"),
    ("dev", {"resilience.outlierDetection.interval": "1.5ms"}, {}, "resilience.outlierDetection.interval", "whole number of milliseconds"),
    ("dev", {"serviceLevel.window": "1.5m"}, {}, "serviceLevel.window", "not a Prometheus duration"),
    ("dev", {"serviceLevel.window": "0m"}, {}, "serviceLevel.window", "window above zero"),
    ("dev", {"services.hotel.sticky": {"version": "v2", "lifetime": "500ms"}}, {}, "services.hotel.sticky.lifetime", "whole number of seconds"),
    ("dev", {"mongodb.storageClass": "Fast SSD"}, {}, "mongodb.storageClass", "not a valid Kubernetes object name"),
    ("dev", {"gateway.tls.mode": "secret", "gateway.tls.credentialName": "bee_tls"}, {}, "gateway.tls.credentialName", "not a valid Kubernetes object name"),
    ("dev", {"images.registry": "Docker.io/Bee Travels"}, {}, "images.registry", "not an image repository"),
    ("dev", {"images.tag": "node v1"}, {}, "images.tag", "not an image tag"),
    ("dev", {"services.hotel.matchRoutes[0].value": "yes\nx-evil: 1"}, {}, "services.hotel.matchRoutes.0.value", "control character"),
    ("dev", {"services.hotel.matchRoutes[0]": {"version": "v2", "cookie": "bee canary", "value": "v2"}}, {}, "services.hotel.matchRoutes.0.cookie", "a cookie name is"),
    ("dev", {"canary.prometheusUrl": "localhost:9090"}, {}, "canary.prometheusUrl", "not an http(s) address"),
    ("prod", {"security.apiServerCidrs": ["172.18.0.2"], "security.apiServerCidrs[1]": "10.0.0.1/8"}, {},
     "security.apiServerCidrs.1", "not an address range in CIDR form"),
]


@pytest.mark.parametrize(("stack", "overrides", "secrets", "path", "fragment"), BAD_CONFIGS,
                         ids=[f"{case[0]}:{case[3]}:{case[4][:24]}" for case in BAD_CONFIGS])
def test_bad_config_is_refused_before_any_resource(stack, overrides, secrets, path, fragment):
    run = run_stack(stack, overrides, secrets=secrets)
    assert isinstance(run.error, StackConfigError), f"expected a configuration error, got {run.error!r}"
    message = str(run.error)
    assert message.startswith(f"Pulumi.{stack}.yaml has ")
    line = next((line for line in message.splitlines() if f"bee-travels-mesh:{path}:" in line), None)
    assert line is not None, f"no problem reported for {path}:\n{message}"
    assert fragment in line, f"expected {fragment!r} in {line!r}"
    assert run.resources == [], "a refused stack must not register anything"


def test_every_problem_is_reported_at_once():
    run = run_stack("dev", {"services.hotel.weights.v2": 40, "security.mtlsMode": "strict", "servces": {}})
    message = str(run.error)
    assert "bee-travels-mesh:servces:" in message and "bee-travels-mesh:security.mtlsMode:" in message
    # The weights rule spans the services section and the rest: it waits until every section parses.
    assert message.count("\n  - ") == 2 and "services.hotel.weights" not in message, message
    # Cross-section rules wait until every section parses, then all of them are reported together.
    run = run_stack("dev", {"services.hotel.weights.v2": 40, "mongodb.enabled": False, "kubernetesVersion": "1.25"})
    assert str(run.error).count("\n  - ") == 3


def test_a_secret_key_set_in_plain_text_is_refused_even_when_unused():
    """In plain text it sits in the stack file, and so in git, whether or not a version reads it."""
    for key, value in (("cloudDatabaseCert", "-----BEGIN CERTIFICATE-----"), ("cloudDatabaseUrl", "mongodb://u:p@db:27017")):
        unused = run_stack("dev", {key: value}, secrets={})
        assert isinstance(unused.error, StackConfigError) and f"bee-travels-mesh:{key}:" in str(unused.error), unused.error
        assert unused.resources == []
    used = run_stack("dev", {"services.hotel.versions.v2.tier": "cloud", "cloudDatabase.host": "db.example.com",
                             "cloudDatabaseCert": "-----BEGIN CERTIFICATE-----"}, secrets=CLOUD_SECRETS)
    assert "cloudDatabaseCert: must be a secret" in str(used.error)


def test_a_lone_version_needs_no_weight_and_a_routed_version_needs_none():
    run = run_stack("dev", {"services.hotel.weights": {"v1": 100}})
    assert run.error is None, run.error  # v2 is reached through the header route
    run = run_stack("dev", {"services.destination": {"versions": {"v2": {"tier": "mongodb"}}}})
    assert run.error is None, run.error


def test_weight_zero_keeps_a_version_deployed_and_idle():
    """v2 at 0 keeps its pods and subset (a canary paused or drained), and the split sends it nothing."""
    run = run_stack("dev", {"services.destination.weights": {"v1": 100, "v2": 0}})
    assert run.error is None, run.error
    deployments = {d.k8s_name: d.inputs["spec"]["replicas"] for d in run.of_type("Deployment") if d.k8s_name.startswith("destination-")}
    assert deployments == {"destination-v1": 1, "destination-v2": 1}
    assert [s["name"] for s in run.named("DestinationRule", "destination").inputs["spec"]["subsets"]] == ["v1", "v2"]
    split = run.named("VirtualService", "destination").inputs["spec"]["http"][-1]["route"]
    assert {leg["destination"]["subset"]: leg["weight"] for leg in split} == {"v1": 100, "v2": 0}
