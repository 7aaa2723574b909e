"""Bee Travels workloads: one Deployment per configured version, with the image, env and labels the app expects."""

import pytest
import yaml

from harness import schema_validation as sv
from tools.stack_run import ROOT, Secret, run_stack, secret_paths

CLOUD = {
    "services.destination.versions.v3": {"tier": "cloud"},
    "services.destination.weights": {"v1": 50, "v2": 40, "v3": 10},
    "cloudDatabase.host": "bee-db.example.com",
}
CLOUD_SECRETS = {"cloudDatabaseUrl": "mongodb://admin:s3cret@bee-db.example.com:31000/?tls=true",
                 "cloudDatabaseCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}
PORTS = {"bee-ui": 9000, "destination": 9001, "hotel": 9101, "carrental": 9102, "currencyexchange": 9201}


def configured_versions(stack):
    services = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["bee-travels-mesh:services"]
    return {(name, version, spec["tier"]) for name, service in services.items() for version, spec in service["versions"].items()}


def deployments(run):
    return {r.k8s_name: r for r in run.within("MeshService").of_type("Deployment")}


def pod(deployment):
    return deployment.inputs["spec"]["template"]


def env_of(deployment):
    return {e["name"]: e for e in pod(deployment)["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_configured_version_has_its_deployment_and_no_other(stack, request):
    run = request.getfixturevalue(stack)
    expected = configured_versions(stack)
    found = deployments(run)
    assert set(found) == {f"{name}-{version}" for name, version, _ in expected}
    for name, version, tier in expected:
        deployment = found[f"{name}-{version}"]
        labels = pod(deployment)["metadata"]["labels"]
        assert (labels["app"], labels["version"]) == (name, version)
        assert deployment.inputs["spec"]["selector"]["matchLabels"] == {"app": name, "version": version}
        image_name = {"bee-ui": "ui", "currencyexchange": "currencyexchange"}.get(name, f"{name}-{'v1' if tier == 'json' else 'v2'}")
        assert pod(deployment)["spec"]["containers"][0]["image"] == f"docker.io/beetravels/{image_name}:node-v1.0.2"
        env = env_of(deployment)
        assert env["PORT"]["value"] == str(PORTS[name])
        assert ("DATABASE" in env) == (tier != "json")


def test_mongodb_versions_read_the_connection_from_the_secret(dev):
    env = env_of(deployments(dev)["hotel-v2"])
    assert env["DATABASE"]["value"] == "mongodb"
    assert env["MONGO_CONNECTION_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mongodb-connection", "key": "MONGO_CONNECTION_URL"}
    assert env["SERVICE"]["value"] == "hotel-v2"
    assert "MONGO_CONNECTION_URL" not in env_of(deployments(dev)["hotel-v1"])


def test_the_ui_knows_every_backend_and_serves_its_production_build(dev):
    env = env_of(deployments(dev)["bee-ui-v1"])
    assert {name: env[name]["value"] for name in ("DESTINATION_URL", "HOTEL_URL", "CAR_URL", "CURRENCY_EXCHANGE_URL")} == {
        "DESTINATION_URL": "http://destination:80", "HOTEL_URL": "http://hotel:80",
        "CAR_URL": "http://carrental:80", "CURRENCY_EXCHANGE_URL": "http://currencyexchange:80"}
    assert env["NODE_ENV"]["value"] == "production"


def test_cloud_tier_runs_the_v2_image_against_the_external_database_from_secrets():
    run = run_stack("dev", CLOUD, secrets=CLOUD_SECRETS)
    assert run.error is None, run.error
    deployment = deployments(run)["destination-v3"]
    container = pod(deployment)["spec"]["containers"][0]
    assert container["image"] == "docker.io/beetravels/destination-v2:node-v1.0.2"
    env = env_of(deployment)
    assert env["SERVICE"]["value"] == "destination-v3"
    assert env["MONGO_CONNECTION_URL"]["valueFrom"]["secretKeyRef"] == {"name": "cloud-database", "key": "url"}
    assert env["DATABASE_CERT"]["valueFrom"]["secretKeyRef"] == {"name": "cloud-database", "key": "ca.pem"}
    # The service writes the CA to ./cert.pem in its root-owned working folder: a writable copy is mounted over it.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["securityContext"]["runAsNonRoot"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/services/destination-v2"] == "app"
    (copy,) = pod(deployment)["spec"]["initContainers"]
    assert copy["image"] == container["image"] and copy["volumeMounts"] == [{"name": "app", "mountPath": "/writable"}]
    assert "initContainers" not in pod(deployments(run)["destination-v2"])["spec"]
    secret = run.named("Secret", "cloud-database")
    assert secret_paths(secret.inputs["stringData"]) == ["."]
    assert secret.inputs["stringData"].value["url"] == CLOUD_SECRETS["cloudDatabaseUrl"]
    for resource in run.resources:
        if resource is not secret:
            assert "s3cret" not in repr(resource.inputs), f"{resource.kind} {resource.name} inlines the credential"
    assert run.depends_on(deployment, secret)
    sv.require_kubernetes_schemas("1.18")
    assert [e for r in run.of_type("Deployment", "Secret") for e in sv.validate_kubernetes_object(r.manifest(), "1.18")] == []


def test_every_service_selects_pods_of_a_deployment(any_stack):
    templates = [pod(d)["metadata"]["labels"] for d in any_stack.of_type("Deployment", "StatefulSet")]
    for service in any_stack.of_type("Service"):
        selector = service.inputs["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in templates), f"Service {service.k8s_name} selects no pods"


def test_every_declared_port_names_its_protocol(any_stack):
    """Server-side apply before Kubernetes 1.20 refuses a list-keyed port without `protocol` (the 1.18 real-cluster
    tier's server refused the tracing Deployment for it): every container and Service port says it."""
    for resource in any_stack.kubernetes_objects():
        manifest = resource.manifest()
        template = manifest.get("spec", {}).get("template", {}).get("spec") or manifest.get("spec", {}).get("jobTemplate", {})
        containers = [*template.get("containers", []), *template.get("initContainers", [])] if isinstance(template, dict) else []
        ports = [port for container in containers for port in container.get("ports") or []]
        if manifest.get("kind") == "Service":
            ports += manifest["spec"].get("ports") or []
        assert all(port.get("protocol") for port in ports), f"{manifest.get('kind')} {resource.k8s_name}: {ports}"


def test_services_expose_port_80_named_http_and_each_has_an_identity(dev):
    for name, port in PORTS.items():
        service = dev.named("Service", name)
        (service_port,) = service.inputs["spec"]["ports"]
        assert (service_port["name"], service_port["port"], service_port["targetPort"]) == ("http", 80, "http")
        assert dev.named("ServiceAccount", name)
        for deployment in deployments(dev).values():
            if deployment.k8s_name.startswith(f"{name}-"):
                spec = pod(deployment)["spec"]
                assert spec["containers"][0]["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]


def test_versions_on_a_database_tier_run_under_their_own_identity():
    run = run_stack("dev", CLOUD, secrets=CLOUD_SECRETS)
    assert run.error is None, run.error
    accounts = {name: pod(d)["spec"]["serviceAccountName"] for name, d in deployments(run).items()}
    assert {name: accounts[name] for name in ("destination-v1", "destination-v2", "destination-v3", "bee-ui-v1")} == {
        "destination-v1": "destination", "destination-v2": "destination-mongodb", "destination-v3": "destination-cloud",
        "bee-ui-v1": "bee-ui"}
    created = {sa.k8s_name: sa.metadata["labels"] for sa in run.of_type("ServiceAccount")}
    # Exactly the identities some version runs as, plus MongoDB's own (its members and the seeding Jobs).
    assert set(created) == set(accounts.values()) | {"mongodb", "mongodb-seed"}
    assert created["destination-cloud"].items() >= {"app": "destination", "data-tier": "cloud"}.items()


def test_probes_use_paths_that_answer_without_external_dependencies(dev):
    found = deployments(dev)
    probe = lambda name, kind: pod(found[name])["spec"]["containers"][0][kind]["httpGet"]["path"]  # noqa: E731
    assert (probe("hotel-v2", "readinessProbe"), probe("hotel-v2", "livenessProbe")) == ("/ready", "/live")
    assert probe("currencyexchange-v1", "readinessProbe") == "/live"
    assert probe("bee-ui-v1", "readinessProbe") == "/"


def test_containers_are_locked_down_with_requests_and_limits(any_stack):
    for deployment in any_stack.within("MeshService").of_type("Deployment"):
        spec = pod(deployment)["spec"]
        container = spec["containers"][0]
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert set(container["resources"]) == {"requests", "limits"}
        # Yarn 2 writes under $HOME when the image starts; HOME is the writable scratch volume.
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}[env["HOME"]] == "scratch"
        assert "scratch" in [v["name"] for v in spec["volumes"] if "emptyDir" in v]


def test_prod_runs_two_replicas_spread_over_nodes_with_budgets(prod):
    for deployment in prod.within("MeshService").of_type("Deployment"):
        name = deployment.k8s_name
        spec = deployment.inputs["spec"]
        if name == "bee-ui-v1":
            # Where it starts; after that the autoscaler owns the count and updates leave it alone.
            assert spec["replicas"] == 2 and deployment.ignore_changes == ["spec.replicas"]
        else:
            assert spec["replicas"] >= 2
        (constraint,) = pod(deployment)["spec"]["topologySpreadConstraints"]
        assert constraint["topologyKey"] == "kubernetes.io/hostname"
        assert constraint["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    budgets = {r.k8s_name: r for r in prod.within("MeshService").of_type("PodDisruptionBudget")}
    assert set(budgets) == set(deployments(prod))
    assert all(b.inputs["spec"]["minAvailable"] == 1 for b in budgets.values())
    (hpa,) = prod.of_type("HorizontalPodAutoscaler")
    assert hpa.inputs["spec"]["scaleTargetRef"]["name"] == "bee-ui-v1"
    assert (hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]) == (2, 6)


def test_dev_runs_single_replicas_without_budgets(dev):
    assert {d.inputs["spec"]["replicas"] for d in dev.within("MeshService").of_type("Deployment")} == {1}
    assert dev.of_type("PodDisruptionBudget", "HorizontalPodAutoscaler") == []


def test_older_clusters_spread_with_anti_affinity():
    run = run_stack("prod", {"kubernetesVersion": "1.17"})
    spec = pod(deployments(run)["hotel-v1"])["spec"]
    assert "topologySpreadConstraints" not in spec
    assert spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]


def test_a_new_version_is_a_change_of_stack_data_only():
    run = run_stack("dev", {"services.carrental.versions.v3": {"tier": "mongodb", "replicas": 2},
                            "services.carrental.weights": {"v1": 40, "v2": 40, "v3": 20}})
    deployment = deployments(run)["carrental-v3"]
    assert deployment.inputs["spec"]["replicas"] == 2
    assert env_of(deployment)["SERVICE"]["value"] == "car-rental-v3"
    assert isinstance(run.outputs["mongoConnectionUrl"], Secret)


def _pod_templates(run):
    return {f"{w.kind} {w.k8s_name}": w.inputs["spec"]["template"] for w in run.of_type("Deployment", "StatefulSet", "Job")}


@pytest.mark.parametrize(("stack", "annotation", "field"), [("dev", True, False), ("prod", True, False), ("current", False, True)])
def test_every_pod_runs_under_the_runtimes_default_seccomp_profile(stack, annotation, field, request):
    """Kubernetes 1.18 (dev, prod) knows only the pod annotation; 1.19+ (current Istio on 1.33) the field."""
    templates = _pod_templates(request.getfixturevalue(stack))
    assert len(templates) >= 10
    for name, template in templates.items():
        annotations = template["metadata"].get("annotations") or {}
        assert (annotations.get("seccomp.security.alpha.kubernetes.io/pod") == "runtime/default") == annotation, name
        profile = (template["spec"].get("securityContext") or {}).get("seccompProfile")
        assert (profile == {"type": "RuntimeDefault"}) == field, name


@pytest.mark.parametrize(("stack", "sidecar_uses_token"), [("dev", True), ("prod", False), ("current", False)])
def test_pods_mount_an_api_token_only_where_the_sidecar_authenticates_with_it(stack, sidecar_uses_token, request):
    # dev: Istio 1.6 with first-party-jwt, whose sidecar proves itself with the pod's own token; prod's third-party
    # JWT and current Istio's come in a projected istio-token volume. The add-ons run without a sidecar.
    for name, template in _pod_templates(request.getfixturevalue(stack)).items():
        in_mesh = not (template["metadata"].get("annotations") or {}).get("sidecar.istio.io/inject") == "false"
        assert template["spec"]["automountServiceAccountToken"] is (sidecar_uses_token and in_mesh), name
