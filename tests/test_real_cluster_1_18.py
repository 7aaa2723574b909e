"""The stacks this project exists for, dev and prod (Istio 1.6.14), on a real Kubernetes 1.18 API server.

Each stack gets a fresh simulated 1.18.20 control plane (tests/real_cluster.py) and goes through the pinned CLI and
the policy pack as its users run it, with the real charts (tests/real_charts.py): Istio 1.6.14's base, istiod and
ingress gateway from its release archive, and the Prometheus, Grafana and Kiali charts the 1.6 line pins. The only
edits to the committed stack files: the chart folders, a NodePort gateway (no load balancer answers here), and
PersistentVolumes made for the MongoDB claims. The server checks every object against exactly the APIs 1.18 serves
(apiextensions v1beta1 CRDs, policy/v1beta1 budgets, autoscaling/v2beta2, the seccomp annotations); pods become
Ready on kwok's fake nodes but no container runs, so there is no injection and no traffic.
Tests run in file order per stack, dev first: each stack's day is one sequence, ending with `pulumi destroy`.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from domain.mesh import ISTIO_NAMESPACE
from harness.pulumi_cli import Result, Workspace
from harness.real_charts import RealCharts, real_charts
from harness.sim_cluster import (
    SERVICE_RANGE,
    VOLUMES,
    SimCluster,
    declared_manifests,
    differences,
    helm_releases,
    kubectl,
    live,
    planned_changes,
    running,
    set_in_stack_file,
    up,
    weights,
    workloads_without_a_policy,
)
from tools.stack_run import StackRun, run_stack

KUBERNETES_VERSION = "1.18"
STACKS = ("dev", "prod")
# Every release a 1.6 stack with observability on installs, and its chart. Istio 1.6's charts all carry the chart
# version 1.1.0 (release archive, manifests/charts/*/Chart.yaml); its images say the release.
RELEASES = {"istio-base": "base-1.1.0", "istiod": "istio-discovery-1.1.0", "istio-ingressgateway": "istio-ingress-1.1.0",
            "prometheus": "prometheus-19.6.1", "grafana": "grafana-6.31.1", "kiali": "kiali-server-1.22.0"}
CANARY_STEP = {"dev": {"v1": 40, "v2": 60}, "prod": {"v1": 75, "v2": 25}}  # hotel's next weights
ROUTE = ("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-hotel-virtual-service")


@dataclass
class Deployed:
    stack: str
    workspace: Workspace
    cluster: SimCluster
    edits: dict
    charts: RealCharts
    first_up: Result

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def declared(self) -> StackRun:
        run = run_stack(self.stack, self.edits)
        assert run.error is None, run.error
        return run


@pytest.fixture(scope="module")
def charts() -> RealCharts:
    return real_charts()


@pytest.fixture(scope="module", params=STACKS)
def deployed(request, charts, tmp_path_factory):
    """`pulumi up` of the stack from an empty 1.18 cluster of its own."""
    stack = request.param
    root = tmp_path_factory.mktemp(f"real-cluster-1.18-{stack}")
    with running(KUBERNETES_VERSION, root / "cluster") as cluster:
        workspace = Workspace(root / "workspace", kubeconfig=cluster.kubeconfig)
        edits = charts.on({"istio.ingressGateway.serviceType": "NodePort",
                           # prod's fence names this server's address (its own, loopback); dev keeps "anywhere", as committed
                           **({"security.apiServerCidrs": ["127.0.0.1/32"]} if stack == "prod" else {})})
        workspace.init(stack, stack, edits)
        yield Deployed(stack, workspace, cluster, edits, charts, up(workspace, stack))


# ---- from an empty cluster -------------------------------------------------------------------------

def test_the_server_is_kubernetes_1_18_20_serving_exactly_1_18_s_apis(deployed):
    version = json.loads(kubectl(deployed.kubeconfig, "get", "--raw", "/version").stdout)
    assert (version["gitVersion"], version["minor"]) == ("v1.18.20", "18")
    served = set(kubectl(deployed.kubeconfig, "api-versions").stdout.split())
    assert {"apiextensions.k8s.io/v1beta1", "policy/v1beta1", "autoscaling/v2beta2", "admissionregistration.k8s.io/v1beta1"} <= served
    assert not {"policy/v1", "autoscaling/v2", "discovery.k8s.io/v1"} & served  # what 1.21 and later added


def test_up_from_empty_creates_every_object_the_stack_declares_with_its_declared_spec(deployed):
    missing, differing = differences(deployed.kubeconfig, declared_manifests(deployed.declared()))
    assert missing == []
    assert differing == [], "\n".join(differing)


def test_every_release_is_the_real_chart_deployed_with_what_it_rendered_on_the_server(deployed):
    releases = helm_releases(deployed.kubeconfig)
    assert {name: release.chart for name, release in releases.items()} == RELEASES
    assert {release.status for release in releases.values()} == {"deployed"}
    images = {container["image"] for release in ("istiod", "istio-ingressgateway") for manifest in releases[release].manifests
              if manifest["kind"] == "Deployment" for container in manifest["spec"]["template"]["spec"]["containers"]}
    assert images == {"docker.io/istio/pilot:1.6.14", "docker.io/istio/proxyv2:1.6.14"}
    for release in releases.values():
        assert release.manifests, f"{release.name} rendered nothing"
        missing, differing = differences(deployed.kubeconfig, release.manifests, release.namespace)
        assert (missing, differing) == ([], []), f"{release.name}: missing {missing}\n" + "\n".join(differing)


def test_istio_1_6_crds_from_the_base_chart_are_served_as_apiextensions_v1beta1(deployed):
    files = deployed.charts.crds("1.6.14")
    assert files, "the 1.6 base chart's crds/ folder is empty"
    crds = [document for file in files for document in yaml.safe_load_all(file.read_text())
            if document and document.get("kind") == "CustomResourceDefinition"]
    assert {crd["apiVersion"] for crd in crds} == {"apiextensions.k8s.io/v1beta1"}
    missing, differing = differences(deployed.kubeconfig, crds)
    assert (missing, differing) == ([], []), "\n".join(missing + differing)
    for crd in crds:
        found = live(deployed.kubeconfig, "customresourcedefinition", crd["metadata"]["name"], None)
        established = {c["type"]: c["status"] for c in found["status"]["conditions"]}
        assert established.get("Established") == "True", crd["metadata"]["name"]


def test_the_add_ons_real_charts_render_them_confined(deployed):
    """What tests/test_observability.py sets through the values, as the pinned charts render it on a 1.18 server: the
    runtime's default seccomp profile by pod annotation, Prometheus' server on a read-only root, no API token for
    Grafana's pods."""
    releases = helm_releases(deployed.kubeconfig)
    deployments = {name: [m for m in releases[name].manifests if m["kind"] == "Deployment"] for name in ("prometheus", "grafana", "kiali")}
    for name, found in deployments.items():
        assert found, f"{name} rendered no Deployment"
        for deployment in found:
            annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            assert annotations.get("seccomp.security.alpha.kubernetes.io/pod") == "runtime/default", deployment["metadata"]["name"]
    server = next(container for deployment in deployments["prometheus"] for container in deployment["spec"]["template"]["spec"]["containers"]
                  if container["name"] == "prometheus-server")
    assert server["securityContext"]["readOnlyRootFilesystem"] is True and server["securityContext"]["runAsNonRoot"] is True
    assert [d["spec"]["template"]["spec"].get("automountServiceAccountToken") for d in deployments["grafana"]] == [False]


def test_every_workload_in_istios_namespace_is_fenced_by_a_policy_that_selects_the_real_charts_pods(deployed):
    """The fence's pod selectors (builders/istio_fence.py, builders/addons.py) against the labels the pinned charts
    really give their pods on this server: istiod, the gateway, Prometheus, Grafana, Kiali and the tracing backend."""
    names, unselected = workloads_without_a_policy(deployed.kubeconfig, "istio-system")
    assert {"Deployment/istiod", "Deployment/istio-ingressgateway", "Deployment/prometheus", "Deployment/grafana",
            "Deployment/kiali", "Deployment/tracing"} <= set(names), names
    assert unselected == []


def test_every_workload_is_ready_on_the_fake_nodes(deployed):
    for kind in ("deployments", "statefulsets"):
        items = json.loads(kubectl(deployed.kubeconfig, "get", kind, "-A", "-o", "json").stdout)["items"]
        assert items
        unready = [f"{item['metadata']['namespace']}/{item['metadata']['name']}" for item in items
                   if item["status"].get("readyReplicas", 0) != item["spec"]["replicas"]]
        assert unready == [], f"{kind} not ready: {unready}"
    jobs = json.loads(kubectl(deployed.kubeconfig, "get", "jobs", "-A", "-o", "json").stdout)["items"]
    assert jobs and all(job["status"].get("succeeded") == 1 for job in jobs)


def test_the_server_tracked_the_fields_of_every_object_it_was_given(deployed):
    """A 1.18 server takes some objects it cannot track field by field (a container port declared twice) and only
    logs it; whoever then applies them server-side (kubectl --server-side, the provider) fails on the duplicate."""
    log = (deployed.cluster.state / "logs" / "kube-apiserver.log").read_text()
    failures = [line for line in log.splitlines() if "failed to update managedFields" in line]
    assert failures == [], "\n".join(failures)


def test_nothing_on_the_server_would_make_it_dial_a_fake_address(deployed):
    """The network rule of the tier: admission webhooks off, no aggregated API or conversion webhook to call, and
    every Service address on loopback."""
    arguments = deployed.cluster.apiserver_arguments()
    assert "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook" in arguments
    services = json.loads(kubectl(deployed.kubeconfig, "get", "apiservices", "-o", "json").stdout)["items"]
    assert [s["metadata"]["name"] for s in services if s["spec"].get("service")] == []
    crds = json.loads(kubectl(deployed.kubeconfig, "get", "crds", "-o", "json").stdout)["items"]
    assert [c["metadata"]["name"] for c in crds if c["spec"].get("conversion", {}).get("strategy") == "Webhook"] == []
    addresses = json.loads(kubectl(deployed.kubeconfig, "get", "services", "-A", "-o", "json").stdout)["items"]
    cluster_ips = [s["spec"]["clusterIP"] for s in addresses if s["spec"].get("clusterIP") not in (None, "None")]
    assert cluster_ips and all(ip.startswith(SERVICE_RANGE) and ipaddress.ip_address(ip).is_loopback for ip in cluster_ips)


# ---- the next runs ---------------------------------------------------------------------------------

def test_a_second_preview_plans_nothing_and_a_refresh_finds_no_drift(deployed):
    deployed.workspace.preview(deployed.stack, "--expect-no-changes")
    deployed.workspace.pulumi("refresh", "--stack", deployed.stack, "--yes", "--expect-no-changes")


def test_a_canary_step_plans_only_its_route_and_the_live_weights_follow(deployed):
    workspace, stack = deployed.workspace, deployed.stack
    set_in_stack_file(workspace, stack, "services.hotel.weights", CANARY_STEP[stack])
    assert planned_changes(workspace, stack) == {ROUTE: "update"}
    up(workspace, stack)
    assert weights(deployed.kubeconfig, "hotel") == CANARY_STEP[stack]
    deployed.workspace.preview(stack, "--expect-no-changes")


def test_the_state_holds_generated_passwords_and_keys_only_as_ciphertext(deployed):
    exported = deployed.workspace.pulumi("stack", "export", "--stack", deployed.stack).stdout
    state = json.loads(exported)
    root = live(deployed.kubeconfig, "secret", "mongodb-root", "bee-travels")
    password = base64.b64decode(root["data"]["password"]).decode()
    assert len(password) == 32 and password not in exported
    declared = len(deployed.declared().of_type("RandomPassword"))
    passwords = [r for r in state["deployment"]["resources"] if r["type"] == "random:index/randomPassword:RandomPassword"]
    assert len(passwords) == declared >= 2  # MongoDB's root password and Grafana's admin password at least
    for resource in passwords:
        for field in ("result", "bcryptHash"):
            assert set(resource["outputs"][field]) == {"4dabf18193072939515e22adb298388d", "ciphertext"}, field


# ---- teardown --------------------------------------------------------------------------------------

def test_destroy_stops_at_prod_s_protected_data_and_removes_all_of_dev(deployed):
    workspace, kubeconfig = deployed.workspace, deployed.kubeconfig
    result = workspace.pulumi("destroy", "--stack", deployed.stack, "--yes", "--skip-preview", check=False, timeout=1500)
    claims = json.loads(kubectl(kubeconfig, "get", "pvc", "-n", "bee-travels", "-o", "json", check=False).stdout or '{"items": []}')["items"]
    if deployed.stack == "prod":
        assert result.returncode != 0 and "protect" in result.output
        members = deployed.declared().named("StatefulSet", "mongodb").inputs["spec"]["replicas"]
        assert len(claims) == members <= VOLUMES and all(claim["status"]["phase"] == "Bound" for claim in claims)
        assert live(kubeconfig, "secret", "mongodb-root", "bee-travels") is not None
        assert live(kubeconfig, "statefulset", "mongodb", "bee-travels") is not None
    else:
        assert result.returncode == 0, result.output[-3000:]
        assert helm_releases(kubeconfig) == {}
        assert [namespace for namespace in ("bee-travels", ISTIO_NAMESPACE) if live(kubeconfig, "namespace", namespace, None)] == []
