"""What `make up`, `make down` and `make delete-cluster` do on this machine: which stack, which cluster, and why.

    python -m tools.up_plan up [--stack dev-current] [--yes]   # shell assignments for scripts/up.sh, reasons on stderr
    python -m tools.up_plan up --show --cgroup-version 2 --context '' --docker   # the plan for given facts, readable
    python -m tools.up_plan down | delete-cluster | stack      # what an earlier `make up` left, as commands
    python -m tools.up_plan record --stack S --context C [--created-cluster NAME] | forget

The plan is a pure function of the facts: the cgroup version Docker runs, the kubeconfig's current context and the
Kubernetes version its API server reports, whether Docker is installed, and what an earlier `make up` recorded.
scripts/up.sh gathers nothing itself and runs exactly the commands planned here, so the tests that feed crafted
facts see the commands a machine would run.

With no context, `make up` creates a kind cluster and deploys the stack that can start there: dev (Istio 1.6,
Kubernetes 1.18) where Docker runs cgroup v1, dev-current (Istio 1.30, Kubernetes 1.33) otherwise, because a
Kubernetes 1.18 node cannot start on cgroup v2. With a context, it deploys to that cluster, and stops before anything
is created when the cluster's version is outside the stack's range. What it created is recorded, so `make down`
destroys that stack and deletes only a kind cluster `make up` made.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from config.live_cluster import live_cluster
from config.settings import Settings
from domain.istio_releases import istio_release
from domain.mesh import ISTIO_NAMESPACE
from tools import e2e
from tools.errors import CommandError
from tools.stack_files import ROOT, default_stack_file, load_stack_settings

# One kind for both generations. v0.29.0 publishes the 1.33 image; its code still configures nodes before 1.23
# (kubeadm v1beta2, preflight skipped, cgroupfs before 1.24), and the 1.18.20 image's entrypoint accepts the private
# cgroup namespace kind v0.20+ gives every node. kind itself promises an image only with the release that built it.
KIND_VERSION = "v0.29.0"
NODE_IMAGES = {  # Kubernetes minor -> kind node image, by digest
    # kind v0.14.0's release notes (the image whose entrypoint was read against v0.29.0); it needs a cgroup v1 host.
    18: "kindest/node:v1.18.20@sha256:738cdc23ed4be6cc0b7ea277a2ebcc454c8373d7d8fb991a7fcdbd126188e6d7",
    # kind v0.29.0's default image (pkg/apis/config/defaults/image.go).
    33: "kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f",
}
# Kubernetes supports cgroup v2 from 1.19 on; an older node never becomes ready on a cgroup v2 host.
FIRST_MINOR_ON_CGROUP_V2 = 19
KIND_CLUSTER = "bee-travels"
KIND_CONFIG = "scripts/kind-config.yaml"
# The stacks `make up` chooses between when no STACK is given, the one for old hosts first.
LEGACY_STACK, CURRENT_STACK = "dev", "dev-current"
AUTO_STACKS = (LEGACY_STACK, CURRENT_STACK)
RECORD = ROOT / ".pulumi-state" / "make-up.json"  # git-ignored, beside the local Pulumi state it describes
GATEWAY_SERVICE = "istio-ingressgateway"
FORWARDED_GATEWAY = "http://localhost:8080"


class Stop(CommandError):
    """Nothing can be done on this machine as asked; the message says why and what to do instead."""


# ---- facts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """What an earlier `make up` in this checkout deployed, and the kind cluster it created for it (if any)."""

    stack: str
    context: str
    kind_cluster: str | None = None


@dataclass(frozen=True)
class Facts:
    cgroup_version: int | None  # of the Docker host; None where unknown
    context: str  # the kubeconfig's current context, "" for none
    server_version: str | None  # what that context's API server reports ("1.33.1"), None where it cannot be read
    docker: bool
    record: Record | None = None

    @property
    def server_minor(self) -> int | None:
        return int(self.server_version.split(".")[1]) if self.server_version else None


def cgroup_version_from(docker_info: str, filesystem: str) -> int | None:
    """`docker info --format {{.CgroupVersion}}` where Docker answers, else `stat -fc %T /sys/fs/cgroup`."""
    if docker_info.strip() in ("1", "2"):
        return int(docker_info.strip())
    return {"cgroup2fs": 2, "tmpfs": 1}.get(filesystem.strip())


def current_context(environ: Mapping[str, str] = os.environ) -> str:
    """kubectl's rule: the first kubeconfig file (of $KUBECONFIG, else ~/.kube/config) that names one wins."""
    paths = [Path(part).expanduser() for part in environ.get("KUBECONFIG", "").split(os.pathsep) if part] or \
        [Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"]
    for path in paths:
        try:
            context = (yaml.safe_load(path.read_text()) or {}).get("current-context")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if context:
            return str(context)
    return ""


def read_record(path: Path | None = None) -> Record | None:
    try:
        data = json.loads((path or RECORD).read_text())
    except (OSError, ValueError):
        return None
    return Record(stack=data["stack"], context=data["context"], kind_cluster=data.get("kindCluster"))


def write_record(record: Record, path: Path | None = None) -> None:
    path = path or RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stack": record.stack, "context": record.context, "kindCluster": record.kind_cluster}, indent=2) + "\n")


def updated_record(previous: Record | None, stack: str, context: str, created_cluster: str | None) -> Record:
    """A cluster made by an earlier `make up` stays ours while the deployment lives on its context."""
    kept = previous.kind_cluster if previous and previous.context == context else None
    return Record(stack=stack, context=context, kind_cluster=created_cluster or kept)


def _command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def gather_facts(environ: Mapping[str, str] = os.environ) -> Facts:
    """This machine's facts (the only part that looks at Docker, the kubeconfig and the cluster)."""
    docker = shutil.which("docker") is not None
    docker_info = _command_output("docker", "info", "--format", "{{.CgroupVersion}}") if docker else ""
    context = current_context(environ)
    live = live_cluster({"context": context}, environ) if context else None
    return Facts(cgroup_version=cgroup_version_from(docker_info, _command_output("stat", "-fc", "%T", "/sys/fs/cgroup")),
                 context=context, server_version=live.version if live else None, docker=docker, record=read_record())


# ---- the stacks ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What `make up` needs to know of a stack: its versions, the range its Istio runs on, its gateway and canaries."""

    stack: str
    settings: Settings

    @property
    def kubernetes_minor(self) -> int:
        return self.settings.kubernetes_minor

    @property
    def istio_version(self) -> str:
        return self.settings.istio.version

    @property
    def supported_minors(self) -> tuple[int, int]:
        release = istio_release(self.istio_version)
        return release.kubernetes_minors if release else (self.kubernetes_minor, self.kubernetes_minor)

    @property
    def supported_range(self) -> str:
        low, high = self.supported_minors
        return f"1.{low}-1.{high}"

    def supports(self, minor: int) -> bool:
        low, high = self.supported_minors
        return low <= minor <= high

    def describe(self) -> str:
        return f"{self.stack} (Istio {self.istio_version}, Kubernetes 1.{self.kubernetes_minor})"


def stack_target(stack: str) -> Target:
    """The stack asked for, read as `pulumi up` reads it (the model and its rules): a stack file the program would
    refuse stops here, with the same problems listed, before a cluster is created for it."""
    stack_file = default_stack_file(stack, ROOT)
    if not stack_file.is_file():
        known = ", ".join(sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml")))
        raise Stop(f"there is no stack file Pulumi.{stack}.yaml; the committed stacks are: {known}")
    try:
        return Target(stack, load_stack_settings(stack, stack_file))
    except CommandError as error:
        raise Stop(str(error)) from None


# ---- plans ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpPlan:
    stack: str
    istio_version: str
    context: str  # where the stack goes: the current context, or the one kind gives the cluster it creates
    reasons: list[str]
    deploy: list[str]
    kind_version: str = KIND_VERSION
    create_cluster: list[str] = field(default_factory=list)  # empty: the current context's cluster is used
    kind_cluster: str = ""  # the cluster create_cluster makes
    next_steps: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[list[str]]:
        return [command for command in (self.create_cluster, self.deploy) if command]


def plan_up(facts: Facts, requested: str | None = None, yes: bool = False, kind_cluster: str = KIND_CLUSTER,
            kind_version: str = KIND_VERSION) -> UpPlan:
    _refuse_a_second_deployment(facts, requested)
    if facts.context:
        target, reasons = _onto_the_context(facts, requested)
        create: list[str] = []
        record = facts.record
        ours = record is not None and record.kind_cluster is not None and facts.context == kind_context(record.kind_cluster)
    else:
        target, reasons, create = _onto_a_new_kind_cluster(facts, requested, kind_cluster, kind_version)
        ours = True
    deploy = ["pulumi", "up", "--stack", target.stack, "--policy-pack", "policy", *(["--yes", "--skip-preview"] if yes else [])]
    return UpPlan(stack=target.stack, istio_version=target.istio_version, context=facts.context or kind_context(kind_cluster),
                  reasons=reasons, deploy=deploy, kind_version=kind_version, create_cluster=create,
                  kind_cluster=kind_cluster if create else "", next_steps=next_steps(target, ours))


def kind_context(cluster: str) -> str:
    """The kubeconfig context `kind create cluster` writes and makes current."""
    return f"kind-{cluster}"


def _refuse_a_second_deployment(facts: Facts, requested: str | None) -> None:
    """One deployment per checkout: a second would leave the first where `make down` no longer finds it."""
    record = facts.record
    if record is None:
        return
    elsewhere = record.context != facts.context
    other_stack = requested is not None and requested != record.stack
    if elsewhere or other_stack:
        where = f"the current context is '{facts.context}'" if facts.context else "no Kubernetes context is set now"
        raise Stop(f"an earlier `make up` deployed {record.stack} to context '{record.context}' ({_display(RECORD)}), and "
                   f"{where if elsewhere else f'STACK={requested} was asked for'}. Run `make down` first (with "
                   f"`kubectl config use-context {record.context}`), or remove {_display(RECORD)} if that cluster is gone.")


def _onto_the_context(facts: Facts, requested: str | None) -> tuple[Target, list[str]]:
    minor = facts.server_minor
    if minor is None:
        raise Stop(f"the current Kubernetes context '{facts.context}' is set, but its API server's version could not be "
                   "read (is the cluster running? `kubectl version`), so there is no telling which stack fits it. Start the "
                   "cluster, or switch context (`kubectl config use-context ...`, or unset it to let `make up` create a kind "
                   "cluster), then run `make up` again.")
    recorded = facts.record.stack if facts.record else None
    target = stack_target(requested or recorded) if requested or recorded else _stack_for_version(minor, facts)
    _check_version(target, minor, facts)
    chosen = (f"STACK={target.stack} was asked for" if requested else
              f"{target.describe()}, which the earlier `make up` deployed there" if recorded else f"{target.describe()} fits it")
    return target, [f"using the current Kubernetes context '{facts.context}' (Kubernetes {facts.server_version}): {chosen}; "
                    f"Istio {target.istio_version} runs on Kubernetes {target.supported_range}"]


def _stack_for_version(minor: int, facts: Facts) -> Target:
    targets = [stack_target(stack) for stack in AUTO_STACKS]
    fitting = [target for target in targets if target.supports(minor)]
    if not fitting:
        ranges = "; ".join(f"{t.stack} (Istio {t.istio_version}) needs Kubernetes {t.supported_range}" for t in targets)
        raise Stop(f"the current context '{facts.context}' runs Kubernetes {facts.server_version}, which no stack here supports: "
                   f"{ranges}. Point kubectl at a cluster in one of those ranges, or unset the context so `make up` creates "
                   f"a kind cluster; nothing was created.")
    return fitting[0]


def _check_version(target: Target, minor: int, facts: Facts) -> None:
    if not target.supports(minor):
        others = [t for t in (stack_target(s) for s in AUTO_STACKS if s != target.stack) if t.supports(minor)]
        instead = f" or deploy {others[0].stack} there (STACK={others[0].stack} make up)" if others else ""
        raise Stop(f"the current context '{facts.context}' runs Kubernetes {facts.server_version}, outside the "
                   f"{target.supported_range} that {target.stack}'s Istio {target.istio_version} supports; nothing was created. "
                   f"Point kubectl at a Kubernetes {target.supported_range} cluster{instead}.")
    if minor != target.kubernetes_minor:
        raise Stop(f"the current context '{facts.context}' runs Kubernetes {facts.server_version}, and {target.stack} is written "
                   f"for 1.{target.kubernetes_minor} (kubernetesVersion picks the API versions objects are sent with); nothing "
                   f"was created. Run `pulumi config set --stack {target.stack} kubernetesVersion 1.{minor}` (it edits "
                   f"Pulumi.{target.stack}.yaml), or point kubectl at a 1.{target.kubernetes_minor} cluster.")


def _onto_a_new_kind_cluster(facts: Facts, requested: str | None, name: str, kind_version: str) -> tuple[Target, list[str], list[str]]:
    if not facts.docker:
        raise Stop("no Kubernetes context is configured, and Docker, which a local kind cluster runs in, is not installed. "
                   "Install Docker (or Docker Desktop), or point kubectl at a cluster, then run `make up` again.")
    v2 = facts.cgroup_version != 1  # unknown counts as v2: the current generation starts on either
    target = stack_target(requested or (CURRENT_STACK if v2 else LEGACY_STACK))
    image = NODE_IMAGES.get(target.kubernetes_minor)
    if image is None:
        raise Stop(f"{target.describe()} targets Kubernetes 1.{target.kubernetes_minor}, for which no kind node image is pinned "
                   f"(pinned: {', '.join(f'1.{m}' for m in sorted(NODE_IMAGES))}); point kubectl at a 1.{target.kubernetes_minor} "
                   "cluster instead.")
    if v2 and target.kubernetes_minor < FIRST_MINOR_ON_CGROUP_V2:
        raise Stop(f"Docker here runs {_cgroups(facts.cgroup_version)}, where a Kubernetes 1.{target.kubernetes_minor} node cannot start (Kubernetes "
                   f"supports cgroup v2 from 1.19), and {target.stack}'s Istio {target.istio_version} runs only on "
                   f"{target.supported_range}; nothing was created. Run `make up` without STACK to deploy {CURRENT_STACK} "
                   f"(the same app and mesh on current Istio), use a cgroup v1 host, or point kubectl at a "
                   f"{target.supported_range} cluster.")
    why = _why_this_stack(target, requested, facts.cgroup_version)
    reasons = [f"no Kubernetes context is configured: creating kind cluster '{name}' (kind {kind_version}, {image.split('@')[0]})",
               f"deploying {target.describe()}: {why}"]
    create = ["kind", "create", "cluster", "--name", name, "--image", image, "--config", KIND_CONFIG, "--wait", "120s"]
    return target, reasons, create


def _cgroups(version: int | None) -> str:
    return f"cgroup v{version}" if version else "an unknown cgroup version"


def _why_this_stack(target: Target, requested: str | None, cgroup_version: int | None) -> str:
    if requested:
        return f"STACK={target.stack} was asked for"
    if cgroup_version == 1:
        return f"Docker runs cgroup v1, where dev's Kubernetes 1.18 starts (STACK={CURRENT_STACK} make up for current Istio)"
    if cgroup_version == 2:
        return f"Docker runs cgroup v2, where a Kubernetes 1.18 node ({LEGACY_STACK}) cannot start"
    return "the cgroup version Docker runs could not be read, and Kubernetes 1.33 starts on either"


# ---- after `make up` -------------------------------------------------------------------------------

def kind_host_port(node_port: int, config: Path = ROOT / KIND_CONFIG) -> int | None:
    """The host port scripts/kind-config.yaml maps to a node port of the control-plane node."""
    nodes = (yaml.safe_load(config.read_text()) or {}).get("nodes") or []
    mappings = [m for node in nodes if node.get("role") == "control-plane" for m in node.get("extraPortMappings") or []]
    return next((m["hostPort"] for m in mappings if m.get("containerPort") == node_port), None)


def next_steps(target: Target, on_our_kind_cluster: bool) -> list[str]:
    """How to reach the UI through the gateway, and one command that shows a canary split live."""
    gateway = target.settings.istio.ingress_gateway
    host_port = kind_host_port(gateway.http_node_port) if on_our_kind_cluster and gateway.service_type == "NodePort" \
        and gateway.http_node_port else None
    if host_port:
        url, steps = f"http://localhost:{host_port}", [f"The Bee Travels UI, through the Istio ingress gateway: http://localhost:{host_port}/"]
    else:
        url = FORWARDED_GATEWAY
        steps = [f"The Bee Travels UI, through the Istio ingress gateway: `kubectl -n {ISTIO_NAMESPACE} port-forward "
                 f"svc/{GATEWAY_SERVICE} 8080:80`, then {FORWARDED_GATEWAY}/"]
    splits = e2e.plan({"canaryWeights": {name: service.effective_weights() for name, service in target.settings.services.items()}})
    split = next((check for check in splits if check[0] == "split"), None)
    if split is None:
        return [*steps, f"{target.stack} runs no canary split (every service has one weighted version)."]
    service = split[split.index("--service") + 1]
    command = [".venv/bin/python", "-m", "tools.e2e", "--namespace", target.settings.app_namespace, "--stack", target.stack, "split",
               "--gateway", url, *split[1:]]
    return [*steps, f"The {service} canary split, live (requests through the gateway, counted by each version's sidecar; needs kubectl):",
            f"  {shlex.join(command)}"]


# ---- make down, make delete-cluster ----------------------------------------------------------------

@dataclass(frozen=True)
class DownPlan:
    stack: str = ""
    destroy: list[str] = field(default_factory=list)
    delete_cluster: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def plan_down(facts: Facts, yes: bool = False) -> DownPlan:
    record = facts.record
    if record is None:
        return DownPlan(reasons=[f"nothing to remove: no `make up` is recorded in {_display(RECORD)} (none ran here, or "
                                 "`make down` already removed it)"])
    if facts.context != record.context:
        now = f"is '{facts.context}'" if facts.context else "is not set"
        raise Stop(f"`make up` deployed {record.stack} to context '{record.context}', but the current context {now}; `pulumi "
                   f"destroy` would act on the wrong cluster. Run `kubectl config use-context {record.context}`, then "
                   "`make down` again.")
    destroy = ["pulumi", "destroy", "--stack", record.stack, *(["--yes", "--skip-preview"] if yes else [])]
    reasons = [f"destroying {record.stack} on context '{record.context}'"]
    delete: list[str] = []
    if record.kind_cluster:
        delete = ["kind", "delete", "cluster", "--name", record.kind_cluster]
        reasons.append(f"then deleting kind cluster '{record.kind_cluster}', which `make up` created")
    else:
        reasons.append(f"the cluster of '{record.context}' was not created by `make up`, so it stays")
    return DownPlan(stack=record.stack, destroy=destroy, delete_cluster=delete, reasons=reasons)


def plan_delete_cluster(record: Record | None) -> DownPlan:
    if record is None or not record.kind_cluster:
        return DownPlan(reasons=["no kind cluster created by `make up` is recorded here; deleting nothing "
                                 "(`kind delete cluster --name NAME` deletes one you made)"])
    return DownPlan(stack=record.stack, delete_cluster=["kind", "delete", "cluster", "--name", record.kind_cluster],
                    reasons=[f"deleting kind cluster '{record.kind_cluster}', which `make up` created"])


def stack_for(requested: str | None, record: Record | None) -> tuple[Target, str]:
    """The stack preview, destroy and e2e act on: the one asked for, else the one `make up` deployed, else dev."""
    if requested:
        return stack_target(requested), f"STACK={requested}"
    if record:
        return stack_target(record.stack), f"{record.stack}, which `make up` deployed to '{record.context}'"
    return stack_target(LEGACY_STACK), f"{LEGACY_STACK}, the default (no `make up` is recorded here)"


# ---- output ----------------------------------------------------------------------------------------

def shell_assignments(values: Mapping[str, str | Sequence[str]]) -> str:
    """Bash assignments, every value quoted: strings as `name='...'`, lists as arrays."""
    lines = []
    for name, value in values.items():
        rendered = shlex.quote(value) if isinstance(value, str) else f"({' '.join(shlex.quote(part) for part in value)})"
        lines.append(f"{name}={rendered}")
    return "\n".join(lines)


def _say(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"==> {line}", file=sys.stderr)


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _show(reasons: Sequence[str], commands: Sequence[Sequence[str]], notes: Sequence[str] = ()) -> str:
    return "\n".join([*(f"# {line}" for line in reasons), *(shlex.join(command) for command in commands), *(f"# {n}" for n in notes)])


# ---- command line ----------------------------------------------------------------------------------

def _facts(args: argparse.Namespace) -> Facts:
    """Gathered from this machine, except those given on the command line (a dry run, or a test)."""
    given = {"cgroup_version": args.cgroup_version, "context": args.context, "server_version": args.server_version,
             "docker": args.docker}
    gathered = gather_facts() if any(value is None for value in given.values()) else None
    pick = {key: (getattr(gathered, key) if value is None else value) for key, value in given.items()}
    return Facts(**{**pick, "server_version": pick["server_version"] or None}, record=read_record())


def _context_only(args: argparse.Namespace) -> Facts:
    """`make down` needs only the context: it acts on what the record names."""
    context = current_context() if args.context is None else args.context
    return Facts(cgroup_version=None, context=context, server_version=None, docker=False, record=read_record())


def _up(args: argparse.Namespace) -> str:
    plan = plan_up(_facts(args), args.stack or None, args.yes, args.kind_cluster, args.kind_version or KIND_VERSION)
    if args.show:
        return _show(plan.reasons, plan.commands, plan.next_steps)
    _say(plan.reasons)
    return shell_assignments({"stack": plan.stack, "istio_version": plan.istio_version, "context": plan.context,
                              "kind_version": plan.kind_version, "kind_cluster": plan.kind_cluster, "create_cluster": plan.create_cluster,
                              "deploy": plan.deploy, "next_steps": "\n".join(plan.next_steps)})


def _down(args: argparse.Namespace) -> str:
    plan = plan_down(_context_only(args), args.yes) if args.command == "down" else plan_delete_cluster(read_record())
    if args.show:
        return _show(plan.reasons, [c for c in (plan.destroy, plan.delete_cluster) if c])
    _say(plan.reasons)
    return shell_assignments({"stack": plan.stack, "destroy": plan.destroy, "delete_cluster": plan.delete_cluster,
                              "kind_version": args.kind_version or KIND_VERSION})


def _stack(args: argparse.Namespace) -> str:
    target, why = stack_for(args.stack or None, read_record())
    _say([f"stack {why}"])
    return shell_assignments({"stack": target.stack, "istio_version": target.istio_version})


def _record(args: argparse.Namespace) -> str:
    write_record(updated_record(read_record(), args.stack, args.context, args.created_cluster or None))
    return ""


def _forget(_args: argparse.Namespace) -> str:
    RECORD.unlink(missing_ok=True)
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="the stack, the cluster and the commands of `make up`")
    up.add_argument("--yes", action="store_true", help="plan `pulumi up --yes --skip-preview` (PULUMI_YES=1)")
    up.add_argument("--kind-cluster", default=KIND_CLUSTER)
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="what `make down` removes")
    down.add_argument("--yes", action="store_true")
    down.set_defaults(run=_down)
    delete = commands.add_parser("delete-cluster", help="the kind cluster `make up` created, if any")
    delete.set_defaults(run=_down)
    stack = commands.add_parser("stack", help="the stack preview, destroy and e2e act on")
    stack.set_defaults(run=_stack)
    record = commands.add_parser("record", help="note what `make up` deployed (and created)")
    record.add_argument("--stack", required=True)
    record.add_argument("--context", required=True)
    record.add_argument("--created-cluster", default="")
    record.set_defaults(run=_record)
    forget = commands.add_parser("forget", help="drop the record once `make down` removed it all")
    forget.set_defaults(run=_forget)
    for command in (up, stack):
        command.add_argument("--stack", default="", help="the stack asked for (STACK=...); empty: chosen here")
    for command in (up, down, delete):
        command.add_argument("--show", action="store_true", help="print the reasons and commands instead of shell assignments")
        command.add_argument("--kind-version", default="", help=f"the kind release to run (default {KIND_VERSION})")
    for command in (up, down):
        facts = command.add_argument_group("facts (found on this machine unless given)")
        facts.add_argument("--context", help="the current Kubernetes context; '' for none")
    facts = up.add_argument_group("more facts")
    facts.add_argument("--cgroup-version", type=int, choices=(1, 2), help="of the Docker host")
    facts.add_argument("--server-version", help="the context's Kubernetes version; '' where unreachable")
    facts.add_argument("--docker", action=argparse.BooleanOptionalAction, default=None, help="whether Docker is installed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = args.run(args)
    except Stop as stop:
        print(f"error: {stop}", file=sys.stderr)
        return 2
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
