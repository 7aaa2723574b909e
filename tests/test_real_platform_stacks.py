"""A platform stack and an app stack through the real CLI on the simulated Kubernetes 1.33 cluster, in file order.

The platform is dev-current with the real Istio 1.30.3 and add-on charts, on a host of its own and listing team-a;
team-a is an app stack of the whole app in its own namespace. The link is read by the real engine: the app stack
reads the platform's outputs through the file backend (readStackOutputs, and a StackReference for the add-ons'
addresses), so the order a platform engineer must keep is enforced, and the objects land where they belong.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from harness.pulumi_cli import PROJECT, Workspace
from harness.real_charts import real_charts
from harness.sim_cluster import kubectl, running, up
from tools.stack_run import ROOT

PLATFORM, APP = "platform", "team-a"
DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
PLATFORM_EDITS = {"istio.version": "1.30.3", "gateway.hosts": ["bee.example.com"], "appStacks": [APP]}
APP_VALUES = {"platformStack": PLATFORM, "appNamespace": APP, "gateway": {"hosts": [f"{APP}.bee.example.com"], "tls": {"mode": "off"}},
              **{key: copy.deepcopy(DEV[f"{PROJECT}:{key}"]) for key in ("mongodb", "security", "services")}}


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """A fresh cluster with room for both MongoDBs, and a workspace holding both stacks."""
    with running("1.33", tmp_path_factory.mktemp("sim-cluster"), volumes=2) as cluster:
        workspace = Workspace(tmp_path_factory.mktemp("platform-stacks") / "workspace", kubeconfig=cluster.kubeconfig)
        workspace.init(PLATFORM, "dev-current", real_charts().on(PLATFORM_EDITS))
        workspace.init(APP, None, APP_VALUES)
        yield workspace, cluster.kubeconfig


def namespaces(kubeconfig) -> set[str]:
    listed = kubectl(kubeconfig, "get", "namespaces", "-o", "json")
    return {item["metadata"]["name"] for item in yaml.safe_load(listed.stdout)["items"]}


def test_an_app_stack_before_its_platform_is_refused_in_preview_with_nothing_created(linked):
    workspace, kubeconfig = linked
    refused = workspace.preview(APP, check=False)
    assert refused.returncode != 0
    assert f"{PROJECT}:platformStack: names {PLATFORM}, which has not been deployed" in refused.output
    assert APP not in namespaces(kubeconfig)


def test_the_platform_then_the_app_stack_deploy_and_each_object_lands_where_it_belongs(linked):
    workspace, kubeconfig = linked
    up(workspace, PLATFORM)
    up(workspace, APP)
    live = yaml.safe_load(kubectl(kubeconfig, "get", "namespace", APP, "-o", "json").stdout)
    assert live["metadata"]["labels"]["istio-injection"] == "enabled"
    deployments = yaml.safe_load(kubectl(kubeconfig, "get", "deployments", "-n", APP, "-o", "json").stdout)["items"]
    assert {d["metadata"]["labels"]["app"] for d in deployments} == set(DEV[f"{PROJECT}:services"])
    # The platform's fence, as the API server holds it, lets team-a's sidecars reach istiod.
    istiod = yaml.safe_load(kubectl(kubeconfig, "get", "networkpolicy", "istiod", "-n", "istio-system", "-o", "json").stdout)
    sources = [peer.get("namespaceSelector", {}).get("matchLabels") for rule in istiod["spec"]["ingress"]
               for peer in rule.get("from", [])]
    assert {"kubernetes.io/metadata.name": APP} in sources
    outputs = workspace.pulumi("stack", "output", "--stack", APP, "--json").json()
    platform = workspace.pulumi("stack", "output", "--stack", PLATFORM, "--json").json()
    assert outputs["observability"] == platform["observability"] and outputs["platformStack"] == PLATFORM
    assert platform["appStacks"] == {APP: APP}
    helm_owned = kubectl(kubeconfig, "get", "secrets", "-n", APP, "-l", "owner=helm", "-o", "name").stdout
    assert helm_owned.strip() == ""  # the app stack installs no chart


def test_the_platform_keeps_a_deployed_app_stack_and_lets_it_go_once_destroyed(linked):
    workspace, kubeconfig = linked
    workspace.write_stack_file(PLATFORM, "dev-current", {**real_charts().on(PLATFORM_EDITS), "appStacks": []})
    refused = workspace.preview(PLATFORM, check=False)
    assert refused.returncode != 0 and f"drops {APP}, which is still deployed in namespace {APP}" in refused.output
    workspace.pulumi("destroy", "--stack", APP, "--yes", "--skip-preview", timeout=900)
    up(workspace, PLATFORM)
    assert APP not in namespaces(kubeconfig)
    platform = workspace.pulumi("stack", "output", "--stack", PLATFORM, "--json").json()
    assert platform["appStacks"] == {}
