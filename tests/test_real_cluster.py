"""The real engine against a real Kubernetes 1.33 API server: `pulumi up`, day-2 edits and `pulumi destroy`.

The server is the simulated 1.33 control plane of tests/real_cluster.py, so objects are accepted, defaulted, owned and
garbage-collected for real and pods become Ready, but no container runs. The stack is the current-Istio one (prod on
Istio 1.30 / Kubernetes 1.33) as users run it, with the real charts it pins (tests/real_charts.py): Istio 1.30.3's
base (its CRDs), istiod and gateway, and the Prometheus, Grafana and Kiali charts of the current line. Edits: the
charts folder, a NodePort gateway, rate limits (so the server checks EnvoyFilters against Istio's CRD), and
PersistentVolumes made for the MongoDB claims. Tests run in file order on one stack, as a platform engineer's day
goes. The dev and prod stacks themselves (Istio 1.6 on Kubernetes 1.18) run in tests/test_real_cluster_1_18.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from test_diagnose import canned_prometheus  # noqa: F401 - Prometheus answering hand-written errors, as a fixture
from test_promote import prometheus  # noqa: F401 - the local Prometheus stand-in, as a fixture

from harness.pulumi_cli import PROJECT, Workspace
from harness.real_charts import real_charts
from harness.sim_cluster import (
    VOLUMES,
    declared_manifests,
    differences,
    helm_releases,
    kubectl,
    live,
    planned_changes,
    running,
    set_in_stack_file,
    stack_file,
    up,
    weights,
    workloads_without_a_policy,
)
from harness.stacks import CURRENT_ISTIO
from tools.stack_files import load_stack_settings
from tools.stack_run import DELETE, ROOT, run_stack

STACK = "current"
KUBERNETES_VERSION = "1.33"
RELEASES = {"istio-base": "base-1.30.3", "istiod": "istiod-1.30.3", "istio-ingressgateway": "gateway-1.30.3",
            "prometheus": "prometheus-27.20.0", "grafana": "grafana-9.2.2", "kiali": "kiali-server-2.11.0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A fresh simulated 1.33 cluster for this module, stopped after it."""
    with running(KUBERNETES_VERSION, tmp_path_factory.mktemp("sim-cluster")) as started:
        yield started.kubeconfig


EDITS = {**CURRENT_ISTIO, "istio.ingressGateway.serviceType": "NodePort"}
# Rate limits too, so the API server checks the EnvoyFilters against Istio's real EnvoyFilter CRD.
RATE_LIMITS = {"services.destination.rateLimit": {"requests": 100}, "istio.ingressGateway.rateLimit": {"requests": 1000}}


def current_edits() -> dict:
    """The current-Istio stack with the real charts, as this tier and the upgrade test run it."""
    return real_charts().on(EDITS)


@pytest.fixture(scope="module")
def initialized(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("real-cluster")
    workspace = Workspace(root / "workspace", kubeconfig=cluster)
    edits = {**current_edits(), **RATE_LIMITS}
    workspace.init(STACK, "prod", edits)
    return workspace, cluster, edits


@pytest.fixture
def stack(initialized):
    """The deployed stack: as the first test left it, or deployed now when a later test runs on its own
    (`pytest -k step_2`). Each test below sets up what it starts from; in file order they are one day's walkthrough."""
    workspace = initialized[0]
    if workspace.root not in _DEPLOYED:
        if not json.loads(workspace.pulumi("stack", "export", "--stack", STACK).stdout)["deployment"].get("resources"):
            _up(workspace)
        _DEPLOYED.add(workspace.root)
    return initialized


_DEPLOYED: set[Path] = set()  # workspaces known to hold a deployed stack


def _up(workspace: Workspace, *extra: str):
    return up(workspace, STACK, *extra)


def _stack_file(workspace: Workspace) -> Path:
    return stack_file(workspace, STACK)


def _set(workspace: Workspace, path: str, value) -> None:
    set_in_stack_file(workspace, STACK, path, value)


def _plan(workspace: Workspace) -> dict[tuple[str, str], str]:
    return planned_changes(workspace, STACK)


# ---- 1. from an empty cluster ----------------------------------------------------------------------

def test_up_from_an_empty_cluster_creates_every_declared_object_with_its_declared_spec(initialized):
    workspace, kubeconfig, edits = initialized
    _up(workspace)
    declared = run_stack("prod", edits)
    assert declared.error is None, declared.error
    missing, differing = differences(kubeconfig, declared_manifests(declared))
    assert missing == []
    assert differing == [], "\n".join(differing)


def test_every_release_is_the_real_chart_deployed_with_what_it_rendered_on_the_server(stack):
    """Istio 1.30's base chart renders its CRDs as templates, so they are among what it rendered."""
    _, kubeconfig, _ = stack
    releases = helm_releases(kubeconfig)
    assert {name: release.chart for name, release in releases.items()} == RELEASES
    assert {release.status for release in releases.values()} == {"deployed"}
    crds = [m for m in releases["istio-base"].manifests if m["kind"] == "CustomResourceDefinition"]
    assert {"virtualservices.networking.istio.io", "envoyfilters.networking.istio.io"} <= {c["metadata"]["name"] for c in crds}
    for release in releases.values():
        assert release.manifests, f"{release.name} rendered nothing"
        missing, differing = differences(kubeconfig, release.manifests, release.namespace)
        assert (missing, differing) == ([], []), f"{release.name}: missing {missing}\n" + "\n".join(differing)
    deployments = [m for release in releases.values() for m in release.manifests if m["kind"] == "Deployment"]
    for manifest in deployments:
        found = live(kubeconfig, "deployment", manifest["metadata"]["name"], manifest["metadata"].get("namespace", "istio-system"))
        assert found["status"].get("readyReplicas") == found["spec"]["replicas"], manifest["metadata"]["name"]


def test_every_workload_in_istios_namespace_is_fenced_by_a_policy_that_selects_the_real_charts_pods(stack):
    """The fence's pod selectors against the labels Istio 1.30's charts and the current add-on charts really render:
    Prometheus 27 labels its pods without `app`, the gateway chart names its `app` after the release."""
    _, kubeconfig, _ = stack
    names, unselected = workloads_without_a_policy(kubeconfig, "istio-system")
    assert {"Deployment/istiod", "Deployment/istio-ingressgateway", "Deployment/prometheus", "Deployment/grafana",
            "Deployment/kiali", "Deployment/tracing"} <= set(names), names
    assert unselected == []


def test_a_second_preview_plans_no_change_and_a_refresh_finds_no_drift(stack):
    workspace, _, _ = stack
    workspace.preview(STACK, "--expect-no-changes")
    workspace.pulumi("refresh", "--stack", STACK, "--yes", "--expect-no-changes")


def test_the_state_holds_generated_passwords_and_keys_only_as_ciphertext(stack):
    workspace, kubeconfig, _ = stack
    exported = workspace.pulumi("stack", "export", "--stack", STACK).stdout
    state = json.loads(exported)
    live_secret = live(kubeconfig, "secret", "mongodb-root", "bee-travels")
    password = base64.b64decode(live_secret["data"]["password"]).decode()
    assert len(password) == 32 and password not in exported
    passwords = [r for r in state["deployment"]["resources"] if r["type"] == "random:index/randomPassword:RandomPassword"]
    assert len(passwords) == 3  # MongoDB's root password and replica-set key, Grafana's admin password
    for resource in passwords:
        for field in ("result", "bcryptHash"):
            assert set(resource["outputs"][field]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}, field


# ---- 2. the canary walkthrough (docs/canary.md) ------------------------------------------------------------

def test_step_2_half_the_traffic_plans_only_the_route_and_the_live_weights_follow(stack):
    workspace, kubeconfig, _ = stack
    _set(workspace, "services.hotel.weights", {"v1": 50, "v2": 50})
    assert _plan(workspace) == {("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-hotel-virtual-service"): "update"}
    _up(workspace)
    assert weights(kubeconfig, "hotel") == {"v1": 50, "v2": 50}


def test_step_3_all_traffic_and_a_roll_back_touch_only_the_route(stack):
    workspace, kubeconfig, _ = stack
    for step in ({"v1": 0, "v2": 100}, {"v1": 100, "v2": 0}, {"v1": 90, "v2": 10}):
        _set(workspace, "services.hotel.weights", step)
        assert _plan(workspace) == {("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-hotel-virtual-service"): "update"}
        _up(workspace)
        assert weights(kubeconfig, "hotel") == step


def test_make_promote_apply_moves_the_weight_through_the_automation_api_and_the_live_route_follows(stack, prometheus):  # noqa: F811
    """hotel at 90/10 and healthy on a local Prometheus stand-in: promotion advances to 25% and applies it."""
    workspace, kubeconfig, _ = stack
    promoted = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.promote", "--stack", STACK, "--service", "hotel",
         "--stack-file", str(_stack_file(workspace)), "--prometheus", prometheus.url, "--apply"],
        cwd=ROOT, env=workspace.env, capture_output=True, text=True, timeout=1500, check=False)
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-3000:]
    assert "ADVANCE" in promoted.stdout
    in_file = yaml.safe_load(_stack_file(workspace).read_text())["config"][f"{PROJECT}:services"]["hotel"]["weights"]
    assert in_file == {"v1": 75, "v2": 25}
    assert weights(kubeconfig, "hotel") == in_file
    assert not (ROOT / f"Pulumi.{STACK}.yaml").exists(), "the promotion wrote a stack file into the repository"


def test_step_1_a_new_canary_routes_only_after_its_subset_and_its_ready_pods(stack):
    workspace, kubeconfig, _ = stack
    _set(workspace, "services.currencyexchange.versions.v2", {"tier": "json"})
    _set(workspace, "services.currencyexchange.weights", {"v1": 90, "v2": 10})
    plan = _plan(workspace)
    assert plan[("kubernetes:apps/v1:Deployment", "currencyexchange-v2-deployment")] == "create"
    assert plan[("kubernetes:networking.istio.io/v1beta1:DestinationRule", "traffic-currencyexchange-destination-rule")] == "update"
    assert plan[("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-currencyexchange-virtual-service")] == "update"
    events = _up(workspace).events

    def position(kind: str, suffix: str, event: str) -> int:
        return next(index for index, e in enumerate(events)
                    if event in e and e[event]["metadata"]["type"].endswith(kind) and e[event]["metadata"]["urn"].endswith(suffix))

    route_starts = position("VirtualService", "::traffic-currencyexchange-virtual-service", "resourcePreEvent")
    assert position("DestinationRule", "::traffic-currencyexchange-destination-rule", "resOutputsEvent") < route_starts
    # The Deployment's create ends when the provider has seen its pods Ready.
    assert position("Deployment", "::currencyexchange-v2-deployment", "resOutputsEvent") < route_starts
    assert weights(kubeconfig, "currencyexchange") == {"v1": 90, "v2": 10}
    assert live(kubeconfig, "deployment", "currencyexchange-v2", "bee-travels")["status"].get("readyReplicas") == 2


RETIRE_V1 = {  # what docs/canary.md's step 4 says retiring hotel v1 plans
    ("kubernetes:apps/v1:Deployment", "hotel-v1-deployment"): "delete",
    ("kubernetes:policy/v1:PodDisruptionBudget", "hotel-v1-pdb"): "delete",
    # v1 was hotel's only json-tier version, so its identity and that identity's Sidecar go with it.
    ("kubernetes:core/v1:ServiceAccount", "hotel-service-account"): "delete",
    ("kubernetes:networking.istio.io/v1beta1:Sidecar", "security-hotel-sidecar"): "delete",
    ("kubernetes:networking.istio.io/v1beta1:DestinationRule", "traffic-hotel-destination-rule"): "update",
    ("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-hotel-virtual-service"): "update",
}


def test_step_4_retiring_the_old_version_plans_what_the_readme_says(stack):
    workspace, kubeconfig, _ = stack
    _set(workspace, "services.hotel.weights", {"v1": 0, "v2": 100})
    _up(workspace)
    _set(workspace, "services.hotel.versions.v1", DELETE)
    _set(workspace, "services.hotel.weights.v1", DELETE)
    plan = _plan(workspace)
    # The per-version alerts and the canary dashboard follow the deployed versions.
    observability = {key for key in plan if key[1].startswith("observability-") and plan[key] == "update"}
    assert {key: op for key, op in plan.items() if key not in observability} == RETIRE_V1, sorted(plan.items())
    _up(workspace)
    assert live(kubeconfig, "deployment", "hotel-v1", "bee-travels") is None
    assert weights(kubeconfig, "hotel") == {"v2": 100}


GROW_TO_FIVE = {  # docs/operations.md, Replica set: more members in place, the connection Secret updated, not replaced
    ("kubernetes:apps/v1:StatefulSet", "mongodb-statefulset"): "update",
    ("kubernetes:policy/v1:PodDisruptionBudget", "mongodb-pdb"): "update",
    ("kubernetes:core/v1:Secret", "mongodb-connection"): "update",
    # Its pod template is immutable: the Job is replaced, so it runs again with the new members.
    ("kubernetes:batch/v1:Job", "mongodb-replica-set-init"): "create-replacement",
}


def test_growing_the_replica_set_changes_the_members_in_place(stack):
    workspace, kubeconfig, _ = stack
    _set(workspace, "mongodb.replicas", VOLUMES)
    assert _plan(workspace) == GROW_TO_FIVE
    _up(workspace)
    members = live(kubeconfig, "statefulset", "mongodb", "bee-travels")
    assert members["spec"]["replicas"] == VOLUMES and members["status"].get("readyReplicas") == VOLUMES
    assert live(kubeconfig, "poddisruptionbudget", "mongodb", "bee-travels")["spec"]["minAvailable"] == 3
    job = live(kubeconfig, "job", "mongodb-replica-set-init", "bee-travels")
    assert job["status"].get("succeeded") == 1
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert all(f"mongodb-{member}.mongodb-headless:27017" in env["MEMBERS_SCRIPT"] for member in range(VOLUMES))


def _settles_at(kubeconfig: Path, deployment: str, replicas: int, seconds: float = 60) -> bool:
    """The live Deployment's count reaches `replicas` (the autoscaler controller acts within its 15 s sync)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if live(kubeconfig, "deployment", deployment, "bee-travels")["spec"]["replicas"] == replicas:
            return True
        time.sleep(2)
    return False


def _autoscaler(kubeconfig: Path, name: str) -> tuple[int, int] | None:
    found = live(kubeconfig, "horizontalpodautoscalers.autoscaling", name, "bee-travels")
    return (found["spec"]["minReplicas"], found["spec"]["maxReplicas"]) if found else None


def test_autoscaling_on_then_off_moves_the_count_without_a_drop_or_a_conflict(stack):
    """The controller manager's autoscaler runs here (without metrics it still holds a Deployment to its range)."""
    workspace, kubeconfig, _ = stack
    _set(workspace, "services.currencyexchange.autoscaling",
         {"enabled": True, "minReplicas": 3, "maxReplicas": 4, "targetCpuPercent": 70})
    _up(workspace)
    assert _autoscaler(kubeconfig, "currencyexchange-v1") == (3, 4)
    assert _settles_at(kubeconfig, "currencyexchange-v1", 3)  # the autoscaler's manager now owns the count
    _set(workspace, "services.currencyexchange.autoscaling.enabled", False)
    _up(workspace)
    assert _autoscaler(kubeconfig, "currencyexchange-v1") == (2, 2)  # pinned at prod's fixed 2 for this update
    assert _settles_at(kubeconfig, "currencyexchange-v1", 2)
    # Also a new count: the pinned autoscaler would scale it back, so it is re-pinned there first...
    _set(workspace, "services.currencyexchange.replicas", 3)
    _up(workspace)
    assert _autoscaler(kubeconfig, "currencyexchange-v1") == (3, 3) and _settles_at(kubeconfig, "currencyexchange-v1", 3)
    # ...and removed by the next update, whose count the server takes from the autoscaler's manager without a conflict.
    _up(workspace)
    assert _autoscaler(kubeconfig, "currencyexchange-v1") is None
    assert _settles_at(kubeconfig, "currencyexchange-v1", 3, seconds=20)
    assert _plan(workspace) == {}


# ---- 3. mistakes and teardown ----------------------------------------------------------------------

def test_a_bad_edit_changes_nothing_on_the_server(stack):
    workspace, kubeconfig, _ = stack
    before = live(kubeconfig, "virtualservices.networking.istio.io", "carrental", "bee-travels")
    stack_file = _stack_file(workspace)
    saved = stack_file.read_text()
    document = yaml.safe_load(saved)
    document["config"][f"{PROJECT}:services"]["carrental"]["weights"] = {"v1": 80, "v2": 10}  # adds up to 90
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    refused = workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", check=False)
    stack_file.write_text(saved)
    assert refused.returncode != 0 and "add up to 90" in refused.output
    after = live(kubeconfig, "virtualservices.networking.istio.io", "carrental", "bee-travels")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def _drift(workspace: Workspace, kubeconfig: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.drift", "--stack", STACK,
                           "--stack-file", str(_stack_file(workspace)), "--kubeconfig", str(kubeconfig)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_a_hand_edited_route_is_drift_that_the_nightly_checks_report_and_a_refreshed_up_takes_back(stack):
    workspace, kubeconfig, _ = stack
    assert _drift(workspace, kubeconfig).returncode == 0
    declared = weights(kubeconfig, "carrental")
    routes = live(kubeconfig, "virtualservices.networking.istio.io", "carrental", "bee-travels")["spec"]["http"]
    index = next(i for i, route in enumerate(routes) if route["name"] == "weighted")
    kubectl(kubeconfig, "patch", "virtualservices.networking.istio.io", "carrental", "-n", "bee-travels", "--type=json", "-p",
            json.dumps([{"op": "replace", "path": f"/spec/http/{index}/route/{leg}/weight", "value": 50} for leg in (0, 1)]))
    found = _drift(workspace, kubeconfig)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "carrental route weighted: live v1 50%, v2 50%; stack file v1 90%, v2 10%" in found.stdout
    refreshed = workspace.pulumi("preview", "--stack", STACK, "--refresh", "--expect-no-changes", check=False)
    assert refreshed.returncode != 0, "a refreshed preview must see the hand edit"
    # A plain `pulumi up` compares with the state, which still holds 90/10, and changes nothing; with --refresh it
    # reads the hand edit, and takes the weights back from kubectl's field manager instead of failing on the conflict.
    _up(workspace, "--refresh")
    assert weights(kubeconfig, "carrental") == declared and _drift(workspace, kubeconfig).returncode == 0


@pytest.mark.parametrize(("edits", "key", "fix"), [
    ({"istio.revision": "1-30"}, "istio.revision", "create a new stack"),
    # (without the rate limits, which Istio 1.6 would refuse first)
    ({"istio.version": "1.6.14", "kubernetesVersion": "1.18", **dict.fromkeys(RATE_LIMITS, DELETE)}, "istio.version",
     "create a new stack"),
    # Istio 1.30 supports 1.32, so only the live server's own /version shows the stack file is wrong.
    ({"kubernetesVersion": "1.32"}, "kubernetesVersion", 'runs Kubernetes 1.33.13; set kubernetesVersion: "1.33"'),
])
def test_a_change_the_running_stack_cannot_take_is_refused_before_anything_is_registered(stack, edits, key, fix):
    """The stack's own outputs, read back through the real engine, say what runs; the API server says its version."""
    workspace, kubeconfig, _ = stack
    before = live(kubeconfig, "virtualservices.networking.istio.io", "carrental", "bee-travels")
    saved = _stack_file(workspace).read_text()
    for path, value in edits.items():
        _set(workspace, path, value)
    refused = workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", check=False)
    _stack_file(workspace).write_text(saved)
    assert refused.returncode != 0 and f"{PROJECT}:{key}: " in refused.output and fix in refused.output, refused.output[-3000:]
    after = live(kubeconfig, "virtualservices.networking.istio.io", "carrental", "bee-travels")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def _diagnose(workspace: Workspace, kubeconfig: Path, prometheus_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.diagnose", "--stack", STACK, "--stack-file",
                           str(_stack_file(workspace)), "--kubeconfig", str(kubeconfig), "--no-istioctl", "--prometheus", prometheus_url],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def _ready_pods(kubeconfig: Path, selector: str) -> int:
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-n", "bee-travels", "-l", selector, "-o", "json").stdout)["items"]
    return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])) for pod in pods)


def test_diagnose_reads_the_live_cluster_and_names_a_canary_subset_left_without_pods(stack, canned_prometheus):  # noqa: F811
    """The checks that need only the API server, on the live objects; istioctl's are tested on recorded outputs."""
    workspace, kubeconfig, _ = stack
    settings = load_stack_settings(STACK, _stack_file(workspace))
    found = _diagnose(workspace, kubeconfig, canned_prometheus.url)
    assert found.returncode == 1, found.stdout + found.stderr
    # No injector runs here, so every app pod is one without a sidecar: each version is named once.
    versions = {f"{name} {version}" for name, service in settings.services.items() for version in service.versions}
    sidecarless = {line.split("] ", 1)[1].split(":")[0] for line in found.stdout.splitlines() if line.startswith("[sidecar] ")}
    assert sidecarless == versions
    assert "[subset]" not in found.stdout and "[routes]" not in found.stdout and "[mtls]" not in found.stdout
    assert "bee-travels: STRICT" in found.stdout.split("---- mTLS in force ----")[1]
    assert "[errors] carrental v2: 37 × 503 UH in the last 10m from bee-ui-v1" in found.stdout  # the recorded answer
    # The canary's pods go: its subset is named with the share of traffic the stack file still sends it.
    replicas = json.loads(kubectl(kubeconfig, "get", "deployment", "carrental-v2", "-n", "bee-travels", "-o", "json").stdout)["spec"]["replicas"]
    kubectl(kubeconfig, "scale", "deployment", "carrental-v2", "-n", "bee-travels", "--replicas=0")
    deadline = time.monotonic() + 90
    while _ready_pods(kubeconfig, "app=carrental,version=v2") and time.monotonic() < deadline:
        time.sleep(1)
    emptied = _diagnose(workspace, kubeconfig, canned_prometheus.url)
    kubectl(kubeconfig, "scale", "deployment", "carrental-v2", "-n", "bee-travels", f"--replicas={replicas}")
    weight = settings.services["carrental"].effective_weights()["v2"]
    assert f"[subset] carrental subset v2 has no ready pod (the stack file routes it {weight}%: those requests end in 503 UH)" in emptied.stdout


def test_destroy_stops_at_the_protected_data_and_the_volume_claims_survive(stack):
    workspace, kubeconfig, _ = stack
    refused = workspace.pulumi("destroy", "--stack", STACK, "--yes", "--skip-preview", check=False, timeout=1500)
    assert refused.returncode != 0
    assert "protect" in refused.output
    claims = json.loads(kubectl(kubeconfig, "get", "pvc", "-n", "bee-travels", "-o", "json").stdout)["items"]
    assert len(claims) == VOLUMES and all(claim["status"]["phase"] == "Bound" for claim in claims)
    assert live(kubeconfig, "secret", "mongodb-root", "bee-travels") is not None
