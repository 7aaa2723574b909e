"""The real engine on the simulated cluster: `pulumi preview` and `pulumi up` against `kubectl apply` of the same objects.

    python -m bench.real_cluster [--sizes 20 200] [--runs 3] [--single-run-from 200] [--no-probe-checkpoints]
                                 [--write docs/performance.md] [--save run.json | --render run.json]

For the dev-shaped stack (the dev stack file on current Istio, as the cluster's Kubernetes 1.33 needs) and synthetic
stacks of N services (`program_scaling.synthetic_catalogue`), each run starts a fresh simulated cluster
(scripts/sim-cluster.sh) and times, with the pinned CLI, providers and policy pack:

- `pulumi preview` of the stack on the empty cluster (what a first deploy's preview pays);
- `pulumi up --skip-preview` from that empty cluster, with the engine's event log read as it is written, so each
  resource's step (from the engine starting it to its outputs) has a wall time;
- `kubectl apply --server-side --dry-run=server` of the Kubernetes objects the program declares (the same objects,
  from the mock-engine run): once against a cluster holding only their namespaces and Istio's CRDs, as a create, and
  once against the cluster the `up` left behind, as a re-apply. Neither writes anything; this is what talking to the
  API server costs at least, one request per object.

The largest stack is deployed once more with the engine's per-step state saves switched off (PULUMI_SKIP_CHECKPOINTS).
Every timed phase records the CPU each of our processes used (engine, program, policy pack, providers, API server,
etcd, ...) and what other processes took; it starts only once the machine is quiet, so another test suite on the same
cores does not end up in the figures unannounced. The cluster is the benchmark's own, on its own ports and state
folder, so it runs beside the test suite's cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import markdown
from bench.program_scaling import REAL_SERVICES, machine, synthetic_catalogue
from harness.pulumi_cli import PROGRAM_FILES, PROJECT, Workspace, stand_in_helm_charts, toolchain_bin
from harness.sim_cluster import SimCluster, running
from harness.stacks import CURRENT_ISTIO
from tools.stack_files import load_stack_values, stack_file_config
from tools.stack_run import ROOT, run_stack, set_path, unwrap

SECTION = "## Real engine on the simulated cluster"
STACK = "dev"  # the stack file every shape starts from
ISTIO_CRDS = ROOT.parent / "shared" / "schemas" / "istio-crds" / "crd-all-1.30.3.yaml"
# The dev stack on the Istio line the simulated cluster's Kubernetes 1.33 supports; its gateway is already a NodePort.
DEV_SHAPED = {**CURRENT_ISTIO, "istio.ingressGateway.serviceType": "NodePort"}
# Not the defaults of scripts/sim-cluster.sh: the test suite's cluster may be running on those.
SIM_PORTS = {"SIM_APISERVER_PORT": "17443", "SIM_ETCD_PORT": "13379", "SIM_ETCD_PEER_PORT": "13380",
             "SIM_KCM_PORT": "21257", "SIM_SCHEDULER_PORT": "21259", "SIM_KWOK_PORT": "21247"}
BENCH_KUBERNETES = CURRENT_ISTIO["kubernetesVersion"]
KUBE_BIN = Path(os.environ.get("KUBE_BIN", Path.home() / ".cache" / "bee-travels-toolchain" / f"kube-{BENCH_KUBERNETES}" / "bin"))
PROVIDER_PACKAGES = ("kubernetes", "random", "tls")
PODS_PER_NODE = 110  # the fake nodes' pod capacity (scripts/sim-cluster.sh)
DEFAULT_SIZES = (20, 200)
PREVIEW_TIMEOUT = 1800
UP_TIMEOUT = 3 * 3600
KUBECTL_RUNS = 3
SKIP_CHECKPOINTS = "PULUMI_SKIP_CHECKPOINTS"  # the CLI's experimental switch: save the state once, at the end
PLATFORM_HOST = "bee.example.com"  # split: the platform's Gateway host; each app stack serves <its name>.<this>


# ---- the stacks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """A stack to deploy: the dev-shaped one, or it with synthetic services added up to `services`."""

    label: str
    services: int
    # The engine saves the whole state after every step; this runs it with only the final save, to see that cost.
    skip_checkpoints: bool = False
    # A lever measured by undoing it: the provider's wait on every Service, as the program had it before.
    services_awaited: bool = False
    parallel: int | None = None  # the engine's --parallel; None: the CLI's default
    # Split: the dev-shaped stack as the platform, the synthetic services in this many app stacks on it (config/platform.py).
    app_stacks: int = 0

    @property
    def synthetic_services(self) -> int:
        return self.services - REAL_SERVICES

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    @property
    def lever(self) -> bool:
        """A variant of a plain stack, run to measure one lever against it."""
        return self.skip_checkpoints or self.services_awaited or self.parallel is not None or self.app_stacks > 0

    def program(self) -> str | None:
        """The program text of a synthetic or lever stack (None: the project's own __main__.py)."""
        if not (self.synthetic_services or self.services_awaited):
            return None
        return synthetic_program(self.synthetic_services, self.services_awaited, called_by_frontend=not self.app_stacks)


# The engine's parallelism tried against its default (4 per core, `pulumi up --help`).
PARALLEL_TRIED = (4, 16)


def shapes(sizes: tuple[int, ...], probe_checkpoints: bool = False, levers: bool = True, split: int = 0) -> list[Shape]:
    """The dev-shaped stack, the synthetic ones, the levers (the Services' wait put back, other parallelism) on the
    dev-shaped and the smallest synthetic stack, (probing) the largest again with checkpoints skipped, and (split)
    the largest as the dev-shaped platform and `split` app stacks."""
    plain = [Shape("dev-shaped", REAL_SERVICES), *(Shape(f"{size} services", size) for size in sizes)]
    found = list(plain)
    if levers:
        for base in plain[:2]:
            found.append(Shape(f"{base.label}, Services awaited", base.services, services_awaited=True))
            found += [Shape(f"{base.label}, --parallel {n}", base.services, parallel=n) for n in PARALLEL_TRIED]
    if probe_checkpoints:
        found.append(Shape(f"{plain[-1].label}, {SKIP_CHECKPOINTS} = true", plain[-1].services, skip_checkpoints=True))
    if split and len(plain) > 1:
        largest = plain[-1]
        found.append(Shape(f"{largest.label} in {split + 1} stacks (the platform and {split} app stacks)", largest.services,
                           app_stacks=split))
    return found


def synthetic_program(synthetic_services: int, services_awaited: bool = False, called_by_frontend: bool = True) -> str:
    """A __main__.py running the project's program with the benchmark's synthetic services in the catalogue, and
    (services_awaited) with the provider's wait on every Service put back, as the program had it before.

    The catalogue is only read while the program's body runs (settings and components read it as they are built),
    so the generator's `with` may end before the engine has resolved every output.
    """
    # The lever undone while the program runs (its Services are declared as it runs): every Service awaited.
    awaited = "None" if services_awaited else "builders.kube.NO_ENDPOINT_WAIT"
    return f'''"""The project's program with {synthetic_services} synthetic services added (bench/real_cluster.py)."""
import runpy
import sys

sys.path.append({str(ROOT)!r})  # the repository: the benchmark's generator and the program's own folders

import builders.kube  # noqa: E402
from bench.program_scaling import synthetic_catalogue  # noqa: E402

kept, builders.kube.NO_ENDPOINT_WAIT = builders.kube.NO_ENDPOINT_WAIT, {awaited}
try:
    with synthetic_catalogue({synthetic_services}, {STACK!r}, called_by_frontend={called_by_frontend!r}):
        runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
finally:
    builders.kube.NO_ENDPOINT_WAIT = kept
'''


@dataclass
class Declared:
    """What the program declares for a shape, from one mock-engine run, and the stack-file edits that deploy it."""

    stack_edits: dict
    resources: int  # registered resources, components included, the stack not
    objects: list[dict]  # the Kubernetes objects it applies itself (not Helm's), as the API server receives them
    seconds: float  # the mock engine's wall time for the run: the program's own evaluation
    app_stacks: dict[str, dict] = field(default_factory=dict)  # split: each app stack's stack-file values

    def count(self, kind: str) -> int:
        return sum(obj["kind"] == kind for obj in self.objects)

    @property
    def pods(self) -> int:
        """Pods alive at once at most: every workload's replicas, and each Job's pod."""
        replicas = sum(obj["spec"].get("replicas", 1) for obj in self.objects if obj["kind"] in ("Deployment", "StatefulSet"))
        return replicas + self.count("Job")

    @property
    def volumes(self) -> int:
        """PersistentVolumes the StatefulSets' claims need (the simulated cluster has no provisioner)."""
        return sum(obj["spec"].get("replicas", 1) * len(obj["spec"].get("volumeClaimTemplates", []))
                   for obj in self.objects if obj["kind"] == "StatefulSet")

    @property
    def namespaces(self) -> list[str]:
        named = {obj["metadata"]["name"] for obj in self.objects if obj["kind"] == "Namespace"}
        return sorted(named | {obj["metadata"]["namespace"] for obj in self.objects if obj["metadata"].get("namespace")})


def app_stack_groups(names: list[str], stacks: int) -> list[list[str]]:
    """Synthetic services (in catalogue order: groups of a front end and its backends) per app stack: whole groups,
    dealt out in turn."""
    groups = [names[start:start + REAL_SERVICES] for start in range(0, len(names), REAL_SERVICES)]
    return [[name for group in groups[index::stacks] for name in group] for index in range(stacks)]


def split_stack_files(shape: Shape, services: dict, charts_dir: Path) -> tuple[dict, dict[str, dict]]:
    """The platform's edits (the dev-shaped stack on a host of its own, listing the app stacks) and each app stack's
    values: its share of the synthetic services, in a namespace and on a host of its own, with dev's security and
    MongoDB settings."""
    names = [f"apps-{index}" for index in range(shape.app_stacks)]
    platform = {**DEV_SHAPED, "helm.chartsDir": str(charts_dir), "gateway.hosts": [PLATFORM_HOST], "appStacks": names}
    dev = load_stack_values(STACK)[0]
    apps = {name: {"platformStack": STACK, "appNamespace": name, "security": dev["security"], "mongodb": dev["mongodb"],
                   "gateway": {"hosts": [f"{name}.{PLATFORM_HOST}"], "tls": {"mode": "off"}},
                   "services": {member: services[f"services.{member}"] for member in members}}
            for name, members in zip(names, app_stack_groups([key.removeprefix("services.") for key in services], shape.app_stacks),
                                     strict=True)}
    return platform, apps


def write_split_project(folder: Path, platform_edits: dict, apps: dict[str, dict]) -> None:
    """A project folder holding the platform's and the app stacks' files, which each program reads from the others."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    values = load_stack_values(STACK)[0]
    for path, value in platform_edits.items():
        set_path(values, path, value)
    for stack, stack_values in {STACK: values, **apps}.items():
        document = {"config": stack_file_config(stack_values)}
        (folder / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def declare_split(shape: Shape, charts_dir: Path, folder: Path) -> Declared:
    """The platform and every app stack under the mock engine, each reading the others' stack files as it would."""
    with synthetic_catalogue(shape.synthetic_services, STACK, called_by_frontend=False) as services:
        platform_edits, apps = split_stack_files(shape, services, charts_dir)
        write_split_project(folder, platform_edits, apps)
        started = time.perf_counter()
        runs = [run_stack(STACK, stack_file=folder / f"Pulumi.{STACK}.yaml")]
        admitted = {key: runs[0].outputs.get(key) for key in ("istioVersion", "istioRevision", "appStacks")} if not runs[0].error else {}
        runs += [run_stack(name, stack_file=folder / f"Pulumi.{name}.yaml", other_stacks={STACK: admitted}) for name in apps]
        seconds = time.perf_counter() - started
    failed = next((run for run in runs if run.error), None)
    if failed:
        raise SystemExit(f"{shape.label}: {failed.stack} does not evaluate under the mock engine: {failed.error}")
    objects = [unwrap(resource.manifest()) for run in runs for resource in run.kubernetes_objects()]
    return Declared(platform_edits, sum(len(run.resources) for run in runs), objects, seconds, apps)


def declare(shape: Shape, charts_dir: Path, work: Path | None = None) -> Declared:
    """The shape's program under the mock engine, with its synthetic services in the catalogue while it runs."""
    if shape.app_stacks:
        return declare_split(shape, charts_dir, (work or Path(tempfile.mkdtemp())) / shape.slug / "declared")
    with synthetic_catalogue(shape.synthetic_services, STACK) as services:
        edits = {**DEV_SHAPED, "helm.chartsDir": str(charts_dir), **services}
        started = time.perf_counter()
        run = run_stack(STACK, edits)
        seconds = time.perf_counter() - started
    if run.error:
        raise SystemExit(f"{shape.label} does not evaluate under the mock engine: {run.error}")
    objects = [unwrap(resource.manifest()) for resource in run.kubernetes_objects()]
    return Declared(edits, len(run.resources), objects, seconds)


# ---- the simulated cluster ---------------------------------------------------------------------

def bench_cluster(state: Path, nodes: int = 2, volumes: int = 0) -> contextlib.AbstractContextManager[SimCluster]:
    """A fresh simulated Kubernetes 1.33 cluster on the benchmark's own ports, with `nodes` fake nodes."""
    return running(BENCH_KUBERNETES, state, volumes, {**SIM_PORTS, "SIM_NODES": str(nodes)})


def nodes_for(declared: Declared) -> int:
    """Fake nodes enough for every pod with room to spare, so no rollout waits on the scheduler for capacity."""
    return max(2, math.ceil(1.5 * declared.pods / PODS_PER_NODE))


def prepare_namespaces_and_crds(cluster: SimCluster, declared: Declared) -> None:
    """The state a create needs to be accepted: the objects' namespaces and Istio's CRDs, established."""
    cluster.apply(ISTIO_CRDS.read_text())
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in declared.namespaces])
    cluster.kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout", "120s")


def kubectl_dry_run(cluster: SimCluster, objects_file: Path, runs: int = KUBECTL_RUNS) -> tuple[float, float]:
    """Median wall time of a server-side dry-run apply of every object (discovery cached by a first call), and the
    most cores other processes took during a run."""
    cluster.kubectl("api-resources", "-o", "name")
    walls, others = [], []
    for _ in range(runs):
        wait_for_a_quiet_machine(cluster.pids())
        with CpuClock(cluster.pids()) as clock:
            # --force-conflicts: after an `up` the fields belong to Pulumi's field manager and Secrets hold other values.
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(objects_file))
        walls.append(clock.use.wall)
        others.append(clock.use.others_cores)
    return statistics.median(walls), max(others)


# ---- whose CPU -------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
QUIET_CORES = 0.2  # others' use below which the machine counts as ours
QUIET_WAIT = 10 * 60  # how long to wait for it before measuring anyway (the figures then say so)
# Process roles by executable name, then (for Python) by what the interpreter runs.
ROLES_BY_EXE = {
    "pulumi": "engine (pulumi CLI)",
    "pulumi-language-python": "language host (Go)",
    "pulumi-resource-kubernetes": "Kubernetes provider (Helm inside)",
    "pulumi-resource-random": "random and tls providers",
    "pulumi-resource-tls": "random and tls providers",
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-controller-manager": "controller-manager, scheduler, kwok",
    "kube-scheduler": "controller-manager, scheduler, kwok",
    "kwok": "controller-manager, scheduler, kwok",
    "kubectl": "kubectl",
}
ROLES_BY_ARGUMENT = {"pulumi-language-python-exec": "program (Python)", "pulumi.policy": "policy pack (Python)"}


def _process_cpu(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used so far) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _role(pid: int) -> str:
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return "other of ours"
    if exe in ROLES_BY_EXE:
        return ROLES_BY_EXE[exe]
    return next((role for fragment, role in ROLES_BY_ARGUMENT.items() if fragment in arguments), "other of ours")


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _ours_reaped() -> float:
    """CPU seconds of this process and of every child it has waited for (a child's own reaped children included)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuUse:
    """Where a phase's CPU went: per role of our processes (sampled), and what the rest of the machine took."""

    wall: float = 0.0
    roles: dict[str, float] = field(default_factory=dict)
    others: float = 0.0  # CPU seconds of processes not ours (another test suite, say)

    @property
    def others_cores(self) -> float:
        return self.others / self.wall if self.wall else 0.0


class CpuClock:
    """While entered: our processes' CPU by role, sampled from /proc, and the machine's CPU that was not ours.

    Ours are this process's descendants and the simulated cluster's daemons. Per role, a process's last half
    second before it exits is not seen; what others used is exact: the machine's busy time less ours, counted by
    the kernel for every child we reaped and read directly for the cluster's daemons.
    """

    def __init__(self, cluster_pids: list[int]):
        self.cluster_pids = cluster_pids
        self.use = CpuUse()
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> CpuClock:
        self._started = time.perf_counter()
        self._busy, self._reaped, self._cluster = _machine_busy(), _ours_reaped(), self._cluster_cpu()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        roles: dict[str, float] = {}
        for pid, (role, seconds) in self._last.items():
            roles[role] = roles.get(role, 0.0) + seconds - self._first.get(pid, 0.0)
        self.use.roles = {role: seconds for role, seconds in sorted(roles.items(), key=lambda item: -item[1]) if seconds > 0}
        # Either count of ours can fall short (samples miss a process's end; a child not reaped is not in the kernel's).
        ours = max(_ours_reaped() - self._reaped + self._cluster_cpu() - self._cluster, sum(roles.values()))
        self.use.wall = time.perf_counter() - self._started
        self.use.others = max(0.0, _machine_busy() - self._busy - ours)

    def _cluster_cpu(self) -> float:
        return sum(found[1] for pid in self.cluster_pids if (found := _process_cpu(pid)))

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        processes = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (found := _process_cpu(int(entry.name))):
                processes[int(entry.name)] = found
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in processes.items():
            children.setdefault(parent, []).append(pid)
        ours, pending = set(self.cluster_pids), [os.getpid()]
        while pending:
            found = children.get(pending.pop(), [])
            ours.update(found)
            pending += found
        for pid in ours & set(processes):
            seconds = processes[pid][1]
            if first:
                self._first[pid] = seconds
            role = self._last[pid][0] if pid in self._last else _role(pid)
            self._last[pid] = (role, seconds)


def wait_for_a_quiet_machine(cluster_pids: list[int]) -> float:
    """Wait until other processes leave the cores to us (or QUIET_WAIT has passed); the cores they were using."""
    deadline = time.perf_counter() + QUIET_WAIT
    while True:
        with CpuClock(cluster_pids) as clock:
            time.sleep(5)
        if clock.use.others_cores < QUIET_CORES or time.perf_counter() > deadline:
            return clock.use.others_cores
        print(f"  waiting: other processes are using {clock.use.others_cores:.1f} cores", flush=True)


# ---- the real CLI ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One resource's step in an update, timed from the engine starting it to its outputs."""

    urn: str
    type: str
    seconds: float

    @property
    def custom(self) -> bool:
        """A provider's resource, not one of our components (which span their children)."""
        return self.type.split(":", 1)[0] in PROVIDER_PACKAGES


@dataclass
class UpdateTimeline:
    steps: list[Step] = field(default_factory=list)
    first_step: float = 0.0  # seconds from the CLI's start to the first step starting
    last_step: float = 0.0  # and to the last step's outputs


class EventLogClock:
    """Follows the engine's event log while the CLI writes it and stamps each step's start and end on arrival.

    The events carry timestamps of their own, but in whole seconds: too coarse for most steps.
    """

    def __init__(self, log: Path):
        self.log = log
        self.timeline = UpdateTimeline()
        self._origin = 0.0
        self._started: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> EventLogClock:
        self._origin = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        while not self.log.exists():
            if self._stop.wait(0.01):
                return
        with self.log.open() as stream:
            pending = ""
            while True:
                pending += stream.readline()
                if pending.endswith("\n"):
                    self._event(json.loads(pending), time.perf_counter() - self._origin)
                    pending = ""
                elif self._stop.is_set():
                    return
                else:
                    time.sleep(0.005)

    def _event(self, event: dict, now: float) -> None:
        if "resourcePreEvent" in event:
            step = event["resourcePreEvent"]["metadata"]
            if not step["type"].startswith("pulumi:"):
                self._started[step["urn"]] = (now, step["type"])
                self.timeline.first_step = self.timeline.first_step or now
        elif "resOutputsEvent" in event:
            urn = event["resOutputsEvent"]["metadata"]["urn"]
            if urn in self._started:
                began, type_ = self._started.pop(urn)
                self.timeline.steps.append(Step(urn, type_, now - began))
                self.timeline.last_step = now


@dataclass
class Deployment:
    """One fresh cluster's preview and update of a shape."""

    preview_cpu: CpuUse
    up_cpu: CpuUse
    timeline: UpdateTimeline
    resources: int  # in the state after the update: what the engine manages, the stack and providers left out
    state_bytes: int = 0  # the state file the update left, which the engine rewrote after every step
    managed_fields_bytes: int = 0  # of the exported state: the live objects' metadata.managedFields, as compact JSON
    stack_ups: list[float] = field(default_factory=list)  # split: each stack's update, the platform's first

    @property
    def preview(self) -> float:
        return self.preview_cpu.wall

    @property
    def up(self) -> float:
        return self.up_cpu.wall


def workspace_for(shape: Shape, root: Path, cluster: SimCluster, edits: dict, app_stacks: dict[str, dict] | None = None) -> Workspace:
    workspace = Workspace(root, kubeconfig=cluster.kubeconfig)
    if shape.skip_checkpoints:
        workspace.env[SKIP_CHECKPOINTS] = "true"
    program = shape.program()
    if program is not None:
        (workspace.project / "__main__.py").unlink()  # the link to the project's own program
        (workspace.project / "__main__.py").write_text(program)
    workspace.init(STACK, STACK, edits)
    for name, values in (app_stacks or {}).items():
        workspace.init(name, None, values)
    return workspace


POLICY = ("--policy-pack", str(ROOT / "policy"))  # as `make preview` and `make up` run every preview and update


def _combined(uses: list[CpuUse]) -> CpuUse:
    """Phases run one after another, as one: their walls and CPU added up."""
    roles: dict[str, float] = {}
    for use in uses:
        for role, seconds in use.roles.items():
            roles[role] = roles.get(role, 0.0) + seconds
    return CpuUse(sum(use.wall for use in uses), dict(sorted(roles.items(), key=lambda item: -item[1])),
                  sum(use.others for use in uses))


def preview_and_up(workspace: Workspace, cluster: SimCluster, shape: Shape, app_stacks: tuple[str, ...] = ()) -> Deployment:
    """The stack's preview and update; split, the platform's and then each app stack's, one after another (an app
    stack's preview needs its platform deployed), added up."""
    parallel = ("--parallel", str(shape.parallel)) if shape.parallel else ()
    previews, ups, steps, resources, state_bytes, managed_bytes = [], [], [], 0, 0, 0
    timeline = UpdateTimeline()
    for stack in (STACK, *app_stacks):
        wait_for_a_quiet_machine(cluster.pids())
        with CpuClock(cluster.pids()) as preview:
            workspace.pulumi("preview", "--stack", stack, *POLICY, *parallel, timeout=PREVIEW_TIMEOUT)
        log = workspace.root / f"up-events-{stack}.jsonl"
        wait_for_a_quiet_machine(cluster.pids())
        with CpuClock(cluster.pids()) as up, EventLogClock(log) as events:
            workspace.pulumi("up", "--stack", stack, "--yes", "--skip-preview", *POLICY, *parallel, "--event-log", str(log),
                             timeout=UP_TIMEOUT)
        previews.append(preview.use)
        ups.append(up.use)
        if stack == STACK:
            timeline = events.timeline
        steps += events.timeline.steps
        state = workspace.pulumi("stack", "export", "--stack", stack).json()
        managed = [r for r in state["deployment"]["resources"] if not r["type"].startswith(("pulumi:pulumi:Stack", "pulumi:providers:"))]
        state_file = workspace.root / "state" / ".pulumi" / "stacks" / PROJECT / f"{stack}.json"
        resources += len(managed)
        state_bytes += state_file.stat().st_size if state_file.exists() else 0
        managed_bytes += managed_fields_bytes(managed)
    if app_stacks:  # the phases of one update do not add up across stacks: only the steps are kept
        timeline = UpdateTimeline(steps)
    return Deployment(_combined(previews), _combined(ups), timeline, resources, state_bytes, managed_bytes,
                      [use.wall for use in ups] if app_stacks else [])


def managed_fields_bytes(resources: list[dict]) -> int:
    """What the live objects' managedFields take of the state: the provider keeps the whole live object as outputs."""
    return sum(len(json.dumps(((r.get("outputs") or {}).get("metadata") or {}).get("managedFields"), separators=(",", ":")))
               for r in resources if isinstance(((r.get("outputs") or {}).get("metadata") or {}), dict)
               and ((r.get("outputs") or {}).get("metadata") or {}).get("managedFields"))


# ---- a deployed stack's day: a canary step, a no-change update, a refresh -------------------------

@dataclass
class DayTwo:
    """Operations on the deployed dev-shaped stack, each timed once, with the policy pack as `make` runs them."""

    no_change_up: float
    refresh: float
    step: str  # the canary step: which service's weights, from what to what
    step_preview: float
    step_up: float
    step_changes: dict[str, int]  # the step's preview: operation -> resources
    kubectl_step: float  # `kubectl apply --server-side` of the step's one VirtualService, median of KUBECTL_RUNS
    others_cores: float = 0.0  # the most cores other processes took during one of these phases
    # The step taken back, without the policy pack: what the pack costs each of the step's two commands.
    unpoliced_preview: float = 0.0
    unpoliced_up: float = 0.0

    @property
    def step_total(self) -> float:
        return self.step_preview + self.step_up


def canary_step(edits: dict) -> tuple[str, dict, dict]:
    """The first service with a canary in the stack file, and its weights moved 10 points toward the canary."""
    services = load_stack_values(STACK)[0].get("services") or {}
    for name, service in services.items():
        weights = dict(service.get("weights") or {})
        if len(weights) >= 2:
            stable, canary = list(weights)[:2]
            moved = {**weights, stable: weights[stable] - 10, canary: weights[canary] + 10}
            return name, weights, moved
    raise SystemExit(f"Pulumi.{STACK}.yaml has no service with a canary to step")


def virtual_service(edits: dict, name: str) -> str:
    """The VirtualService the program declares for `name` under these stack edits, as kubectl would apply it."""
    run = run_stack(STACK, edits)
    if run.error:
        raise SystemExit(f"the canary step does not evaluate under the mock engine: {run.error}")
    found = [unwrap(r.manifest()) for r in run.kubernetes_objects() if r.inputs.get("kind") == "VirtualService"
             and r.inputs["metadata"]["name"] == name]
    return yaml.safe_dump(found[0])


def _timed(cluster: SimCluster, others: list[float], action) -> float:
    wait_for_a_quiet_machine(cluster.pids())
    with CpuClock(cluster.pids()) as clock:
        action()
    others.append(clock.use.others_cores)
    return clock.use.wall


def day_two(workspace: Workspace, cluster: SimCluster, edits: dict) -> DayTwo:
    others: list[float] = []
    pulumi = workspace.pulumi
    no_change = _timed(cluster, others, lambda: pulumi("up", "--stack", STACK, "--yes", "--skip-preview", *POLICY, timeout=UP_TIMEOUT))
    refresh = _timed(cluster, others, lambda: pulumi("refresh", "--stack", STACK, "--yes", "--skip-preview", timeout=UP_TIMEOUT))
    service, before, after = canary_step(edits)
    stepped = {**edits, f"services.{service}.weights": after}
    workspace.write_stack_file(STACK, STACK, stepped)
    preview: list = []
    step_preview = _timed(cluster, others, lambda: preview.append(
        pulumi("preview", "--stack", STACK, "--json", *POLICY, timeout=PREVIEW_TIMEOUT)))
    step_up = _timed(cluster, others, lambda: pulumi("up", "--stack", STACK, "--yes", "--skip-preview", *POLICY, timeout=UP_TIMEOUT))
    changes = {op: count for op, count in (preview[0].json().get("changeSummary") or {}).items() if count}
    workspace.write_stack_file(STACK, STACK, edits)
    unpoliced_preview = _timed(cluster, others, lambda: pulumi("preview", "--stack", STACK, timeout=PREVIEW_TIMEOUT))
    unpoliced_up = _timed(cluster, others, lambda: pulumi("up", "--stack", STACK, "--yes", "--skip-preview", timeout=UP_TIMEOUT))
    # kubectl moves the same weights back and forth: each apply changes the object, as the step did.
    manifests = [virtual_service(edits, service), virtual_service(stepped, service)]
    cluster.kubectl("api-resources", "-o", "name")  # discovery cached before the first timed call
    walls = [_timed(cluster, others, lambda text=text: cluster.kubectl("apply", "--server-side", "--force-conflicts",
                                                                       "--field-manager", "bench-kubectl", "-f", "-", stdin=text))
             for _ in range(KUBECTL_RUNS) for text in manifests]
    return DayTwo(no_change, refresh, f"{service} {before} -> {after}", step_preview, step_up, changes,
                  statistics.median(walls), max(others), unpoliced_preview, unpoliced_up)


# ---- one shape, and all of them ----------------------------------------------------------------

@dataclass
class Measurement:
    shape: Shape
    declared: Declared
    runs: list[Deployment] = field(default_factory=list)
    kubectl_create: float = 0.0  # dry-run against a cluster holding only the namespaces and CRDs
    kubectl_reapply: float = 0.0  # dry-run against the cluster the last update left
    kubectl_others: dict[str, float] = field(default_factory=dict)  # dry-run -> most cores others took in one run
    nodes: int = 2
    discarded: list[str] = field(default_factory=list)  # the commands of runs thrown away (STARTUP_RACE)
    day_two: DayTwo | None = None  # the dev-shaped stack's canary step, no-change update and refresh

    @property
    def objects(self) -> int:
        return len(self.declared.objects)

    @property
    def resources(self) -> int:
        return self.runs[-1].resources

    @property
    def preview(self) -> float:
        return statistics.median(run.preview for run in self.runs)

    @property
    def up(self) -> float:
        return statistics.median(run.up for run in self.runs)

    @property
    def median_run(self) -> Deployment:
        return sorted(self.runs, key=lambda run: run.up)[(len(self.runs) - 1) // 2]

    def contention(self) -> dict[str, float]:
        """Timed phase -> the cores other processes took during it."""
        phases = {f"kubectl {name}": cores for name, cores in self.kubectl_others.items()}
        for index, run in enumerate(self.runs, 1):
            phases[f"preview {index}"] = run.preview_cpu.others_cores
            phases[f"up {index}"] = run.up_cpu.others_cores
        if self.day_two:
            phases["canary step, no-change update, refresh"] = self.day_two.others_cores
        return phases


def objects_file(work: Path, shape: Shape) -> Path:
    return work / shape.slug / "objects.yaml"


def create_dry_runs(measurements: list[Measurement], work: Path) -> str:
    """Every shape's create dry-run on one cluster holding only the namespaces and CRDs; the server's version."""
    with bench_cluster(work / "baseline-cluster") as cluster:
        for m in measurements:
            prepare_namespaces_and_crds(cluster, m.declared)
            m.kubectl_create, m.kubectl_others["create"] = kubectl_dry_run(cluster, objects_file(work, m.shape))
            print(f"{m.shape.label}: kubectl dry-run of {m.objects} objects as creates: {m.kubectl_create:.1f} s", flush=True)
        return cluster.server_version()


# The program reads its own stack's last outputs (config/deployed.py); now and then the file backend answers that
# read with "failed to load checkpoint: EOF" as the CLI starts. Such a run is thrown away and done again.
STARTUP_RACE = "failed to load checkpoint: EOF"
ATTEMPTS = 3


def deploy(m: Measurement, work: Path, runs: int) -> None:
    """`runs` fresh clusters, each previewed and updated; the last one also re-applied by kubectl's dry-run."""
    m.nodes = nodes_for(m.declared)
    for index in range(runs):
        for attempt in range(ATTEMPTS):
            state = work / m.shape.slug / f"cluster-{index}-{attempt}"
            with bench_cluster(state, m.nodes, m.declared.volumes) as cluster:
                workspace = workspace_for(m.shape, work / m.shape.slug / f"workspace-{index}-{attempt}", cluster,
                                          m.declared.stack_edits, m.declared.app_stacks)
                try:
                    m.runs.append(preview_and_up(workspace, cluster, m.shape, tuple(m.declared.app_stacks)))
                except AssertionError as failed:
                    if STARTUP_RACE not in str(failed) or attempt == ATTEMPTS - 1:
                        raise
                    m.discarded.append(str(failed).splitlines()[0][:200])
                    print(f"{m.shape.label}, run {index + 1}: {STARTUP_RACE}; starting it again on a fresh cluster", flush=True)
                    continue
                print(f"{m.shape.label}, run {index + 1}/{runs}: preview {m.runs[-1].preview:.1f} s, up {m.runs[-1].up:.1f} s",
                      flush=True)
                if index == runs - 1:
                    m.kubectl_reapply, m.kubectl_others["re-apply"] = kubectl_dry_run(cluster, objects_file(work, m.shape))
                    if m.shape.services == REAL_SERVICES and not m.shape.lever:
                        m.day_two = day_two(workspace, cluster, m.declared.stack_edits)
                        print(f"{m.shape.label}: canary step {m.day_two.step}: preview {m.day_two.step_preview:.1f} s, "
                              f"up {m.day_two.step_up:.1f} s, kubectl {m.day_two.kubectl_step:.2f} s", flush=True)
                break


def run_all(sizes: tuple[int, ...], runs: int, single_run_from: int, work: Path,
            probe_checkpoints: bool, levers: bool = True, split: int = 0) -> tuple[list[Measurement], str]:
    charts = stand_in_helm_charts(work / "charts", ISTIO_CRDS)
    measurements = []
    for shape in shapes(sizes, probe_checkpoints, levers, split):
        wait_for_a_quiet_machine([])  # the mock-engine run is timed too
        declared = declare(shape, charts, work)
        objects_file(work, shape).parent.mkdir(parents=True, exist_ok=True)
        objects_file(work, shape).write_text(yaml.safe_dump_all(declared.objects))
        measurements.append(Measurement(shape, declared))
    # A split stack declares objects of its own (a namespace, Gateway and MongoDB per app stack): its own dry-run.
    variants = [m for m in measurements if m.shape.lever and not m.shape.app_stacks]
    server = create_dry_runs([m for m in measurements if m not in variants], work)
    for variant in variants:  # the objects of the stack it repeats (the annotation aside): the same dry-run
        same = next(m for m in measurements if m.shape.services == variant.shape.services and m not in variants)
        variant.kubectl_create, variant.kubectl_others["create"] = same.kubectl_create, same.kubectl_others["create"]
    for m in measurements:
        deploy(m, work, 1 if m.shape.services >= single_run_from else runs)
    return measurements, server


# ---- where an update's time goes ---------------------------------------------------------------

STEP_GROUPS = (  # (label, types); a type ending in ":" stands for every type it starts; the first match takes a step
    ("Helm releases", ("kubernetes:helm.sh/v3:Release",)),
    ("Services", ("kubernetes:core/v1:Service",)),
    ("Deployments (wait for Ready pods)", ("kubernetes:apps/v1:Deployment",)),
    ("Jobs (wait for completion)", ("kubernetes:batch/v1:Job",)),
    ("StatefulSet (waits for Ready members)", ("kubernetes:apps/v1:StatefulSet",)),
    ("other Kubernetes objects (no wait)", ("kubernetes:",)),
    ("passwords and keys (random, tls)", ("random:", "tls:")),
)
NO_WAIT = "other Kubernetes objects (no wait)"


def step_group(step: Step) -> str:
    def matches(token: str) -> bool:
        return step.type == token or (token.endswith(":") and step.type.startswith(token))

    return next((label for label, tokens in STEP_GROUPS if any(map(matches, tokens))), "other")


def grouped(timeline: UpdateTimeline) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {label: [] for label, _ in STEP_GROUPS}
    for step in timeline.steps:
        if step.custom:
            groups.setdefault(step_group(step), []).append(step.seconds)
    return {label: seconds for label, seconds in groups.items() if seconds}


def no_wait_steps_by_fifth(timeline: UpdateTimeline) -> list[float | None]:
    """Median step time of the objects the provider does not wait on, in each fifth of the update (by completion)."""
    steps = timeline.steps
    fifths: list[list[float]] = [[] for _ in range(5)]
    for index, step in enumerate(steps):
        if step.custom and step_group(step) == NO_WAIT:
            fifths[5 * index // len(steps)].append(step.seconds)
    return [statistics.median(seconds) if seconds else None for seconds in fifths]


def _without_levers(measurements: list[Measurement]) -> list[Measurement]:
    """The plain stacks and the checkpoint probe: the ones whose time the breakdowns explain."""
    return [m for m in measurements if not m.shape.services_awaited and m.shape.parallel is None]


def growth_table(measurements: list[Measurement]) -> str:
    measurements = _without_levers(measurements)
    rows = [(m.shape.label, *("" if value is None else f"{value:.2f}" for value in no_wait_steps_by_fifth(m.median_run.timeline)))
            for m in measurements]
    return markdown.table(("stack", "objects with no wait: median step (s), 1st fifth of the update", "2nd", "3rd", "4th", "5th"), rows)


def cpu_table(measurements: list[Measurement]) -> str:
    """CPU seconds by process role, for each stack's median preview and update."""
    measurements = _without_levers(measurements)
    columns = [(f"{m.shape.label} {phase}", use) for m in measurements
               for phase, use in (("preview", m.median_run.preview_cpu), ("up", m.median_run.up_cpu))]
    roles = list(dict.fromkeys(role for _, use in columns for role in use.roles))
    uses = [use for _, use in columns]
    rows = [(role, *(f"{use.roles.get(role, 0.0):.1f}" for use in uses)) for role in roles]
    rows += [("**all of ours**", *(f"**{sum(use.roles.values()):.1f}**" for use in uses)),
             ("wall time (s)", *(f"{use.wall:.1f}" for use in uses)),
             ("our cores busy, on average", *(f"{sum(use.roles.values()) / use.wall:.2f}" for use in uses)),
             ("other processes' cores, on average", *(f"{use.others_cores:.2f}" for use in uses))]
    return markdown.table(("CPU seconds", *(label for label, _ in columns)), rows)


def discarded_line(measurements: list[Measurement]) -> str:
    thrown = [(m.shape.label, command) for m in measurements for command in m.discarded]
    if not thrown:
        return ""
    listed = "; ".join(f"{label}: {command.split(' exited')[0].strip('`')}" for label, command in thrown)
    return (f"{len(thrown)} run(s) failed as the CLI started, the program's read of its own stack's outputs answered with "
            f"`{STARTUP_RACE}` by the file backend, and were done again on a fresh cluster ({listed}).")


def contention_line(measurements: list[Measurement]) -> str:
    """Whether anything else ran on the machine while the figures were taken, and when."""
    busy = [(m.shape.label, phase, cores) for m in measurements for phase, cores in m.contention().items() if cores >= QUIET_CORES]
    worst = max((cores for m in measurements for cores in m.contention().values()), default=0.0)
    if not busy:
        return (f"Other processes took at most {worst:.2f} cores during any timed phase (each waited for a quiet machine, "
                f"under {QUIET_CORES} cores, first).")
    listed = "; ".join(f"{label} {phase}: {cores:.1f} cores" for label, phase, cores in busy)
    return f"**Other processes were busy during some timed phases**, whose figures are high by that much: {listed}."


def steps_table(measurements: list[Measurement]) -> str:
    rows = []
    for m in (m for m in measurements if m.shape.parallel is None):
        groups = grouped(m.median_run.timeline)
        total = sum(sum(seconds) for seconds in groups.values())
        rows += [(m.shape.label, label, len(seconds), f"{statistics.median(seconds):.2f}", f"{max(seconds):.2f}",
                  f"{sum(seconds):.1f}", f"{100 * sum(seconds) / total:.0f}%") for label, seconds in groups.items()]
    return markdown.table(("stack", "resource steps (update)", "steps", "median step (s)", "longest step (s)", "sum of steps (s)",
                           "share of the sum"), rows, left=(0, 1))


def phases_table(measurements: list[Measurement]) -> str:
    """The update's wall time cut at its first and last resource step, and how many steps were in flight between."""
    rows = []
    for m in (m for m in measurements if not m.shape.app_stacks):  # a split's updates are several, one after another
        run = m.median_run
        span = run.timeline.last_step - run.timeline.first_step
        busy = sum(step.seconds for step in run.timeline.steps if step.custom)
        rows.append((m.shape.label, f"{run.up:.1f}", f"{run.timeline.first_step:.1f}", f"{span:.1f}",
                     f"{run.up - run.timeline.last_step:.1f}", f"{busy / span if span else 0:.1f}", f"{m.declared.seconds:.2f}"))
    return markdown.table(("stack", "`pulumi up` (s)", "before the first step (s)", "first to last step (s)", "after the last step (s)",
                           "steps in flight, on average", "program under the mock engine (s)"), rows)


# ---- the report --------------------------------------------------------------------------------

def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def goals_table(measurements: list[Measurement]) -> str:
    """The update's goals (issue: `pulumi up` at the speed of the API server), in this run's figures."""
    plain = _of(measurements, False)
    rows = []
    dev = plain.get(REAL_SERVICES)
    if dev:
        ratio = dev.up / dev.kubectl_create
        rows.append(("dev-shaped `pulumi up` from empty, against kubectl's create dry-run of the same objects", "<= 3x",
                     f"{dev.up:.1f} s / {dev.kubectl_create:.1f} s = {ratio:.1f}x", _verdict(ratio <= 3)))
    if dev and dev.day_two:
        day = dev.day_two
        rows += [
            ("a canary step on the deployed dev-shaped stack: `pulumi preview`, then `pulumi up`", "<= 5 s",
             f"{day.step_preview:.1f} s + {day.step_up:.1f} s = {day.step_total:.1f} s; `kubectl apply --server-side` of the "
             f"VirtualService: {day.kubectl_step:.2f} s ({day.step_total / day.kubectl_step:.0f}x)", _verdict(day.step_total <= 5)),
            ("a no-change `pulumi up` of the deployed stack", "timed", f"{day.no_change_up:.1f} s", ""),
            ("`pulumi refresh` of the deployed stack", "timed", f"{day.refresh:.1f} s", ""),
        ]
    sizes = sorted(size for size in plain if size > REAL_SERVICES)
    if len(sizes) >= 2:
        small, large = plain[sizes[0]], plain[sizes[-1]]
        against_kubectl, against_small = large.up / large.kubectl_create, large.up / small.up
        rows += [
            (f"{large.shape.label} `pulumi up` from empty, against kubectl's create dry-run", "<= 10x",
             f"{large.up:.0f} s / {large.kubectl_create:.1f} s = {against_kubectl:.1f}x", _verdict(against_kubectl <= 10)),
            (f"{large.shape.label} `pulumi up`, against the {small.shape.label} one ({large.resources / small.resources:.1f}x the "
             "resources)", "<= 12x", f"{large.up:.0f} s / {small.up:.1f} s = {against_small:.1f}x", _verdict(against_small <= 12)),
        ]
    split = next((m for m in measurements if m.shape.app_stacks), None)
    if split and sizes:
        small = plain[sizes[0]]
        against_kubectl, against_small = split.up / split.kubectl_create, split.up / small.up
        rows += [
            (f"{split.shape.label}: every `pulumi up` from empty, one after another, against kubectl's create dry-run of "
             "all their objects", "<= 10x", f"{split.up:.0f} s / {split.kubectl_create:.1f} s = {against_kubectl:.1f}x",
             _verdict(against_kubectl <= 10)),
            (f"{split.shape.label}, against the {small.shape.label} one ({split.resources / small.resources:.1f}x the resources)",
             "<= 12x", f"{split.up:.0f} s / {small.up:.1f} s = {against_small:.1f}x", _verdict(against_small <= 12)),
        ]
    return markdown.table(("goal", "target", "this run", ""), rows, left=(0, 2))


def levers_table(measurements: list[Measurement]) -> str:
    """Each lever's stack against the plain stack it varies, by `pulumi up` from empty."""
    plain = _of(measurements, False)
    rows = []
    for variant in (m for m in measurements if m.shape.lever):
        base = plain[variant.shape.services]
        if variant.shape.services_awaited:
            lever, taken = "Services not awaited (`pulumi.com/skipAwait`)", "taken"
            without, with_ = variant.up, base.up
        elif variant.shape.parallel:
            lever, taken = f"`--parallel {variant.shape.parallel}` instead of the default", "not taken"
            without, with_ = base.up, variant.up
        elif variant.shape.app_stacks:
            lever = f"split into the platform and {variant.shape.app_stacks} app stacks (updates one after another)"
            without, with_ = base.up, variant.up
            taken = ("taken: the way to run a large mesh (docs/platform-stacks.md)" if with_ < without else
                     "not at this size: each stack's own start-up costs more than its smaller saves gain")
        else:
            lever, taken = f"`{SKIP_CHECKPOINTS}=true`", "not taken: experimental, and an interrupted update leaves no state"
            without, with_ = base.up, variant.up
        rows.append((lever, base.shape.label, f"{without:.1f}", f"{with_:.1f}", f"{100 * (with_ - without) / without:+.0f}%", taken))
    return markdown.table(("lever", "stack", "`pulumi up` without it (s)", "with it (s)", "effect", "verdict"), rows, left=(0, 1, 5))


def state_line(measurements: list[Measurement]) -> str:
    """What the state holds per resource, and how much of it is the live objects' managed fields."""
    parts = [f"{m.shape.label} {m.median_run.state_bytes / m.resources / 1024:.1f} KiB per resource, "
             f"{100 * m.median_run.managed_fields_bytes / m.median_run.state_bytes:.0f}% of it managed fields"
             for m in _of(measurements, False).values() if m.median_run.state_bytes and m.median_run.managed_fields_bytes]
    return ("**What the state holds.** The state file after the update: " + "; ".join(parts) + ". The provider keeps each "
            "object's whole live copy as its outputs, the server's `metadata.managedFields` included (pulumi-kubernetes "
            "4.25.0, `checkpointObject` in `provider/pkg/provider/provider.go`), and neither a provider option nor an "
            "annotation leaves them out: that lever is not open to the program.") if parts else ""


def day_two_table(measurements: list[Measurement]) -> str:
    rows = []
    for m in measurements:
        day = m.day_two
        if day:
            changed = ", ".join(f"{count} {op}" for op, count in sorted(day.step_changes.items()))
            rows += [(m.shape.label, "canary step: `pulumi preview`", f"{day.step_preview:.1f}", f"{day.step} ({changed})"),
                     (m.shape.label, "canary step: `pulumi up --skip-preview`", f"{day.step_up:.1f}", ""),
                     (m.shape.label, "the same VirtualService: `kubectl apply --server-side`", f"{day.kubectl_step:.2f}",
                      f"median of {2 * KUBECTL_RUNS}, weights moved back and forth"),
                     *([(m.shape.label, "the step back, without the policy pack: `pulumi preview` / `pulumi up`",
                         f"{day.unpoliced_preview:.1f} / {day.unpoliced_up:.1f}",
                         f"the pack's share of the step: {day.step_total - day.unpoliced_preview - day.unpoliced_up:.1f} s")]
                       if day.unpoliced_up else []),
                     (m.shape.label, "no-change `pulumi up --skip-preview`", f"{day.no_change_up:.1f}", ""),
                     (m.shape.label, "`pulumi refresh --skip-preview`", f"{day.refresh:.1f}", "")]
    return markdown.table(("stack", "operation on the deployed stack", "wall (s)", "what"), rows, left=(0, 1, 3)) if rows else ""


def _runs(m: Measurement) -> str:
    return f"{len(m.runs)} run" + ("s" if len(m.runs) > 1 else "")


def table(measurements: list[Measurement]) -> str:
    rows = [(m.shape.label, m.shape.services, m.resources, m.objects, _runs(m), f"{m.preview:.1f}", f"{m.up:.1f}",
             f"{m.kubectl_create:.1f}", f"{m.kubectl_reapply:.1f}", f"{1000 * m.preview / m.resources:.0f}",
             f"{1000 * m.up / m.resources:.0f}", f"{1000 * m.kubectl_create / m.objects:.1f}", f"{m.up / m.kubectl_create:.1f}x")
            for m in measurements]
    return markdown.table(("stack", "services", "resources", "Kubernetes objects", "runs", "`pulumi preview` (s)", "`pulumi up` (s)",
                           "kubectl dry-run, create (s)", "kubectl dry-run, re-apply (s)", "preview ms / resource",
                           "up ms / resource", "kubectl ms / object (create)", "up / kubectl create"), rows, left=(0, 4))


def toolchain_line(server: str) -> str:
    versions = dict(line.split("=", 1) for line in (ROOT / "tools" / "toolchain" / "versions").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    kubectl = json.loads(subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True,
                                        check=False).stdout or "{}").get("clientVersion", {}).get("gitVersion", "?")
    return (f"Pulumi CLI {versions['PULUMI_VERSION']} ({toolchain_bin().parent.name}), pulumi-kubernetes provider "
            f"{versions['KUBERNETES_PROVIDER_VERSION']} (its Helm inside), random {versions['RANDOM_PROVIDER_VERSION']}, "
            f"tls {versions['TLS_PROVIDER_VERSION']}; kube-apiserver {server}, etcd {_reported_version(['etcd', '--version'])}, "
            f"kwok {_reported_version([str(KUBE_BIN / 'kwok'), '--version'])}; "
            f"kubectl {kubectl}")


def program_revision() -> str:
    """The commit the program was measured at; the figures are of the files as they were, committed or not."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no", "--", *PROGRAM_FILES, "bench", "policy", f"Pulumi.{STACK}.yaml").splitlines()
    return git("rev-parse", "--short", "HEAD") + (f" with {len(changed)} program files changed and not committed" if changed else "")


def engine_parallel() -> int:
    """The CLI's default --parallel on this machine, as `pulumi up --help` states it."""
    done = subprocess.run([str(toolchain_bin() / "pulumi"), "up", "--help"], capture_output=True, text=True, check=False)
    found = re.search(r"--parallel int32 .*\(default (\d+)\)", done.stdout)
    return int(found.group(1)) if found else 0


def _reported_version(command: list[str]) -> str:
    """The version a tool prints (`etcd Version: 3.4.23`, `kwok version v0.8.0 ...`)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"[Vv]ersion:?\s+(v?[0-9][^\s]*)", done.stdout + done.stderr)
    return found.group(1) if found else "?"


def section(report: Report) -> str:
    measurements, wall = report.measurements, report.wall
    nodes = ", ".join(f"{m.shape.label} {m.nodes}" for m in measurements)
    return "\n".join([
        SECTION,
        "",
        intro(measurements),
        "",
        f"Machine: {machine()}. {toolchain_line(report.server)}. The program at {report.revision}.",
        "",
        f"`{report.command}`: the whole benchmark took {wall / 60:.0f} min ({wall:.0f} s). Fake nodes per cluster: {nodes}. "
        "Preview and update figures are medians over fresh clusters (one update each, from empty); each kubectl "
        f"figure is the median of {KUBECTL_RUNS} runs, after a first call has cached discovery.",
        "",
        "### Goals",
        "",
        goals_table(measurements),
        "",
        "### Levers",
        "",
        levers_table(measurements),
        "",
        state_line(measurements),
        "",
        "### A deployed stack's day",
        "",
        day_two_table(measurements),
        "",
        "Every command runs with the policy pack, as `make preview` and `make up` run them.",
        "",
        "### Every stack",
        "",
        table(measurements),
        "",
        "Resources are what the engine manages after the update (components included, the stack and providers not); "
        "Kubernetes objects are the ones the program applies itself, which is what kubectl is given (Helm's releases "
        "are not in it: their stand-in charts install only the base chart's CRDs, which the create dry-run's cluster "
        "already holds).",
        "",
        contention_line(measurements),
        "",
        *([discarded_line(measurements), ""] if discarded_line(measurements) else []),
        "### Where an update's time goes",
        "",
        phases_table(measurements),
        "",
        steps_table(measurements),
        "",
        "Steps are timed from the engine starting a resource to its outputs, read from the engine's event log as it is "
        "written (the median update of each stack). Component steps are left out: they span their children.",
        "",
        growth_table(measurements),
        "",
        "### Whose CPU",
        "",
        cpu_table(measurements),
        "",
        f"Our processes' CPU (user and system) by role, sampled from /proc every {SAMPLE_SECONDS:g} s, the median run of each "
        f"stack; the machine has {os.cpu_count()} cores. Other processes' share is the machine's busy time less ours.",
        "",
        reading(report),
    ])


_PROBE = """ The largest
stack is deployed once more with `PULUMI_SKIP_CHECKPOINTS=true`, the CLI's experimental switch that saves the state
once, at the end, instead of after every step: the difference is what those saves cost."""
_LEVERS = """ The dev-shaped and the
smallest synthetic stack are also deployed with one lever varied each: the provider's wait on every Service put back
(as the program had it before), and the engine's `--parallel` at 4 and 16 against its default."""
_SPLIT = """ The largest stack is also
deployed split ([platform-stacks.md](platform-stacks.md)): the dev-shaped stack as the platform, on a host of its own
and listing the app stacks, and the synthetic services in whole groups (a front end and its backends, which the
platform's front end does not call) spread over the app stacks, each in a namespace of its own with its own MongoDB.
The platform and then each app stack are previewed and updated one after another (an app stack's preview needs its
platform deployed); its figures are their sums, and its kubectl baseline is all their objects."""


def intro(measurements: list[Measurement]) -> str:
    """What the benchmark did, with the variants this run deployed."""
    variants = "".join(text for present, text in (
        (any(m.shape.skip_checkpoints for m in measurements), _PROBE),
        (any(m.shape.services_awaited or m.shape.parallel for m in measurements), _LEVERS),
        (any(m.shape.app_stacks for m in measurements), _SPLIT)) if present)
    return _INTRO.format(variants=variants)


_INTRO = """\
The same program through the real CLI, providers and policy pack, deploying to the simulated cluster of
`scripts/sim-cluster.sh` (kube-apiserver, kube-controller-manager and kube-scheduler 1.33, etcd, kwok's fake nodes;
loopback only), generated by `make bench-real` (`bench/real_cluster.py`). What is real here: the engine, the
language host, the providers (pulumi-kubernetes with its Helm), the policy pack, the API server with its validation,
defaulting and admission, the controllers that make ReplicaSets, pods and Jobs' pods, the scheduler, and the
readiness the provider waits for. What is not: the Helm charts are stand-ins (charts cannot be downloaded here; the
base chart carries Istio's real 1.30.3 CRDs, the others render nothing, so istiod, the gateway and the add-ons are not
installed); the nodes are kwok's, which mark a scheduled pod Running and Ready at once and a Job's pod Succeeded,
with no container, image pull or probe; and there are no admission webhooks, so no sidecar injection. The
MongoDB claims get PersistentVolumes made by the benchmark. Each stack gets a fresh cluster per run, on ports and a
state folder of its own.

The dev-shaped stack is `Pulumi.dev.yaml` on Istio 1.30.3 and Kubernetes 1.33 (the cluster's version, which
Istio 1.6 cannot run on); the synthetic stacks add copies of the real services to it as in the mock-engine
benchmark above (`synthetic_catalogue`), through a generated `__main__.py` that runs the project's program with them
in the catalogue. `pulumi preview` runs on the empty cluster, as before a first deploy; `pulumi up --skip-preview`
deploys from empty; both with `--policy-pack policy`, as `make preview` and `make up` run them. The kubectl baseline
is `kubectl apply --server-side --dry-run=server --force-conflicts -f` of the program's Kubernetes objects (from the
mock-engine run, Secrets holding its stand-in values), once as creates, on a cluster holding only their namespaces
and Istio's CRDs, and once as a re-apply, on the cluster the last update left. A dry-run does everything a write does
except store the object: it is what talking to the API server costs at least, one request per object.{variants}

On the last dev-shaped cluster, the deployed stack then gets a day's operations, each timed: a no-change `pulumi up`,
a `pulumi refresh`, and a canary step (one service's weights moved 10 points in the stack file, then `pulumi preview`
and `pulumi up`), beside `kubectl apply --server-side` of that one VirtualService (the step's and the previous
weights, applied in turn, each apply a real write)."""

def _of(measurements: list[Measurement], probe: bool) -> dict[int, Measurement]:
    """The plain stacks (or the checkpoint probes) by their number of services."""
    return {m.shape.services: m for m in measurements
            if (m.shape.skip_checkpoints if probe else not m.shape.lever)}


def _group(m: Measurement, label: str) -> list[float]:
    return grouped(m.median_run.timeline).get(label, [])


def reading(report: Report) -> str:
    """Where the time goes, in the figures of this run."""
    plain, probes = _of(report.measurements, False), _of(report.measurements, True)
    small, large = plain[min(plain)], plain[max(plain)]
    paragraphs = [_reading_totals(small, large), _reading_service_waits(report)]
    if large.shape.services in probes:
        paragraphs.append(_reading_checkpoints(large, probes[large.shape.services]))
    split = next((m for m in report.measurements if m.shape.app_stacks and m.shape.services == large.shape.services), None)
    synthetic = [size for size in plain if REAL_SERVICES < size < large.shape.services]
    if split and split.median_run.stack_ups and synthetic:
        paragraphs.append(_reading_split(plain[min(synthetic)], large, split))
    paragraphs += [_reading_workloads(small), _reading_what_is_missing()]
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)


def _reading_totals(small: Measurement, large: Measurement) -> str:
    return (
        f"**Per resource.** `pulumi up` costs {1000 * small.up / small.resources:.0f} ms per resource on the {small.shape.label} "
        f"stack and {1000 * large.up / large.resources:.0f} ms on the {large.shape.label} one; kubectl's server-side dry-run of the "
        f"same objects, one request after another, costs {1000 * small.kubectl_create / small.objects:.0f} and "
        f"{1000 * large.kubectl_create / large.objects:.0f} ms per object. So `pulumi up` takes {small.up / small.kubectl_create:.0f}x "
        f"and {large.up / large.kubectl_create:.0f}x as long as the API server needs to admit, validate and default every object "
        "once (a write adds etcd's commit, and the controllers' work after it): talking to the server is a floor well "
        f"under the update, not most of it. A preview, which waits for nothing, costs {1000 * small.preview / small.resources:.0f} "
        f"and {1000 * large.preview / large.resources:.0f} ms per resource. The program itself evaluates in "
        f"{small.declared.seconds:.1f} and {large.declared.seconds:.1f} s under the mock engine; under the real one the update's "
        f"first step starts {small.median_run.timeline.first_step:.1f} and {large.median_run.timeline.first_step:.1f} s after the "
        "CLI does (plugins and the policy pack starting, the program running up to its first resource).")


def _reading_split(small: Measurement, large: Measurement, split: Measurement) -> str:
    platform, *apps = split.median_run.stack_ups
    return (
        f"**Split.** As {split.shape.label}, the same services took {split.up:.0f} s to deploy, one stack after another, "
        f"against {large.up:.0f} s as one stack ({large.up / split.up:.1f}x as long): the platform's update took {platform:.1f} s, "
        f"and each app stack's between {min(apps):.1f} and {max(apps):.1f} s (median {statistics.median(apps):.1f} s; the "
        f"{small.shape.label} stack's: {small.up:.1f} s). Each stack saves only its own state after a step, so an update's saves "
        f"stay as cheap as a small stack's; the state files add up to {split.median_run.state_bytes / 2**20:.1f} MiB against "
        f"{large.median_run.state_bytes / 2**20:.1f} MiB. The split declares {split.objects - large.objects} more objects "
        "(each app stack's namespace, Gateway, MongoDB and policies), which kubectl's baseline includes. App stacks "
        "that do not depend on each other can also be updated side by side (each has its own state and lock); that is "
        "not timed here.")


def _reading_service_waits(report: Report) -> str:
    label = STEP_GROUPS[1][0]
    pairs = [(m, awaited) for m in _of(report.measurements, False).values()
             for awaited in report.measurements if awaited.shape.services_awaited and awaited.shape.services == m.shape.services]
    if not pairs:
        return ""

    def services(m: Measurement) -> str:
        steps = _group(m, label)
        return f"{len(steps)} Services took {statistics.median(steps):.2f} s each (median)" if steps else "no Service"

    compared = "; ".join(f"the {m.shape.label} update took {awaited.up:.1f} s with the wait and {m.up:.1f} s without it, "
                         f"its {services(awaited)} against {services(m).split(' took ', 1)[-1]}" for m, awaited in pairs)
    return (
        "**Waiting on Services.** The Kubernetes provider holds every Service with a selector until its Endpoints "
        "appear and then 10 s more, on every create and every update (pulumi-kubernetes' Service awaiter, "
        f"`provider/pkg/await/service.go`), each wait in one of the engine's {report.parallel} parallel slots. The "
        "program's Services carry `pulumi.com/skipAwait`: each fronts a workload whose readiness is awaited on the "
        "workload itself, and whatever uses a Service waits for that workload (`builders/kube.py`; "
        "`tests/test_service.py` checks both for every stack). Measured with the wait put back (the stacks named "
        f"\"Services awaited\"): {compared}.")


def _reading_checkpoints(large: Measurement, probe: Measurement) -> str:
    fifths, probe_fifths = no_wait_steps_by_fifth(large.median_run.timeline), no_wait_steps_by_fifth(probe.median_run.timeline)
    engine = "engine (pulumi CLI)"
    default_cpu, probe_cpu = large.median_run.up_cpu.roles.get(engine, 0.0), probe.median_run.up_cpu.roles.get(engine, 0.0)

    def spread(values: list[float | None]) -> str:
        known = [value for value in values if value is not None]
        return f"{known[0]:.2f} s in the first fifth of the update to {known[-1]:.2f} s in the last" if known else "n/a"

    return (
        "**The engine's state saves grow with the state.** On the large stack a step that waits for nothing gets slower "
        f"as the update goes on: {spread(fifths)}, while the API server answers each such object in tens of "
        "milliseconds. The engine saves the whole state (every resource's inputs and outputs, the live objects' "
        "managed fields among them) after every step, so each save costs more than the last and the update's cost grows "
        f"with the square of its size; with the file backend each save rewrites the state file{_state_size(large)}. With "
        f"`{SKIP_CHECKPOINTS}=true` the same stack's update took {probe.up:.0f} s instead of {large.up:.0f} s "
        f"({large.up / probe.up:.1f}x), its no-wait steps stayed at {spread(probe_fifths)}, and the engine's own CPU went "
        f"from {default_cpu:.0f} to {probe_cpu:.0f} s. {_preview_note(large, probe)} The switch is experimental and "
        "gives up the state an interrupted update would leave behind. Only the local file backend is measured here; "
        "a Pulumi Cloud backend saves the state its own way.")


def _preview_note(large: Measurement, probe: Measurement) -> str:
    """A preview saves no state, so the switch should not change it; say whether it did."""
    if abs(probe.preview - large.preview) <= 0.25 * large.preview:
        return f"Its preview took about the same ({probe.preview:.0f} s against {large.preview:.0f} s): a preview saves no state."
    return (f"Its preview took {probe.preview:.0f} s against {large.preview:.0f} s, although a preview saves no state; other "
            f"processes took {probe.median_run.preview_cpu.others_cores:.1f} and {large.median_run.preview_cpu.others_cores:.1f} "
            "cores during them.")


def _state_size(m: Measurement) -> str:
    size = m.median_run.state_bytes
    return f" ({size / 2**20:.0f} MiB at the end, {size / m.resources / 1024:.1f} KiB per resource)" if size else ""


def _reading_workloads(small: Measurement) -> str:
    deployments, jobs, releases = (_group(small, STEP_GROUPS[index][0]) for index in (2, 3, 0))
    base = [step.seconds for step in small.median_run.timeline.steps if step.urn.endswith("::istio-base")]
    return (
        f"**Rollouts and releases.** Deployments wait for Ready pods ({statistics.median(deployments):.1f} s each on the "
        f"{small.shape.label} stack, median) and the seeding Jobs for completion ({statistics.median(jobs):.1f} s), both "
        f"short because kwok makes a pod Ready as soon as it is scheduled. The {len(releases)} Helm releases take "
        f"{sum(releases):.1f} s in all" + (f", {base[0]:.1f} s of it the base chart's, the only one that installs anything "
                                           "(Istio's CRDs)" if base else "") + ".")


def _reading_what_is_missing() -> str:
    return (
        "**What a real cluster adds.** Image pulls, container start-up and readiness probes make every Deployment, "
        "Job and StatefulSet wait longer than here (and the Services would have waited 10 s after them); the real "
        "Helm charts install istiod, the gateway and the add-ons, whose rollouts Helm waits for; sidecar injection "
        "adds an admission webhook call to every pod. None of that is measured here: these figures are the engine, "
        "the providers, the program and the API server, with the waits a fake kubelet allows.")


def write_section(document: Path, text: str, heading: str = SECTION) -> None:
    """Put the section in the document, replacing an earlier one; the mock-engine figures around it stay."""
    current = document.read_text() if document.exists() else ""
    if heading in current:
        before, rest = current.split(heading, 1)
        following = rest.find("\n## ")
        after = rest[following:] if following >= 0 else ""
        current = before.rstrip() + "\n\n" + text.rstrip() + "\n" + after
    else:
        current = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    document.write_text(current.lstrip())


@dataclass
class Report:
    measurements: list[Measurement]
    server: str  # the API server's version
    wall: float  # the whole benchmark's wall time
    command: str
    revision: str  # the program's commit, and whether its files had changes not committed
    parallel: int  # the engine's default number of resource operations at once


def save(report: Report, path: Path) -> None:
    path.write_text(json.dumps(dataclasses.asdict(report)))


def load(path: Path) -> Report:
    """A saved run, to write its section again without deploying anything."""
    saved = json.loads(path.read_text())

    def deployment(run: dict) -> Deployment:
        timeline = run["timeline"]
        steps = [Step(**step) for step in timeline["steps"]]
        return Deployment(CpuUse(**run["preview_cpu"]), CpuUse(**run["up_cpu"]),
                          UpdateTimeline(steps, timeline["first_step"], timeline["last_step"]), run["resources"],
                          run.get("state_bytes", 0), run.get("managed_fields_bytes", 0), run.get("stack_ups", []))

    measurements = [Measurement(Shape(**m["shape"]), Declared(**m["declared"]), [deployment(run) for run in m["runs"]],
                                m["kubectl_create"], m["kubectl_reapply"], m["kubectl_others"], m["nodes"], m.get("discarded", []),
                                DayTwo(**m["day_two"]) if m.get("day_two") else None)
                    for m in saved["measurements"]]
    return Report(measurements, saved["server"], saved["wall"], saved["command"], saved["revision"], saved["parallel"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--runs", type=int, default=3, help="fresh clusters (preview and update) per stack")
    parser.add_argument("--single-run-from", type=int, default=200, metavar="N",
                        help="stacks of N services or more get one run: their update takes many minutes")
    parser.add_argument("--probe-checkpoints", action=argparse.BooleanOptionalAction, default=True,
                        help=f"deploy the largest stack once more with {SKIP_CHECKPOINTS}=true")
    parser.add_argument("--levers", action=argparse.BooleanOptionalAction, default=True,
                        help="also deploy the dev-shaped and smallest synthetic stacks with each lever varied")
    parser.add_argument("--split", type=int, default=10, metavar="N",
                        help="also deploy the largest stack split: the dev-shaped platform and N app stacks (0: not)")
    parser.add_argument("--write", type=Path, help=f"put the report in this Markdown file, under '{SECTION}'")
    parser.add_argument("--save", type=Path, metavar="JSON", help="also keep the measurements in this file")
    parser.add_argument("--render", type=Path, metavar="JSON", help="report measurements saved by --save; deploy nothing")
    args = parser.parse_args(argv)
    if any(size <= REAL_SERVICES for size in args.sizes):
        parser.error(f"synthetic stacks have more than the real app's {REAL_SERVICES} services")
    if args.render:
        report = load(args.render)
    else:
        command = (f"python -m bench.real_cluster --sizes {' '.join(map(str, args.sizes))} --runs {args.runs} "
                   f"--single-run-from {args.single_run_from}" + ("" if args.probe_checkpoints else " --no-probe-checkpoints")
                   + ("" if args.levers else " --no-levers") + f" --split {args.split}")
        started, revision = time.perf_counter(), program_revision()
        # A plain `kill` ends the run through its finally blocks, so every cluster it started is stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        with tempfile.TemporaryDirectory(prefix="bench-real-") as work:
            measurements, server = run_all(tuple(args.sizes), args.runs, args.single_run_from, Path(work), args.probe_checkpoints,
                                           args.levers, args.split)
        report = Report(measurements, server, time.perf_counter() - started, command, revision, engine_parallel())
        if args.save:
            save(report, args.save)
    text = section(report)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
