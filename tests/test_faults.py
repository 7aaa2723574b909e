"""Faults on a real API server: an update cut off, the API server or etcd gone mid-update, two operators at once, a
damaged state file. Each ends with the stack converged and nothing lost.

The stack is prod (Istio 1.6.14, the real charts) on a fresh simulated Kubernetes 1.18 control plane
(harness/sim_cluster.py), through the pinned CLI as its users run it; prod because its MongoDB volume and
credentials are protected. "Nothing lost": MongoDB's claims are Bound to the same volumes, its Secrets hold the same
data under the same UIDs, the StatefulSet was never replaced, and every object Pulumi made on the server is one the
state knows. Each test starts from a converged stack (it deploys or recovers first), so each runs on its own too.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.pulumi_cli import PROJECT, Workspace
from harness.real_charts import real_charts
from harness.sim_cluster import SimCluster, kubectl, planned_changes, running, set_in_stack_file, up
from tools.stack_run import ROOT

STACK = "prod"
APP_NAMESPACE = "bee-travels"
MONGODB_SECRETS = ("mongodb-root", "mongodb-connection")
# How the CLI names the step an outage broke: the step's row says so, or the summary names its URN.
STEP_FAILED = ("**updating failed**", 'error: update of resource "urn:pulumi:prod::')
MANAGED_KINDS = "deployments,statefulsets,services,configmaps,secrets,serviceaccounts,jobs,networkpolicies,poddisruptionbudgets"


@dataclass
class Stack:
    workspace: Workspace
    cluster: SimCluster

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def start_up(self) -> tuple[subprocess.Popen, Path]:
        """`pulumi up` left running in its own process group (the CLI and the plugins it starts)."""
        log = self.workspace.root / f"interrupted-{time.monotonic_ns()}.log"
        process = subprocess.Popen(
            ["pulumi", "up", "--stack", STACK, "--yes", "--skip-preview", "--non-interactive", "--policy-pack", str(ROOT / "policy")],
            cwd=self.workspace.project, env=self.workspace.env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        return process, log

    def recover(self, *flags: str) -> subprocess.CompletedProcess:
        env = {**self.workspace.env, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "tools.recover", "--stack", STACK, *flags], cwd=self.workspace.project,
                              env=env, capture_output=True, text=True, timeout=900, check=False)

    def state_file(self) -> Path:
        found = sorted((self.workspace.root / "state" / ".pulumi" / "stacks").glob(f"**/{PROJECT}/{STACK}.json"))
        assert len(found) == 1, found
        return found[0]

    def export(self) -> dict:
        return json.loads(self.workspace.pulumi("stack", "export", "--stack", STACK).stdout)["deployment"]


def wait_for_line(log: Path, process: subprocess.Popen, *fragments: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if all(fragment in line for fragment in fragments):
                return line
        assert process.poll() is None, f"the update ended before {fragments}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no line with {fragments} in {timeout}s:\n{log.read_text()[-3000:]}")


def wait_for_pending_release(stack: Stack, process: subprocess.Popen, namespace: str, release: str, timeout: float = 300) -> None:
    """Until Helm has recorded the release as pending-install (it stays so while its pods cannot become Ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = kubectl(stack.kubeconfig, "-n", namespace, "get", "secrets", "-o", "name",
                          "-l", f"owner=helm,name={release},status=pending-install").stdout
        if records.strip():
            return
        assert process.poll() is None, f"the update ended before Helm recorded {release} as pending"
        time.sleep(0.1)
    raise AssertionError(f"Helm never recorded {release} as pending-install in {timeout}s")


def descendants(pid: int) -> list[int]:
    """Every process under `pid`: the CLI's plugins run in process groups of their own, so its group is not all."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # a short-lived child that has already ended


@dataclass(frozen=True)
class Data:
    """What must survive every fault: MongoDB's claims and volumes, its Secrets, the StatefulSet's identity."""

    claims: dict
    secrets: dict
    statefulset: str


def data_on_server(kubeconfig: Path) -> Data:
    claims = json.loads(kubectl(kubeconfig, "-n", APP_NAMESPACE, "get", "pvc", "-o", "json").stdout)["items"]
    secrets = [json.loads(kubectl(kubeconfig, "-n", APP_NAMESPACE, "get", "secret", name, "-o", "json").stdout) for name in MONGODB_SECRETS]
    statefulset = json.loads(kubectl(kubeconfig, "-n", APP_NAMESPACE, "get", "statefulset", "mongodb", "-o", "json").stdout)
    return Data({claim["metadata"]["name"]: (claim["metadata"]["uid"], claim["spec"].get("volumeName"), claim["status"].get("phase"))
                 for claim in claims},
                {secret["metadata"]["name"]: (secret["metadata"]["uid"], secret["data"]) for secret in secrets},
                statefulset["metadata"]["uid"])


def unknown_to_state(stack: Stack) -> list[str]:
    """Objects Pulumi made on the server (its managed-by label) that the state does not hold."""
    known = {(resource["type"].rsplit(":", 1)[-1], (resource.get("outputs") or {}).get("metadata", {}).get("namespace", ""),
              (resource.get("outputs") or {}).get("metadata", {}).get("name"))
             for resource in stack.export().get("resources", []) if resource["type"].startswith("kubernetes:")}
    found = json.loads(kubectl(stack.kubeconfig, "get", MANAGED_KINDS, "-A", "-l", "app.kubernetes.io/managed-by=pulumi",
                               "-o", "json").stdout)["items"]
    return sorted(f"{item['kind']} {item['metadata'].get('namespace', '')}/{item['metadata']['name']}" for item in found
                  if (item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"]) not in known)


def assert_converged(stack: Stack, before: Data | None) -> None:
    assert stack.export().get("pending_operations") in (None, [])
    assert planned_changes(stack.workspace, STACK) == {}, "a second preview after recovery plans nothing"
    assert unknown_to_state(stack) == []
    after = data_on_server(stack.kubeconfig)
    assert all(phase == "Bound" for _, _, phase in after.claims.values())
    if before is not None:
        assert after == before, "MongoDB's claims, volumes, Secrets and StatefulSet are the same objects as before the fault"


def converge(stack: Stack) -> Data:
    """A deployed, converged stack to start a fault from (recovering what an earlier fault left, if anything)."""
    recovered = stack.recover("--apply")
    assert recovered.returncode == 0, recovered.stderr
    up(stack.workspace, STACK)
    return data_on_server(stack.kubeconfig)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("faults")
    with running("1.18", root / "cluster") as cluster:
        workspace = Workspace(root / "workspace", kubeconfig=cluster.kubeconfig)
        workspace.init(STACK, STACK, real_charts().on({"istio.ingressGateway.serviceType": "NodePort"}))
        yield Stack(workspace, cluster)


def test_an_update_killed_mid_install_is_recovered_and_the_next_up_converges(stack):
    """The CLI killed while Helm installs a release of the first `pulumi up`: the lock, the pending creates and the
    release Helm left pending are each found, said, and recovered; the next `pulumi up` converges."""
    assert not stack.export().get("resources"), "this fault starts from empty: it runs first in the file, or alone"
    # With the scheduler stopped no pod becomes Ready, so Helm's install of istiod stays pending while the CLI dies.
    stack.cluster.stop_component("kube-scheduler")
    process, log = stack.start_up()
    wait_for_line(log, process, "kubernetes:helm.sh/v3:Release", "istiod", "creating")
    wait_for_pending_release(stack, process, "istio-system", "istiod")
    # `kill -9` of the CLI alone: its plugins run in process groups of their own and outlive it. They are frozen
    # (SIGSTOP) so the provider cannot finish the install while recovery is refused, then go as a lost machine's do.
    plugins = descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    signal_all(plugins, signal.SIGSTOP)
    waiting = stack.recover("--apply")
    assert waiting.returncode == 2 and "plugins of an update whose CLI was killed still run" in waiting.stderr, waiting.stderr
    assert "nothing was changed" in waiting.stderr
    signal_all(plugins, signal.SIGKILL)
    stack.cluster.start_component("kube-scheduler")

    refused = stack.workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0 and "locked" in refused.output and "pulumi cancel" in refused.output
    found = stack.recover()
    assert found.returncode == 3, found.stderr
    assert f"make recover STACK={STACK}" in found.stderr
    said = found.stderr
    assert "lock left by a process that no longer runs" in said
    assert "interrupted create of" in said
    assert "Helm's record of the interrupted release istiod" in said, said
    recovered = stack.recover("--apply")
    assert recovered.returncode == 0, recovered.stderr
    assert stack.recover().returncode == 0, "nothing is left to recover"
    up(stack.workspace, STACK)
    assert_converged(stack, None)


def change_hotel_replicas(stack: Stack) -> None:
    """One change for an update to make: hotel's replica count, to whichever of 2 and 3 it is not."""
    config = yaml.safe_load((stack.workspace.project / f"Pulumi.{STACK}.yaml").read_text())["config"]
    replicas = config[f"{PROJECT}:services"]["hotel"].get("replicas")
    set_in_stack_file(stack.workspace, STACK, "services.hotel.replicas", 3 if replicas == 2 else 2)


def update_with_a_component_down(stack: Stack, component: str, seconds: float) -> tuple[int, str]:
    """An update whose cluster loses `component` for `seconds` once it is updating Deployments: its exit code and output."""
    change_hotel_replicas(stack)
    process, log = stack.start_up()
    wait_for_line(log, process, "Deployment", "updating")
    stack.cluster.stop_component(component)
    time.sleep(seconds)
    stack.cluster.start_component(component)
    process.wait(timeout=900)
    output = log.read_text()
    (stack.workspace.root / f"{component}-outage.log").write_text(f"exit {process.returncode}\n{output}")
    return process.returncode, output


def test_an_api_server_gone_for_30_seconds_mid_update_leaves_an_update_the_next_up_finishes(stack):
    before = converge(stack)
    code, output = update_with_a_component_down(stack, "kube-apiserver", 30)
    # Rode it out, or stopped naming the step that could not reach the API server; the next run converges.
    assert code == 0 or any(words in output for words in STEP_FAILED), output[-3000:]
    assert stack.recover("--apply").returncode == 0
    up(stack.workspace, STACK)
    assert_converged(stack, before)


def test_etcd_restarted_mid_update_leaves_an_update_the_next_up_finishes(stack):
    before = converge(stack)
    code, output = update_with_a_component_down(stack, "etcd", 5)
    assert code == 0 or any(words in output for words in STEP_FAILED), output[-3000:]
    assert stack.recover("--apply").returncode == 0
    up(stack.workspace, STACK)
    assert_converged(stack, before)


def test_a_second_up_while_one_runs_is_refused_by_the_lock_and_the_state_stays_whole(stack):
    before = converge(stack)
    change_hotel_replicas(stack)
    process, log = stack.start_up()
    wait_for_line(log, process, "Deployment", "updating")
    second = stack.workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", check=False)
    assert second.returncode != 0
    assert "the stack is currently locked by 1 lock(s)" in second.output
    live = stack.recover()
    assert live.returncode == 3 and "another update holds the lock" in live.stderr, live.stderr
    assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert_converged(stack, before)


def test_a_damaged_state_file_is_refused_and_restored_from_the_backends_own_history(stack):
    before = converge(stack)
    state = stack.state_file()
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    refused = stack.workspace.pulumi("preview", "--stack", STACK, check=False)
    assert refused.returncode != 0
    # The file backend's words for a checkpoint it cannot read (diy/state.go), whatever the JSON error under it is:
    # where the cut falls (mid-string, mid-escape, between values) only changes the parser's detail.
    assert "failed to load checkpoint" in refused.output, refused.output[-2000:]
    # The file backend keeps every update's checkpoint under .pulumi/history; the newest is the state as last saved.
    history = sorted((state.parents[2] / "history").glob(f"**/{PROJECT}/{STACK}/{STACK}-*.checkpoint.json"))
    assert history, "the backend keeps a checkpoint per update"
    checkpoint = json.loads(history[-1].read_text())["checkpoint"]
    restored = stack.workspace.root / "restored.json"
    restored.write_text(json.dumps({"version": 3, "deployment": checkpoint["latest"]}))
    stack.workspace.pulumi("stack", "import", "--stack", STACK, "--file", str(restored))
    assert_converged(stack, before)


@dataclass(frozen=True)
class S3Backend:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def s3_backend(tmp_path_factory) -> Iterator[S3Backend]:
    """An S3 API on loopback (moto's server), standing in for the bucket the workflows' PULUMI_BACKEND_URL names."""
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                              stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    # Static keys and no metadata service: the SDKs never look beyond loopback for credentials.
    env = {"AWS_ACCESS_KEY_ID": "fault-tests", "AWS_SECRET_ACCESS_KEY": "fault-tests", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto's S3 server did not start"
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        client.create_bucket(Bucket="bee-travels-state")
        yield S3Backend(f"s3://bee-travels-state?endpoint={endpoint}&region=us-east-1&use_path_style=true", env)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_on_the_s3_backend_of_the_workflows_a_second_up_is_refused_by_the_lock_too(stack, s3_backend):
    """The stack moved to an S3 bucket as the workflows keep it (export, init, import); there too a second `pulumi up`
    meets the first one's lock, and the first finishes with the state whole. It runs last: the file backend's copy
    of the stack is behind the cluster after it."""
    before = converge(stack)
    exported = stack.workspace.root / "moved.json"
    stack.workspace.pulumi("stack", "export", "--stack", STACK, "--file", str(exported))
    on_s3 = Stack(copy.copy(stack.workspace), stack.cluster)
    on_s3.workspace.env = {**stack.workspace.env, **s3_backend.env, "PULUMI_BACKEND_URL": s3_backend.url}
    salt = yaml.safe_load((on_s3.workspace.project / f"Pulumi.{STACK}.yaml").read_text())["encryptionsalt"]
    on_s3.workspace.pulumi("stack", "init", STACK)
    assert yaml.safe_load((on_s3.workspace.project / f"Pulumi.{STACK}.yaml").read_text())["encryptionsalt"] == salt
    on_s3.workspace.pulumi("stack", "import", "--stack", STACK, "--file", str(exported))
    assert planned_changes(on_s3.workspace, STACK) == {}, "the moved stack is the deployed one"

    change_hotel_replicas(on_s3)
    process, log = on_s3.start_up()
    wait_for_line(log, process, "Deployment", "updating")
    second = on_s3.workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", check=False)
    assert second.returncode != 0
    assert "the stack is currently locked by 1 lock(s)" in second.output, second.output[-2000:]
    assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert_converged(on_s3, before)
