"""The offline render reviewers diff in pull requests: deterministic, one file per object, valid YAML, secrets masked."""

import filecmp

import pytest
import yaml
from test_workloads import CLOUD, CLOUD_SECRETS

from tools import render
from tools.stack_run import ROOT, run_stack


@pytest.fixture(scope="module", params=["dev", "prod"])
def rendered(request):
    return request.param, render.render_stack(request.param)


def test_render_is_byte_identical_across_runs(rendered, tmp_path):
    stack, files = rendered
    again = render.render_stack(stack)
    assert again == files
    render.write_files(tmp_path / "first", files)
    render.write_files(tmp_path / "second", again)
    comparison = filecmp.dircmp(tmp_path / "first", tmp_path / "second")
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only


def test_one_valid_yaml_file_per_kubernetes_object(rendered, request):
    stack, files = rendered
    run = request.getfixturevalue(stack)
    manifests = {path: yaml.safe_load(text) for path, text in files.items() if path.startswith("kubernetes/")}
    declared = {(r.kind, r.metadata.get("namespace"), r.k8s_name) for r in run.kubernetes_objects()}
    found = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in manifests.values()}
    assert found == declared and len(manifests) == len(declared)
    assert all(m["apiVersion"] and m["kind"] == path.rsplit("/", 1)[1].split(".", 1)[0] for path, m in manifests.items())


def test_helm_releases_are_listed_with_chart_version_and_values(rendered):
    stack, files = rendered
    releases = {path: yaml.safe_load(text) for path, text in files.items() if path.startswith("helm/")}
    by_name = {r["release"]: r for r in releases.values()}
    assert set(by_name) == {"istio-base", "istio-ingressgateway", "istiod", "prometheus", "grafana", "kiali"}
    for name in ("istio-base", "istio-ingressgateway", "istiod"):
        assert by_name[name]["chart"].startswith(".cache/istio/istio-1.6.14/manifests/charts/")
        assert isinstance(by_name[name]["values"], dict) and by_name[name]["values"]["global"]["istioNamespace"] == "istio-system"
    assert by_name["istiod"]["values"]["global"]["tag"] == by_name["istio-ingressgateway"]["values"]["global"]["tag"] == "1.6.14"
    for name in ("prometheus", "grafana", "kiali"):
        assert by_name[name]["repository"].startswith("https://") and by_name[name]["version"]
        assert isinstance(by_name[name]["values"], dict) and by_name[name]["values"]


def test_current_istio_releases_name_the_repository_and_version():
    files = render.render_stack("prod", {"istio.version": "1.30.3", "kubernetesVersion": "1.33"})
    istiod = yaml.safe_load(files["helm/istio-istiod.yaml"])
    assert (istiod["chart"], istiod["version"], istiod["repository"]) == (
        "istiod", "1.30.3", "https://istio-release.storage.googleapis.com/charts")


def test_secrets_are_masked_everywhere_including_config_secrets(istio_chart_cache):
    run = run_stack("prod", CLOUD, secrets=CLOUD_SECRETS)
    assert run.error is None
    files = render.render_files(run, chart_cache=str(istio_chart_cache))
    text = "\n".join(files.values())
    for secret in (*CLOUD_SECRETS.values(), "s3cret", "mock-password", "mockuser"):
        assert secret not in text
    for path in (p for p in files if "/Secret." in p):
        secret = yaml.safe_load(files[path])
        assert set((secret.get("stringData") or secret.get("data")).values()) == {render.MASK}
    assert yaml.safe_load(files["outputs.yaml"])["mongoConnectionUrl"] == render.MASK


def test_protection_is_visible_to_reviewers(rendered):
    stack, files = rendered
    statefulset = files["kubernetes/bee-travels/StatefulSet.mongodb.yaml"]
    assert ("# pulumi options: protect retainOnDelete" in statefulset) == (stack == "prod")


def test_a_removed_object_disappears_from_the_folder(tmp_path):
    render.write_files(tmp_path, {"kubernetes/ns/Service.old.yaml": "kind: Service\n"})
    render.write_files(tmp_path, {"outputs.yaml": "{}\n"})
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["outputs.yaml"]


# ---- the routing diagram --------------------------------------------------------------------------

def test_diagram_shows_every_weight_match_route_and_the_mtls_mode(rendered, request):
    stack, files = rendered
    run = request.getfixturevalue(stack)
    diagram = files["routing.md"]
    assert f"mTLS {run.outputs['mtlsMode']}" in diagram
    for service, weights in run.outputs["canaryWeights"].items():
        for version, weight in weights.items():
            if weight:
                assert f'{service.replace("-", "_")} -->|"{weight}%"| {service.replace("-", "_")}_{version}' in diagram
    assert '-.->|"x-bee-canary: true"| hotel_v2' in diagram
    assert "gateway --> bee_ui" in diagram and "bee_ui_versions --> hotel" in diagram
    assert "api.exchangeratesapi.io (ServiceEntry)" in diagram


def test_diagram_follows_the_stack_file(istio_chart_cache):
    moved = run_stack("dev", {"services.destination.weights": {"v1": 25, "v2": 75}})
    diagram = render.routing_diagram(moved)
    assert 'destination -->|"25%"| destination_v1' in diagram and 'destination -->|"75%"| destination_v2' in diagram
    cloud = render.routing_diagram(run_stack("dev", CLOUD, secrets=CLOUD_SECRETS))
    assert "destination_v3 --> cloud_database" in cloud
    # destination's json and cloud versions have a Sidecar each; its egress to the database is still one edge.
    assert cloud.count("destination_versions -.-> external_") == 1


def test_readme_shows_the_current_diagram_for_dev_and_prod(rendered):
    stack, files = rendered
    readme = (ROOT / "README.md").read_text()
    assert render.with_readme_diagram(readme, stack, render.routing_diagram_from(files)) == readme, (
        f"README's {stack} routing diagram is stale: run `make render`")
    start, _ = render.readme_block_markers(stack)
    assert start in readme
