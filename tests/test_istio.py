"""The Istio install: release order, chart sources, values per stack, injection labels, version checks."""

import pytest

from builders.charts import ChartsMissingError
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import run_stack

RELEASE = "kubernetes:helm.sh/v3:Release"


def releases(run):
    """The Istio install's own releases (the observability add-ons are releases too)."""
    mesh = next(r for r in run.resources if r.kind == "IstioMesh")
    return {r.inputs["name"]: r for r in run.of_type(RELEASE) if mesh in run.ancestors(r)}


def test_releases_install_in_order_each_waiting_for_the_one_before(any_stack):
    installed = releases(any_stack)
    assert set(installed) == {"istio-base", "istiod", "istio-ingressgateway"}
    namespace = any_stack.named("Namespace", "istio-system")
    base, istiod, gateway = installed["istio-base"], installed["istiod"], installed["istio-ingressgateway"]
    assert any_stack.depends_on(base, namespace)
    assert any_stack.depends_on(istiod, base)
    assert any_stack.depends_on(gateway, istiod)
    assert not any_stack.depends_on(base, istiod)
    for release in installed.values():
        assert release.inputs["namespace"] == "istio-system"
        assert release.inputs.get("skipAwait") is False  # each waits until ready


def test_istio_16_charts_come_from_the_release_archive_cache_with_global_values(dev, istio_chart_cache):
    installed = releases(dev)
    charts = istio_chart_cache / "istio-1.6.14" / "manifests" / "charts"
    assert installed["istio-base"].inputs["chart"] == str(charts / "base")
    assert installed["istiod"].inputs["chart"] == str(charts / "istio-control" / "istio-discovery")
    assert installed["istio-ingressgateway"].inputs["chart"] == str(charts / "gateways" / "istio-ingress")
    for name in ("istiod", "istio-ingressgateway"):
        files = [asset.get("path") for asset in installed[name].inputs["valueYamlFiles"]]
        assert files == [str(charts / "global.yaml")]
    for name, release in installed.items():
        assert "repositoryOpts" not in release.inputs
        if name == "istio-base":
            continue  # it runs no image
        # The git-tag charts default to test images; the hub and tag are always set explicitly.
        assert release.inputs["values"]["global"]["hub"] == "docker.io/istio"
        assert release.inputs["values"]["global"]["tag"] == "1.6.14"


def test_current_istio_comes_from_the_official_repository_with_the_same_interface(current):
    installed = releases(current)
    assert {name: r.inputs["chart"] for name, r in installed.items()} == {
        "istio-base": "base", "istiod": "istiod", "istio-ingressgateway": "gateway"}
    for release in installed.values():
        assert release.inputs["repositoryOpts"]["repo"] == "https://istio-release.storage.googleapis.com/charts"
        assert release.inputs["version"] == "1.30.3"
        assert "valueYamlFiles" not in release.inputs
    gateway = installed["istio-ingressgateway"].inputs["values"]
    assert gateway["labels"] == current.outputs["gatewaySelector"]
    assert gateway["service"]["type"] == "LoadBalancer"
    assert gateway["podDisruptionBudget"] == {"minAvailable": 1}


def test_dev_values_suit_a_kind_cluster(dev):
    installed = releases(dev)
    istiod = installed["istiod"].inputs["values"]
    assert istiod["global"]["jwtPolicy"] == "first-party-jwt"
    assert istiod["meshConfig"]["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}
    assert istiod["meshConfig"]["accessLogFile"] == "/dev/stdout"
    assert istiod["meshConfig"]["enableTracing"] is True
    assert istiod["pilot"]["traceSampling"] == 100
    assert istiod["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"] is True
    gateway = installed["istio-ingressgateway"].inputs["values"]["gateways"]["istio-ingressgateway"]
    assert gateway["type"] == "NodePort"
    node_ports = {port["name"]: port.get("nodePort") for port in gateway["ports"]}
    assert node_ports == {"status-port": None, "http2": 30080, "https": 30443}
    assert gateway["autoscaleEnabled"] is False


def test_prod_values_suit_a_cloud_cluster(prod):
    installed = releases(prod)
    istiod = installed["istiod"].inputs["values"]
    assert istiod["global"]["jwtPolicy"] == "third-party-jwt"
    assert istiod["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    # The chart's HPA decides istiod's replicas (it ignores replicaCount then); two at least in production.
    assert (istiod["pilot"]["autoscaleEnabled"], istiod["pilot"]["autoscaleMin"]) == (True, 2)
    assert "replicaCount" not in istiod["pilot"]
    values = installed["istio-ingressgateway"].inputs["values"]
    gateway = values["gateways"]["istio-ingressgateway"]
    assert gateway["type"] == "LoadBalancer"
    assert all("nodePort" not in port for port in gateway["ports"])
    assert (gateway["autoscaleEnabled"], gateway["autoscaleMin"], gateway["autoscaleMax"]) == (True, 2, 6)
    assert istiod["global"]["defaultPodDisruptionBudget"] == {"enabled": True}


# What Istio 1.6.14's gateway chart labels the gateway pods with in istio-system (templates/deployment.yaml: the
# values' gateways.istio-ingressgateway.labels, then `release: istio`, `heritage: Tiller`, `chart: gateways`).
GATEWAY_POD_LABELS_1_6 = {"app": "istio-ingressgateway", "istio": "ingressgateway", "release": "istio",
                          "heritage": "Tiller", "chart": "gateways"}


def test_the_production_gateway_budget_selects_the_gateway_pods(prod):
    values = releases(prod)["istio-ingressgateway"].inputs["values"]
    # The chart's own budget selects `release: istio-ingressgateway` (the release name), which no pod carries.
    assert values["global"]["defaultPodDisruptionBudget"] == {"enabled": False}
    (budget,) = [r for r in prod.of_type("PodDisruptionBudget") if r.metadata.get("namespace") == "istio-system"]
    selector = budget.inputs["spec"]["selector"]["matchLabels"]
    assert selector.items() <= GATEWAY_POD_LABELS_1_6.items() and budget.inputs["spec"]["minAvailable"] == 1
    gateway = prod.named("Gateway", "bee-travels-gateway").inputs["spec"]["selector"]
    assert gateway.items() <= selector.items()  # the very pods the Gateway routes through
    assert prod.depends_on(budget, releases(prod)["istio-ingressgateway"])


def test_the_base_chart_gets_only_the_values_it_reads(prod, current):
    # Istio's base chart templates read istioNamespace (and imagePullSecrets, istiod.enableAnalysis, which stay unset).
    for run in (prod, current):
        assert releases(run)["istio-base"].inputs["values"] == {"global": {"istioNamespace": "istio-system"}}


def test_app_namespace_is_injected_by_label_and_waits_for_istiod(dev):
    namespace = dev.named("Namespace", "bee-travels")
    labels = namespace.metadata["labels"]
    assert labels["istio-injection"] == "enabled" and "istio.io/rev" not in labels
    assert dev.depends_on(namespace, releases(dev)["istiod"])


def test_a_revision_installs_a_revisioned_istiod_and_labels_the_namespace_with_it_only():
    run = run_stack("dev", {"istio.revision": "canary-1-6"})
    assert run.error is None, run.error
    installed = {r.inputs["name"]: r for r in run.of_type(RELEASE)}
    assert "istiod-canary-1-6" in installed
    assert installed["istiod-canary-1-6"].inputs["values"]["revision"] == "canary-1-6"
    assert installed["istio-ingressgateway"].inputs["values"]["revision"] == "canary-1-6"
    labels = run.named("Namespace", "bee-travels").metadata["labels"]
    assert labels["istio.io/rev"] == "canary-1-6" and "istio-injection" not in labels
    assert run.outputs["istioRevision"] == "canary-1-6"


def test_missing_charts_stop_the_program_with_the_command_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("ISTIO_CHARTS_CACHE", str(tmp_path / "empty"))
    run = run_stack("dev")
    assert isinstance(run.error, ChartsMissingError)
    assert "make istio-charts" in str(run.error)
    assert "python -m tools.istio_charts fetch --version 1.6.14" in str(run.error)
    assert run.resources == []


def test_current_istio_needs_no_local_charts(monkeypatch, tmp_path):
    monkeypatch.setenv("ISTIO_CHARTS_CACHE", str(tmp_path / "empty"))
    assert run_stack("prod", CURRENT_ISTIO).error is None


def test_a_charts_dir_missing_a_pinned_chart_stops_the_program_naming_the_pulls(tmp_path):
    """helm.chartsDir holding only some pinned charts: one error names the stack file, every missing archive and the
    `helm pull` that fetches each into that folder, before anything is registered; a complete folder is accepted."""
    folder = tmp_path / "charts"
    folder.mkdir()
    (folder / "grafana-9.2.2").mkdir()  # unpacked, as `helm pull --untar` leaves it
    run = run_stack("prod", {**CURRENT_ISTIO, "helm.chartsDir": str(folder)})
    assert isinstance(run.error, ChartsMissingError) and run.resources == []
    message = str(run.error)
    assert message.startswith(f"Pulumi.prod.yaml: helm.chartsDir is {folder}")
    for chart, repository, version in (("base", "https://istio-release.storage.googleapis.com/charts", "1.30.3"),
                                       ("prometheus", "https://prometheus-community.github.io/helm-charts", "27.20.0"),
                                       ("kiali-server", "https://kiali.org/helm-charts", "2.11.0")):
        assert f"{chart}-{version}.tgz" in message
        assert f"helm pull {chart} --repo {repository} --version {version} -d {folder}" in message
    assert "grafana" not in message
    for chart in ("base", "istiod", "gateway"):
        (folder / f"{chart}-1.30.3").mkdir()
    for archive in ("prometheus-27.20.0.tgz", "kiali-server-2.11.0.tgz"):
        (folder / archive).write_bytes(b"")
    assert run_stack("prod", {**CURRENT_ISTIO, "helm.chartsDir": str(folder)}).error is None


@pytest.mark.parametrize(("istio", "kubernetes", "accepted"), [
    ("1.6.14", "1.15", True), ("1.6.14", "1.18.20", True), ("1.6.14", "1.14", False), ("1.6.14", "1.19", False),
    ("1.6.14", "1.22", False), ("1.30.3", "1.32", True), ("1.30.3", "1.36", True), ("1.30.3", "1.31", False),
    ("1.30.3", "1.37", False),
])
def test_kubernetes_version_is_checked_against_the_istio_release(istio, kubernetes, accepted):
    run = run_stack("dev", {"istio.version": istio, "kubernetesVersion": kubernetes})
    if accepted:
        assert run.error is None, run.error
    else:
        message = str(run.error)
        minor = ".".join(istio.split(".")[:2])
        assert f"kubernetesVersion: is {kubernetes}, but Istio {minor} supports Kubernetes" in message
        assert run.resources == []


@pytest.mark.parametrize(("stack", "overrides", "pdb", "hpa"), [
    ("prod", {}, "policy/v1beta1", "autoscaling/v2beta2"),
    ("prod", {"kubernetesVersion": "1.15"}, "policy/v1beta1", "autoscaling/v2beta2"),
    ("prod", CURRENT_ISTIO, "policy/v1", "autoscaling/v2"),
])
def test_api_versions_follow_the_target_kubernetes_version(stack, overrides, pdb, hpa):
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    assert {r.manifest()["apiVersion"] for r in run.of_type("PodDisruptionBudget")} == {pdb}
    assert {r.manifest()["apiVersion"] for r in run.of_type("HorizontalPodAutoscaler")} == {hpa}


def test_istios_own_pods_run_under_the_runtimes_default_seccomp_profile(prod, current):
    # 1.6.14: pilot.podAnnotations and gateways.istio-ingressgateway.podAnnotations reach the pod templates (the
    # charts have no seccomp value, and Kubernetes 1.18 knows only the annotation). 1.30.3: istiod's seccompProfile
    # value and global.proxy.seccompProfile, which every sidecar the injector adds (the gateway's too) reads.
    old, new = releases(prod), releases(current)
    annotation = {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
    assert old["istiod"].inputs["values"]["pilot"]["podAnnotations"] == annotation
    assert old["istio-ingressgateway"].inputs["values"]["gateways"]["istio-ingressgateway"]["podAnnotations"] == annotation
    assert new["istiod"].inputs["values"]["pilot"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert new["istiod"].inputs["values"]["global"]["proxy"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_istio_16_gateway_runs_non_root_and_istio_pulls_as_the_stack_file_says(dev, prod, current):
    # 1.6.14 gateways/istio-ingress: runAsRoot (default true, for ports below 1024) off writes runAsUser 1337 and a
    # container with no escalation, no capabilities and a read-only root; the gateway listens on 8080 and 8443.
    gateway = releases(prod)["istio-ingressgateway"].inputs["values"]
    assert gateway["gateways"]["istio-ingressgateway"]["runAsRoot"] is False
    assert {port["name"]: port["targetPort"] for port in gateway["gateways"]["istio-ingressgateway"]["ports"]} == \
        {"status-port": 15021, "http2": 8080, "https": 8443}
    # global.imagePullPolicy: istiod's container and every sidecar its injector adds (on 1.30 the gateway is one of
    # them); the 1.6 gateway chart reads it for its own container.
    for run, policy in ((dev, "IfNotPresent"), (prod, "Always"), (current, "Always")):
        assert releases(run)["istiod"].inputs["values"]["global"]["imagePullPolicy"] == policy
    assert gateway["global"]["imagePullPolicy"] == "Always"
