"""A stack created by the code before one component per service, previewed by today's code on a real API server.

The older program is this repository's own tree at OLD_CODE (`git archive`), run by the same pinned toolchain. It
creates the current-Istio prod stack, with the real charts, on the simulated 1.33 cluster; then the workspace switches to today's program and
stack file, and `pulumi preview` must plan no resource that goes away and comes back under a new URN: every move to
a new parent is covered by an alias. What is replaced is named below, each with the change that replaces it.
"""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO

import pytest
from test_real_cluster import cluster, current_edits  # noqa: F401 - a simulated cluster of its own, as a fixture

from harness.pulumi_cli import Workspace, planned_resources
from tools.stack_run import ROOT

# The last commit before MeshService took each service's resources from the workload, traffic and security
# components (c8002dc): its stacks have every resource at the old URNs.
OLD_CODE = "f9c170a6fc9d1c80bb3dd24b65c18d0ea733bbd7"
STACK = "upgraded"
# Replaced by today's code on purpose: the replica-set Job's script now also reconciles the members (its pod
# template is immutable, so a new script is a new Job, which runs again and changes nothing on a settled set).
REPLACED_ON_PURPOSE = {("kubernetes:batch/v1:Job", "mongodb-replica-set-init"),
                       # The seeding Jobs now run on a read-only root: replaced, they run again, and the seeder drops
                       # and re-inserts the bundled catalogue, as it does on every change of the seed image.
                       *(("kubernetes:batch/v1:Job", f"mongodb-seed-{service}") for service in ("carrental", "destination", "hotel")),
                       # The canary dashboard's queries now name each service's namespace (the app stacks of one
                       # platform may run services of the same name); the provider replaces a ConfigMap whose data
                       # changes, and Grafana reads the new one from its mount.
                       ("kubernetes:core/v1:ConfigMap", "observability-bee-travels-grafana-dashboards")}
COMPONENT_TYPES = ("beetravels:",)  # our ComponentResources: logical groupings, nothing on the server
# Kinds today's code adds that the old code had none of: the NetworkPolicy layer.
ADDED_SINCE = {"kubernetes:networking.k8s.io/v1:NetworkPolicy"}
# Objects the prod stack file has asked for since: the ingress gateway's connection rate limit.
ADDED_TO_THE_STACK_FILE = {("kubernetes:networking.istio.io/v1alpha3:EnvoyFilter", "traffic-gateway-rate-limit")}
GOING_AWAY = {"delete", "replace", "create-replacement", "delete-replaced", "discard", "discard-replaced"}


def _old_tree(root) -> object:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", OLD_CODE], capture_output=True, check=False)
    assert archive.returncode == 0, (
        f"this test needs the repository's history back to {OLD_CODE[:7]} (a full clone): {archive.stderr.decode()[-500:]}")
    tree = root / "old-code"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@pytest.fixture(scope="module")
def planned(cluster, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("upgrade")
    edits = current_edits()
    workspace = Workspace(root / "workspace", kubeconfig=cluster, source=_old_tree(root))
    workspace.init(STACK, "prod", edits)
    workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", timeout=1500)
    workspace.use_program(ROOT)
    workspace.write_stack_file(STACK, "prod", edits)
    preview = workspace.preview(STACK)
    return planned_resources(preview.events)


def test_no_resource_of_a_stack_made_by_the_old_code_gets_a_new_urn(planned):
    custom = {key: op for key, op in planned.items() if not key[0].startswith(COMPONENT_TYPES)}
    created = sorted(key for key, op in custom.items()
                     if op == "create" and key[0] not in ADDED_SINCE and key not in ADDED_TO_THE_STACK_FILE)
    going = sorted(key for key, op in custom.items() if op in GOING_AWAY and key not in REPLACED_ON_PURPOSE)
    assert (created, going) == ([], []), f"created: {created}\ngoing away or replaced: {going}"
    assert {key: custom[key] for key in REPLACED_ON_PURPOSE} == dict.fromkeys(REPLACED_ON_PURPOSE, "create-replacement")


def test_only_the_grouping_components_change_which_own_no_cluster_object(planned):
    # The old code grouped every service's workloads under one BeeTravels component; now each service has its own.
    components = {key: op for key, op in planned.items() if key[0].startswith(COMPONENT_TYPES) and op != "same"}
    assert components == {("beetravels:app:BeeTravels", "bee-travels"): "delete",
                          **{("beetravels:app:MeshService", name): "create"
                             for name in ("bee-ui", "carrental", "currencyexchange", "destination", "hotel")}}


def test_the_moved_resources_are_planned_in_place(planned):
    # One of each kind MeshService took over: its Deployment, routes, authorization and Sidecar.
    for key in (("kubernetes:apps/v1:Deployment", "hotel-v1-deployment"),
                ("kubernetes:networking.istio.io/v1beta1:VirtualService", "traffic-hotel-virtual-service"),
                ("kubernetes:security.istio.io/v1beta1:AuthorizationPolicy", "security-allow-hotel"),
                ("kubernetes:networking.istio.io/v1beta1:Sidecar", "security-hotel-sidecar")):
        assert planned.get(key) in {"same", "update"}, f"{key}: {planned.get(key)}"
