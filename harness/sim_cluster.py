"""What the real-cluster tests share: a simulated control plane of either Kubernetes release, kubectl against it,
stack-file edits, and the comparison of what a stack declares (its own objects and what its charts render) with
what the API server holds.

The cluster is scripts/sim-cluster.sh's: kube-apiserver, kube-controller-manager and kube-scheduler of the release
(1.33 or 1.18, built from Go modules), etcd, kwok's fake nodes; loopback only, no admission webhooks. Objects are
accepted, defaulted, owned and garbage-collected for real and pods become Ready, but no container runs.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from domain.units import parse_quantity
from harness.pulumi_cli import PROJECT, Workspace, planned_resources
from tools.stack_files import default_stack_file, stack_file_config
from tools.stack_run import ROOT, StackRun, set_path, unwrap

SIM_SCRIPT = ROOT / "scripts" / "sim-cluster.sh"
VOLUMES = 5  # prod's 3 MongoDB members, and the 5 they grow to
SERVICE_RANGE = "127.0.100."  # scripts/sim-cluster.sh's Service CIDR, 127.0.100.0/24
# Top-level fields that are not the object's content: identity, the server's own, and Secret input-only fields.
NOT_CONTENT = {"apiVersion", "kind", "metadata", "status", "stringData"}


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                          text=True, check=check)


def _sim_env(kubernetes_version: str, state: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "SIM_DIR": str(state), "KUBERNETES_VERSION": kubernetes_version, **(settings or {})}


def _persistent_volume(name: str, path: Path, size: str = "100Gi") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": str(path)},
                     "persistentVolumeReclaimPolicy": "Retain"}}


@dataclass(frozen=True)
class SimCluster:
    kubernetes_version: str
    state: Path
    kubeconfig: Path
    # scripts/sim-cluster.sh's own settings (SIM_*_PORT, SIM_NODES): the benchmark's cluster runs on ports of its own.
    settings: tuple[tuple[str, str], ...] = ()

    def _env(self) -> dict[str, str]:
        return _sim_env(self.kubernetes_version, self.state, dict(self.settings))

    @classmethod
    def start(cls, kubernetes_version: str, state: Path, volumes: int = VOLUMES,
              settings: Mapping[str, str] | None = None) -> SimCluster:
        """A fresh control plane in `state`, with `volumes` PersistentVolumes for the MongoDB claims (no provisioner
        runs); the script stopped again if it fails half-way."""
        environment = _sim_env(kubernetes_version, state, settings)
        started = subprocess.run([str(SIM_SCRIPT), "start"], env=environment, capture_output=True, text=True, check=False)
        if started.returncode != 0:
            subprocess.run([str(SIM_SCRIPT), "stop"], env=environment, capture_output=True, check=False)
        assert started.returncode == 0, (f"the simulated {kubernetes_version} cluster did not start (make sim-cluster-tools-all "
                                         f"builds it):\n{started.stderr[-3000:]}")
        last = started.stdout.strip().splitlines()[-1]
        assert last.startswith("KUBECONFIG="), started.stdout
        cluster = cls(kubernetes_version, state, Path(last.removeprefix("KUBECONFIG=")), tuple(sorted((settings or {}).items())))
        cluster.apply([_persistent_volume(f"mongodb-data-{member}", state / f"volume-{member}") for member in range(volumes)])
        return cluster

    def stop(self) -> None:
        subprocess.run([str(SIM_SCRIPT), "stop"], env=self._env(), capture_output=True, check=False)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """kubectl against this cluster, with a discovery cache of its own (another cluster once on the same port must not
        answer from it); a failure raises with kubectl's own words."""
        done = kubectl(self.kubeconfig, "--cache-dir", str(self.state / "kube-cache"), *args, stdin=stdin, check=False)
        assert done.returncode == 0, f"`kubectl {' '.join(args)}` failed:\n{done.stderr[-4000:]}"
        return done

    def apply(self, objects: list[dict] | str) -> None:
        if objects:
            self.kubectl("apply", "--server-side", "-f", "-", stdin=objects if isinstance(objects, str) else yaml.safe_dump_all(objects))

    def server_version(self) -> str:
        return json.loads(self.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]

    def pids(self) -> list[int]:
        """The control plane's processes, as the script recorded them (they are not our children: it detaches them)."""
        return [int(f.read_text()) for f in (self.state / "run").glob("*.pid") if f.read_text().strip().isdigit()]

    def stop_component(self, component: str) -> None:
        """One component (etcd, kube-apiserver, kube-scheduler, ...) goes away: the faults a real cluster meets."""
        subprocess.run([str(SIM_SCRIPT), "stop-component", component], env=self._env(), capture_output=True, check=True)

    def start_component(self, component: str) -> None:
        """The component comes back, and is healthy when this returns."""
        subprocess.run([str(SIM_SCRIPT), "start-component", component], env=self._env(), capture_output=True, check=True)

    def apiserver_arguments(self) -> list[str]:
        pid = (self.state / "run" / "kube-apiserver.pid").read_text().strip()
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@contextlib.contextmanager
def running(kubernetes_version: str, state: Path, volumes: int = VOLUMES, settings: Mapping[str, str] | None = None) -> Iterator[SimCluster]:
    """A fresh cluster for the block, stopped on leaving it whatever happened."""
    cluster = SimCluster.start(kubernetes_version, state, volumes, settings)
    try:
        yield cluster
    finally:
        cluster.stop()


def live(kubeconfig: Path, kind: str, name: str, namespace: str | None) -> dict | None:
    found = kubectl(kubeconfig, "get", kind, name, *(["-n", namespace] if namespace else []), "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def contains(live_value, declared) -> list[str]:
    """Where `declared` is not found in `live_value` (dicts by key, lists element by element). An empty list, map or string
    matches an absent field: the server stores none (`rules: []` comes back without `rules`)."""
    if declared in ([], {}, "") and live_value is None:
        return []
    if isinstance(declared, dict):
        if not isinstance(live_value, dict):
            return ["."]
        return [f".{key}{where}" for key, value in declared.items() for where in contains(live_value.get(key), value)]
    if isinstance(declared, list):
        if not isinstance(live_value, list) or len(live_value) != len(declared):
            return ["[]"]
        return [f"[{index}]{where}" for index, (a, b) in enumerate(zip(live_value, declared, strict=True)) for where in contains(a, b)]
    if live_value == declared or str(live_value) == str(declared) or _same_quantity(live_value, declared):
        return []
    return [f" = {live_value!r}, declared {declared!r}"]


def _same_quantity(live_value, declared) -> bool:
    """The server writes quantities in canonical form (1000m -> 1)."""
    try:
        return parse_quantity(str(live_value)) == parse_quantity(str(declared))
    except ValueError:
        return False


def _resource_name(manifest: dict) -> str:
    """kubectl's name for the kind at the manifest's own version (kind.version.group): the server's preferred version
    may not have the declared fields (autoscaling/v1 has no `metrics`)."""
    api_version = manifest.get("apiVersion", "v1")
    if "/" not in api_version:
        return manifest["kind"].lower()
    group, version = api_version.split("/")
    return f"{manifest['kind'].lower()}.{version}.{group}"


def differences(kubeconfig: Path, manifests: list[dict], namespace: str | None = None) -> tuple[list[str], list[str]]:
    """(missing, differing): each manifest's object on the server, with its content and labels as declared."""
    missing, differing = [], []
    for manifest in manifests:
        meta = manifest.get("metadata", {})
        what = f"{manifest['kind']} {meta['name']}"
        found = live(kubeconfig, _resource_name(manifest), meta["name"], meta.get("namespace", namespace))
        if found is None:
            missing.append(what)
            continue
        for field in sorted(set(manifest) - NOT_CONTENT):
            differing += [f"{what} {field}{where}" for where in contains(found.get(field), manifest[field])]
        differing += [f"{what} label {key}" for key, value in (meta.get("labels") or {}).items()
                      if found["metadata"].get("labels", {}).get(key) != value]
    return missing, differing


def declared_manifests(run: StackRun) -> list[dict]:
    """The stack's own objects as the program declares them (the mock engine's run of the same stack file)."""
    manifests = []
    for resource in run.kubernetes_objects():
        manifest = unwrap(resource.manifest())
        manifests.append({"kind": resource.kind, **manifest})
    return manifests


@dataclass(frozen=True)
class HelmRelease:
    name: str
    namespace: str
    status: str
    chart: str
    manifests: list[dict]  # what Helm rendered and applied


def helm_releases(kubeconfig: Path) -> dict[str, HelmRelease]:
    """The latest revision of every Helm release on the server, read from the Secrets Helm keeps them in."""
    found = json.loads(kubectl(kubeconfig, "get", "secrets", "-A", "-l", "owner=helm", "-o", "json").stdout)["items"]
    latest: dict[str, dict] = {}
    for secret in found:
        labels = secret["metadata"]["labels"]
        if int(labels["version"]) > int(latest.get(labels["name"], {}).get("metadata", {}).get("labels", {}).get("version", 0)):
            latest[labels["name"]] = secret
    releases = {}
    for name, secret in latest.items():
        # The Secret's data is base64; Helm's payload inside it is base64 of gzipped JSON.
        record = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
        manifests = [document for document in yaml.safe_load_all(record.get("manifest", "")) if document]
        releases[name] = HelmRelease(name, record["namespace"], record["info"]["status"],
                                     f"{record['chart']['metadata']['name']}-{record['chart']['metadata']['version']}", manifests)
    return releases


def workloads_without_a_policy(kubeconfig: Path, namespace: str) -> tuple[list[str], list[str]]:
    """The workloads the server runs in `namespace` (Deployments, StatefulSets, DaemonSets), and those whose pods no
    NetworkPolicy there selects by their labels (the namespace-wide policies, which select every pod, left aside)."""
    kinds = "deployments,statefulsets,daemonsets"
    workloads = json.loads(kubectl(kubeconfig, "get", kinds, "-n", namespace, "-o", "json").stdout)["items"]
    policies = json.loads(kubectl(kubeconfig, "get", "networkpolicies", "-n", namespace, "-o", "json").stdout)["items"]
    selectors = [policy["spec"]["podSelector"].get("matchLabels") or {} for policy in policies]
    selectors = [selector for selector in selectors if selector]
    names = [f"{item['kind']}/{item['metadata']['name']}" for item in workloads]
    unselected = [f"{item['kind']}/{item['metadata']['name']}" for item in workloads
                  if not any(selector.items() <= item["spec"]["template"]["metadata"].get("labels", {}).items() for selector in selectors)]
    return names, unselected


def stack_file(workspace: Workspace, stack: str) -> Path:
    return default_stack_file(stack, workspace.project)


def set_in_stack_file(workspace: Workspace, stack: str, path: str, value) -> None:
    """An edit of the stack file, as a reviewed change would make it (`pulumi config set --path` semantics)."""
    file = stack_file(workspace, stack)
    document = yaml.safe_load(file.read_text())
    values = {key.removeprefix(f"{PROJECT}:"): item for key, item in document["config"].items()}
    set_path(values, path, value)
    document["config"] = stack_file_config(values)
    file.write_text(yaml.safe_dump(document, sort_keys=False))


def up(workspace: Workspace, stack: str, *extra: str):
    return workspace.pulumi("up", "--stack", stack, "--yes", "--skip-preview", "--policy-pack", str(ROOT / "policy"),
                            *extra, events=True, timeout=1500)


def planned_changes(workspace: Workspace, stack: str) -> dict[tuple[str, str], str]:
    result = workspace.preview(stack)
    return {key: op for key, op in planned_resources(result.events).items() if op != "same"}


def weights(kubeconfig: Path, service: str, namespace: str = "bee-travels") -> dict[str, int]:
    spec = live(kubeconfig, "virtualservices.networking.istio.io", service, namespace)["spec"]
    weighted = next(route for route in spec["http"] if route["name"] == "weighted")["route"]
    return {leg["destination"]["subset"]: leg.get("weight", 100) for leg in weighted}
