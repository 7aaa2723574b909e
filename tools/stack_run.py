"""Runs the real __main__.py for a stack under Pulumi's mock engine and records every resource it registers.

Config is fed as the CLI would: Pulumi.yaml defaults overlaid by Pulumi.<stack>.yaml, structured values
JSON-encoded, `secure:` values replaced by a value marked secret. Each run gets a fresh context, event
loop and mock monitor, so runs never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import itertools
import json
import logging
import os
import re
import runpy
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from config.deployed import READ_STACK_OUTPUTS
from tools.stack_files import PROJECT, ROOT, default_stack_file, encode_config, load_stack_values

_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
DELETE = object()  # an override value that removes the key, as `pulumi config rm --path` does


@dataclass(frozen=True)
class Secret:
    """A value the program passed as a Pulumi secret."""

    value: Any

    def __repr__(self) -> str:
        return "Secret(***)"


class Unknown:
    def __repr__(self) -> str:
        return "Unknown"


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict
    parent: str | None
    depends_on: list[str]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    custom: bool
    custom_timeouts: dict[str, str] = field(default_factory=dict)  # create/update/delete as the program set them
    aliases: list[str] = field(default_factory=list)  # the former URNs the engine would carry over to this resource

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def metadata(self) -> dict:
        return self.inputs.get("metadata") or {}

    @property
    def k8s_name(self) -> str | None:
        return self.metadata.get("name")

    def manifest(self) -> dict:
        """The object as Kubernetes would receive it (custom resources included), secrets unwrapped."""
        return unwrap(self.inputs)


@dataclass
class StackRun:
    stack: str
    config: dict[str, str]
    resources: list[Registered]
    outputs: dict[str, Any]
    error: BaseException | None
    logs: list[str] = field(default_factory=list)

    def of_type(self, *types: str) -> list[Registered]:
        return [r for r in self.resources if r.type in types or r.kind in types]

    def named(self, type_: str, name: str) -> Registered:
        matches = [r for r in self.of_type(type_) if r.name == name or r.k8s_name == name]
        assert len(matches) == 1, f"expected one {type_} named {name}, found {[r.name for r in self.of_type(type_)]}"
        return matches[0]

    def within(self, component_kind: str, name: str | None = None) -> StackRun:
        """The same run seen through the components of one kind (or the one so named): only the resources they own."""
        components = [r for r in self.resources if r.kind == component_kind and name in (None, r.name)]
        assert components, f"no {component_kind} component{f' named {name}' if name else ''} in the run"
        owned = [resource for component in components for resource in self.descendants(component)]
        return StackRun(self.stack, self.config, owned, self.outputs, self.error, self.logs)

    def by_urn(self, urn: str) -> Registered:
        return self._by_urn[urn]

    # Indexes for the lookups below, built on first use: a run's resources do not change after it ends.
    @functools.cached_property
    def _by_urn(self) -> dict[str, Registered]:
        return {r.urn: r for r in self.resources}

    @functools.cached_property
    def _children(self) -> dict[str, list[Registered]]:
        children: dict[str, list[Registered]] = {}
        for r in self.resources:
            if r.parent:
                children.setdefault(r.parent, []).append(r)
        return children

    def kubernetes_objects(self) -> list[Registered]:
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.type.count(":") == 2
                and "helm.sh" not in r.type and r.custom]

    def ancestors(self, resource: Registered) -> list[Registered]:
        chain, parent = [], resource.parent
        while parent and parent in self._by_urn:
            chain.append(self._by_urn[parent])
            parent = chain[-1].parent
        return chain

    def descendants(self, component: Registered) -> list[Registered]:
        """Everything under `component`, parents before their children."""
        found, pending = [], [component]
        while pending:
            children = self._children.get(pending.pop().urn, [])
            found += children
            pending += children
        return found

    def depends_on(self, resource: Registered, other: Registered) -> bool:
        """Whether `resource` waits for `other`, itself or (for a component) every resource inside it.

        The engine sees a dependency on a component as dependencies on all of the component's resources.
        """
        waits_for = set(resource.depends_on)
        for ancestor in self.ancestors(resource):
            waits_for |= set(ancestor.depends_on)
        if other.custom:
            return other.urn in waits_for or any(a.urn in waits_for for a in self.ancestors(other))
        inside = [r.urn for r in self.descendants(other) if r.custom]
        return bool(inside) and set(inside) <= waits_for


    def waits_for(self, resource: Registered, other: Registered) -> bool:
        """Whether the engine starts `resource` only after `other`, directly or through what it waits for."""
        seen, pending = set(), [resource]
        while pending:
            current = pending.pop()
            if self.depends_on(current, other):
                return True
            for urn in {*current.depends_on, *(u for a in self.ancestors(current) for u in a.depends_on)} - seen:
                seen.add(urn)
                if urn in self._by_urn:
                    pending.append(self._by_urn[urn])
        return False


def unwrap(value: Any, mask: str | None = None) -> Any:
    """The plain value; with `mask`, every secret replaced by that text instead."""
    if isinstance(value, Secret):
        return mask if mask is not None else unwrap(value.value)
    if isinstance(value, dict):
        return {key: unwrap(item, mask) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item, mask) for item in value]
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Where in a value the program placed secrets."""
    if isinstance(value, Secret):
        return [path or "."]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in secret_paths(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in secret_paths(item, f"{path}[{index}]")]
    return []


def stand_in_chart(folder: Path, name: str, version: str, templates: dict[str, str] | None = None) -> Path:
    """A chart Helm can load that renders only the given templates: the real charts cannot be fetched here."""
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2" if not version.startswith("1.6") else "v1", "name": name, "version": version,
        "description": f"stand-in for the {name} chart {version}",
    }))
    (folder / "values.yaml").write_text("{}\n")
    for file, text in (templates or {}).items():
        (folder / "templates" / file).write_text(text)
    return folder


def stand_in_chart_cache(root: Path, version: str = "1.6.14") -> Path:
    """A chart cache of the Istio release archive's layout whose charts render nothing (the program only passes their paths to Helm)."""
    from builders.addons import ISTIO_DASHBOARD_NAMES
    from tools import istio_charts

    charts = istio_charts.charts_dir(version, root)
    for required in istio_charts.REQUIRED_FILES:
        if required.endswith("/Chart.yaml"):
            stand_in_chart(charts / Path(required).parent, Path(required).parent.name, version)
    (charts / "global.yaml").write_text("# stand-in for the release archive's global values\nglobal: {}\n")
    dashboards = charts / "istio-telemetry" / "grafana" / "dashboards"
    dashboards.mkdir(parents=True, exist_ok=True)
    for name in ISTIO_DASHBOARD_NAMES:
        (dashboards / name).write_text(json.dumps({"title": f"stand-in for {name}", "panels": []}, indent=2))
    return root


def stand_in_charts_dir(root: Path, charts: Iterable[Any], templates: Mapping[str, dict[str, str]] | None = None) -> Path:
    """A helm.chartsDir holding a stand-in for each chart (builders.charts.Chart), unpacked as `helm pull --untar` would."""
    for chart in charts:
        stand_in_chart(root / f"{chart.name}-{chart.version}", chart.name, chart.version, (templates or {}).get(chart.name))
    return root


# ---- config as the CLI hands it over -----------------------------------------------------------

def set_path(values: dict[str, Any], path: str, value: Any) -> None:
    """`pulumi config set --path` on a plain dict: creates maps on the way, DELETE removes the key."""
    parts = [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)]
    target: Any = values
    for part, following in itertools.pairwise(parts):
        if isinstance(target, dict) and part not in target:
            target[part] = [] if isinstance(following, int) else {}
        target = target[part]
    if value is DELETE:
        del target[parts[-1]]
    elif isinstance(target, list) and parts[-1] == len(target):
        target.append(value)
    else:
        target[parts[-1]] = value


# ---- the mock engine ---------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return Secret(_plain(value.get("value")))
        if value.get(_SIG_KEY) == _RESOURCE_SIG:
            return f"<resource {value.get('urn')}>"
        if value.get(_SIG_KEY) == _OUTPUT_SIG:
            inner = _plain(value.get("value", Unknown()))
            return Secret(inner) if value.get("secret") else inner
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == _UNKNOWN:
        return Unknown()
    return value


class _Mocks(pulumi.runtime.Mocks):
    """Echo inputs as state, plus the outputs a few providers compute (passwords, release status)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"mock-password-{args.name}"
        if args.typ == "random:index/randomString:RandomString":
            state["result"] = "mockuser"
        if args.typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {"name": args.inputs.get("name", args.name), "namespace": args.inputs.get("namespace", "default"), "status": "deployed"}
        if args.typ == "pulumi:pulumi:StackReference":
            state = {"name": args.inputs["name"], "outputs": self._outputs_of(args.inputs["name"]), "secretOutputNames": []}
        return f"{args.name}-id", state

    def __init__(self, stack: str, last_outputs: Mapping[str, Any] | None = None,
                 other_stacks: Mapping[str, Mapping[str, Any]] | None = None):
        # Secret outputs come back elided here: the program must not depend on reading them.
        self.outputs = {name: {key: "[secret]" if isinstance(value, Secret) else value for key, value in outputs.items()}
                        for name, outputs in {**(other_stacks or {}), stack: last_outputs or {}}.items()}

    def _outputs_of(self, qualified_name: str) -> dict[str, Any]:
        """A stack's outputs by its `organization/project/stack` name: this stack's last ones, or another's given."""
        return self.outputs.get(qualified_name.rsplit("/", 1)[-1], {})

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == READ_STACK_OUTPUTS:
            return {"name": args.args.get("name"), "outputs": self._outputs_of(args.args["name"]), "secretOutputNames": []}
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.records: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(Registered(
                type=request.type, name=request.name, urn=response.urn,
                inputs=_plain(json_format.MessageToDict(request.object)),
                parent=request.parent or None, depends_on=list(request.dependencies),
                protect=bool(request.protect), retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges), custom=bool(request.custom),
                custom_timeouts=json_format.MessageToDict(request.customTimeouts),
                aliases=[_alias_urn(alias, request, response.urn) for alias in request.aliases],
            ))
        return response


def _alias_urn(alias, request, urn: str) -> str:
    """The URN an alias names, resolved as the engine resolves an alias spec: unset parts are the resource's own."""
    if alias.urn:
        return alias.urn
    spec = alias.spec
    prefix = "::".join(urn.split("::")[:2])  # urn:pulumi:<stack>::<project>
    name, type_ = spec.name or request.name, spec.type or request.type
    parent = "" if spec.noParent else (spec.parentUrn or request.parent)
    # Children of the stack carry no parent type in their URN.
    parent_type = parent.split("::")[2].removeprefix("pulumi:pulumi:Stack$") if parent else "pulumi:pulumi:Stack"
    qualified = type_ if parent_type == "pulumi:pulumi:Stack" else f"{parent_type}${type_}"
    return f"{prefix}::{qualified}::{name}"


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def run_stack(
    stack: str = "dev",
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    stack_file: Path | None = None,
    preview: bool = False,
    program: Callable[[], object] | None = None,
    last_outputs: Mapping[str, Any] | None = None,
    other_stacks: Mapping[str, Mapping[str, Any]] | None = None,
) -> StackRun:
    """Run the program for a stack; `overrides` are `pulumi config set --path` edits, `secrets` set secret keys.

    `program` replaces __main__.py (the benchmark's floor registers plain resources through the same engine).
    `last_outputs` are the stack outputs its previous update left (a day-2 run); none: a stack never deployed.
    `other_stacks` are other stacks' outputs by stack name, as a StackReference reads them (an app stack's platform).
    The stack files it is linked with are read beside `stack_file` (the project's own folder without one).
    """
    values, secure = load_stack_values(stack, stack_file)
    values = copy.deepcopy(values)
    for path, value in (overrides or {}).items():
        set_path(values, path, value)
    for key in secrets or {}:
        values.setdefault(key, None)
    config, secret_keys = encode_config(values, secure, secrets or {})
    return contextvars.Context().run(_run, stack, config, secret_keys, preview, program or _main_program, last_outputs,
                                     other_stacks, (stack_file or default_stack_file(stack)).parent)


def _main_program() -> object:
    return runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def _run(stack: str, config: dict[str, str], secret_keys: list[str], preview: bool, program: Callable[[], object],
         last_outputs: Mapping[str, Any] | None, other_stacks: Mapping[str, Mapping[str, Any]] | None, project: Path) -> StackRun:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The SDK sends each RPC from a worker thread, which makes itself an event loop; owning those threads
    # lets the run close their loops too instead of leaving them to the garbage collector.
    worker_loops: list[asyncio.AbstractEventLoop] = []
    workers = ThreadPoolExecutor(max_workers=4, initializer=_give_thread_a_loop, initargs=(worker_loops,))
    loop.set_default_executor(workers)
    logs: list[str] = []
    logger = logging.getLogger(f"stack-run-{id(logs)}")
    logger.propagate = False
    logger.addHandler(_ListHandler(logs))
    try:
        pulumi.runtime.set_all_config(config, secret_keys)
        mocks = _Mocks(stack, last_outputs, other_stacks)
        monitor = _RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, logger=logger)
        pulumi.runtime.settings.SETTINGS.root_directory = str(project)  # as the engine tells a program its folder
        error: BaseException | None = None
        try:
            with _no_cluster():
                _sync_await(run_pulumi_func(program))
        except Exception as exc:  # the program's own error is what the tests look at
            error = exc
        outputs = {} if error else _resolve_outputs()
        return StackRun(stack, config, monitor.records, outputs, error, logs)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        workers.shutdown(wait=True)
        for worker_loop in worker_loops:
            worker_loop.close()


@contextlib.contextmanager
def _no_cluster() -> Iterator[None]:
    """The mock engine deploys nowhere: the program must not find a cluster to ask for its version."""
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = os.devnull
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def _give_thread_a_loop(loops: list[asyncio.AbstractEventLoop]) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loops.append(loop)


def _resolve_outputs() -> dict[str, Any]:
    root = pulumi.runtime.settings.get_root_resource()
    resolved = {}
    for name, output in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(output)
        value = _sync_await(output.future())
        resolved[name] = Secret(value) if _sync_await(output.is_secret()) else value
    return resolved
