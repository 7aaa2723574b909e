"""How evaluating the program scales: the real program under the mock engine, against the bare SDK's floor.

    python -m bench.program_scaling [--runs 5] [--sizes 20 50 100 200 400] [--profile 200] [--cold 5]
                                    [--suite] [--setup] [--write docs/performance.md]

For the dev and prod stacks and synthetic stacks of N services it reports the median wall time of a whole program
run, the resources registered, the time per resource, and two floors measured in the same process, interleaved:

- the bare floor (the issue's floor): the SDK registering as many plain `pulumi.CustomResource`s, carrying the same
  inputs, with no provider classes and none of our code;
- the SDK floor: the same custom resources through the same SDK classes (pulumi-kubernetes, pulumi-random,
  pulumi-tls), registered flat from plain dicts: no Args classes, components, dependencies or logic of ours.

Synthetic stacks are the dev stack plus groups of copies of the real services (`synthetic_catalogue`). Every timed
run also records the time CPython's cyclic garbage collector takes in it. `--profile N` attributes one profiled run of
the N-service stack and of its floors to where the time goes; `--cold` times fresh interpreters evaluating dev
(imports included); `--suite` times the test suite; `--setup` the README's set-up on a fresh clone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import dataclasses
import gc
import importlib
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes

from bench import markdown
from domain import catalogue
from tools import istio_charts
from tools.stack_run import ROOT, Registered, StackRun, load_stack_values, run_stack, stand_in_chart_cache

DEFAULT_SIZES = (20, 50, 100, 200, 400)
REAL_SERVICES = len(catalogue.CATALOGUE)
# The targets.
DEV_SECONDS = 2.0
OVER_FLOOR = 0.20
RATIO_200_20 = 12.0
SUITE_SECONDS = 60.0


@dataclass(frozen=True)
class Timing:
    """Medians over the runs of one program."""

    seconds: float  # wall time of the whole run
    gc_seconds: float  # of which in CPython's cyclic garbage collector
    full_collections: float  # full (generation 2) collections per run


@dataclass(frozen=True)
class Measurement:
    label: str
    services: int
    resources: int
    ours: Timing
    bare: Timing  # as many plain CustomResources with the same inputs: the floor
    sdk: Timing  # the same custom resources through the same SDK classes, flat, none of our logic
    dependencies: int = 0  # explicit dependencies registered, over all resources

    @property
    def per_resource_ms(self) -> float:
        return self.ms(self.ours)

    def ms(self, timing: Timing, without_gc: bool = False) -> float:
        return 1000 * (timing.seconds - (timing.gc_seconds if without_gc else 0)) / self.resources

    @property
    def over_bare(self) -> float:
        return self.ours.seconds / self.bare.seconds - 1

    @property
    def over_sdk(self) -> float:
        return self.ours.seconds / self.sdk.seconds - 1


class GcClock:
    """While entered: the time the cyclic garbage collector takes, and how many full collections it runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full_collections = 0
        self._started: float | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.full_collections += info["generation"] == 2
            self._started = None

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self)


def synthetic_name(template: str, group: int) -> str:
    return f"{template}-g{group:03d}"


def _synthetic_spec(template: catalogue.ServiceSpec, name: str, group: int, members: list[str]) -> catalogue.ServiceSpec:
    """A copy of a real service under a new name; a front end calls its own group, an external host is its own."""
    calls = {synthetic_name(callee, group): variable for callee, variable in template.calls.items()
             if synthetic_name(callee, group) in members}
    external = tuple(dataclasses.replace(host, host=f"{name}.{host.host}") for host in template.external_hosts)
    return dataclasses.replace(template, name=name, calls=calls, external_hosts=external)


@contextlib.contextmanager
def synthetic_catalogue(count: int, stack: str = "dev", called_by_frontend: bool = True) -> Iterator[dict]:
    """`count` generated services in the app catalogue, and the stack overrides that deploy them.

    They come in groups shaped like the real app, one copy of each real service per group, in catalogue order: a
    front end calling its group's backends (and called by the real front end, so every copy has callers, unless the
    groups go to app stacks of their own, away from the real front end: `called_by_frontend` false), backends
    with the stack's JSON and MongoDB versions, canary weights, match routes and faults (each seeded by its own
    Job), and a JSON service with an external host of its own. Each copy takes the stack file's settings of the
    service it copies. The catalogue, the seeding images and the real front end's calls are restored on exit.
    """
    real = dict(catalogue.CATALOGUE)
    real_seeds = dict(catalogue.SEED_IMAGES)
    templates = list(real)
    stack_services = (load_stack_values(stack)[0].get("services") or {})
    groups: dict[int, list[str]] = {}
    for index in range(count):
        groups.setdefault(index // len(templates), []).append(synthetic_name(templates[index % len(templates)], index // len(templates)))
    added: dict[str, catalogue.ServiceSpec] = {}
    overrides: dict[str, dict] = {}
    for group, members in groups.items():
        for template, name in zip(templates, members, strict=False):
            added[name] = _synthetic_spec(real[template], name, group, members)
            overrides[f"services.{name}"] = copy.deepcopy(stack_services.get(template, {"versions": {"v1": {"tier": "json"}}}))
            if template in real_seeds:
                catalogue.SEED_IMAGES[name] = real_seeds[template]
    frontend = real[catalogue.FRONTEND]
    entry_points = {members[0]: f"{members[0].upper().replace('-', '_')}_URL" for members in groups.values()}
    catalogue.CATALOGUE.update(added)
    if called_by_frontend:
        catalogue.CATALOGUE[catalogue.FRONTEND] = dataclasses.replace(frontend, calls={**frontend.calls, **entry_points})
    try:
        yield overrides
    finally:
        catalogue.CATALOGUE.clear()
        catalogue.CATALOGUE.update(real)
        catalogue.SEED_IMAGES.clear()
        catalogue.SEED_IMAGES.update(real_seeds)


def _sdk_class(resource_type: str) -> Callable[..., object]:
    """The SDK class a type token names (Istio and other CRD kinds are generic custom resources)."""
    package, module, kind = resource_type.split(":")
    if package == "kubernetes" and "." in module.split("/")[0] and module != "helm.sh/v3":
        return pulumi_kubernetes.apiextensions.CustomResource
    root = importlib.import_module(f"pulumi_{package.replace('-', '_')}")
    if package == "kubernetes":
        for part in module.replace("helm.sh", "helm").split("/"):
            root = getattr(root, part)
    return getattr(root, kind)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def sdk_program(resources: list[Registered]) -> Callable[[], None]:
    """The SDK floor: the same custom resources through the same SDK classes, registered flat, with none of our logic."""
    custom = [r for r in resources if r.custom]

    def program() -> None:
        for index, resource in enumerate(custom):
            cls = _sdk_class(resource.type)
            inputs = resource.manifest()
            if cls is pulumi_kubernetes.apiextensions.CustomResource:
                cls(f"sdk-{index}", api_version=inputs.pop("apiVersion"), kind=inputs.pop("kind"), **inputs)
                continue
            inputs.pop("apiVersion", None)
            inputs.pop("kind", None)
            cls(f"sdk-{index}", **{_snake(key): value for key, value in inputs.items()})
    return program


def plain_program(payloads: list[dict]) -> Callable[[], None]:
    """The bare floor: one plain resource per resource of the real run, carrying the same inputs, and nothing else."""
    def program() -> None:
        for index, payload in enumerate(payloads):
            pulumi.CustomResource("bench:index:Plain", f"plain-{index}", payload)
    return program


def timed_runs(run: Callable[[], StackRun], runs: int) -> tuple[Timing, StackRun]:
    """Medians of `runs` timed runs, after one untimed run that pays for first imports and caches."""
    walls, collector, full, last = [], [], [], run()
    for _ in range(runs):
        gc.collect()  # every run starts from the same heap, not with the previous run's garbage
        with GcClock() as clock:
            started = time.perf_counter()
            last = run()
            walls.append(time.perf_counter() - started)
        collector.append(clock.seconds)
        full.append(clock.full_collections)
        if last.error:
            raise SystemExit(f"benchmark run failed: {last.error}")
    return Timing(statistics.median(walls), statistics.median(collector), statistics.median(full)), last


def measure(label: str, stack: str, overrides: dict, services: int, runs: int) -> Measurement:
    ours, result = timed_runs(lambda: run_stack(stack, overrides), runs)
    payloads = [resource.manifest() for resource in result.resources]
    sdk, _ = timed_runs(lambda: run_stack(stack, program=sdk_program(result.resources)), runs)
    bare, _ = timed_runs(lambda: run_stack(stack, program=plain_program(payloads)), runs)
    return Measurement(label, services, len(payloads), ours, bare, sdk, sum(len(r.depends_on) for r in result.resources))


def run_all(sizes: tuple[int, ...], runs: int) -> list[Measurement]:
    results = [measure("dev", "dev", {}, REAL_SERVICES, runs), measure("prod", "prod", {}, REAL_SERVICES, runs)]
    for size in sizes:
        with synthetic_catalogue(size - REAL_SERVICES) as overrides:
            results.append(measure(f"{size} services", "dev", overrides, size, runs))
    return results


# ---- where the time goes -----------------------------------------------------------------------

_OURS_OUTSIDE_SETTINGS = ("components/", "builders/", "domain/", "__main__.py")
_SETTINGS_FILES = ("config/stack_config.py", "config/settings.py", "config/rules.py", "domain/units.py")
_PROVIDER_PACKAGES = ("pulumi_kubernetes", "pulumi_random", "pulumi_tls")
# (category, file suffix, function) whose cumulative time is the category's.
_CUMULATIVE = (
    ("settings: read and validated (pydantic, rules)", "config/stack_config.py", "load_settings"),
    ("SDK: source position of each resource (stack walk)", "pulumi/runtime/resource.py", "_get_stack_trace"),
    ("SDK: inputs serialised (typed Args to dicts, type hints)", "pulumi/runtime/rpc.py", "serialize_properties"),
    ("SDK: outputs resolved (typed output classes)", "pulumi/runtime/rpc.py", "resolve_outputs"),
    ("SDK: explicit dependencies (depends_on, components expanded)", "pulumi/runtime/_depends_on.py", "_resolve_depends_on_urns"),
)
PROFILE_ROWS = (*(row[0] for row in _CUMULATIVE), "our components and __main__ (own time)",
                "provider classes: pulumi-kubernetes, -random, -tls (own time)",
                "rest: SDK engine (Outputs, tasks, event loop), waiting on the mock monitor's threads")


def attribute(stats: dict) -> dict[str, float]:
    """Seconds per category of a cProfile run (main thread): disjoint parts, the rest is what none of them cover."""
    total = sum(entry[2] for entry in stats.values())
    parts = dict.fromkeys(PROFILE_ROWS, 0.0)
    root = f"{ROOT}/"
    for (filename, _line, function), (_cc, _nc, own, cumulative, _callers) in stats.items():
        for category, suffix, name in _CUMULATIVE:
            if function == name and filename.endswith(suffix):
                parts[category] += cumulative
        if filename.startswith(root) and "site-packages" not in filename:
            relative = filename[len(root):]
            if relative.startswith(_OURS_OUTSIDE_SETTINGS) and relative not in _SETTINGS_FILES:
                parts[PROFILE_ROWS[-3]] += own
        elif any(f"/{package}/" in filename for package in _PROVIDER_PACKAGES):
            parts[PROFILE_ROWS[-2]] += own
    parts[PROFILE_ROWS[-1]] = total - sum(parts.values())
    return parts


def profile_breakdown(size: int, stack: str = "dev") -> tuple[int, dict[str, dict[str, float]], dict[str, float]]:
    """One profiled run (garbage collector off) of the N-service stack, its SDK floor and its bare floor."""
    with synthetic_catalogue(size - REAL_SERVICES) as overrides:
        result = run_stack(stack, overrides)
        payloads = [resource.manifest() for resource in result.resources]
        programs = {
            "ours": lambda: run_stack(stack, overrides),
            "SDK floor": lambda: run_stack(stack, program=sdk_program(result.resources)),
            "bare floor": lambda: run_stack(stack, program=plain_program(payloads)),
        }
        columns, walls = {}, {}
        for label, run in programs.items():
            run()
            gc.collect()
            gc.disable()
            try:
                profile = cProfile.Profile()
                started = time.perf_counter()
                profile.enable()
                run()
                profile.disable()
                walls[label] = time.perf_counter() - started
            finally:
                gc.enable()
            columns[label] = attribute(pstats.Stats(profile).stats)
    return len(result.resources), columns, walls


def profile_table(resources: int, columns: dict[str, dict[str, float]]) -> str:
    labels = list(columns)
    rows = []
    for category in PROFILE_ROWS:
        values = [1000 * columns[label][category] / resources for label in labels]
        rows.append((category, *(f"{v:.2f}" for v in values), f"{values[0] - values[-1]:+.2f}"))
    totals = [1000 * sum(columns[label].values()) / resources for label in labels]
    rows.append(("**total**", *(f"**{v:.2f}**" for v in totals), f"**{totals[0] - totals[-1]:+.2f}**"))
    return markdown.table(("main thread, profiled, GC off (ms / resource)", *labels, f"ours - {labels[-1]}"), rows)


# ---- suite, set-up, cold start -----------------------------------------------------------------

def timed_command(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        # A failed run's time means nothing; say what failed instead of a bare exit status.
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - started


def cold_dev_seconds(runs: int) -> float:
    """A fresh interpreter importing the SDK and evaluating the dev stack once: what every test process or preview pays."""
    code = "from tools.stack_run import run_stack; run = run_stack('dev'); assert run.error is None, run.error"
    return statistics.median(timed_command([sys.executable, "-c", code], ROOT, dict(os.environ)) for _ in range(runs))


def suite_seconds() -> float:
    return timed_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT,
                         env={key: value for key, value in os.environ.items() if key != istio_charts.CACHE_ENV})


def fresh_setup_seconds() -> float:
    """`make venv schemas` (what `make test` does before testing) in a fresh copy of the repository."""
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as folder:
        copy_ = Path(folder) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(copy_)], check=True)
        return timed_command(["make", "venv", "schemas"], copy_)


def pip_sources() -> str:
    """Where pip gets packages on this machine, so the set-up time can be read for what it is."""
    def pip(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    settings = [line.split("=", 1) for line in pip("config", "list").splitlines() if "=" in line]
    sources = sorted({value.strip("'") for key, value in settings if key.endswith(("index-url", "find-links"))})
    sources += [value for key, value in os.environ.items() if key in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")]
    cache = Path(pip("cache", "dir") or Path.home() / ".cache" / "pip")
    size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) if cache.is_dir() else 0
    return (f"pip sources: {', '.join(dict.fromkeys(sources)) or 'PyPI'}; pip cache {cache} holding {size / 2**20:.0f} MiB "
            "before the run (warm: wheels come from them, not from the network)")


# ---- the report --------------------------------------------------------------------------------

def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        memory = f", {kib / 2**20:.0f} GiB"
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")) + ", "
    return (f"{model}{platform.machine()}, {cpus} cores{memory}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, pulumi SDK {_version('pulumi')}, pulumi-kubernetes {_version('pulumi_kubernetes')}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package.replace("_", "-"))


def table(results: list[Measurement]) -> str:
    rows = [(m.label, m.services, m.resources, f"{m.ours.seconds:.2f}", f"{m.per_resource_ms:.1f}", f"{m.bare.seconds:.2f}",
             f"{100 * m.over_bare:+.0f}%", f"{m.sdk.seconds:.2f}", f"{100 * m.over_sdk:+.0f}%") for m in results]
    return markdown.table(("stack", "services", "resources", "median wall (s)", "ms / resource", "bare floor (s)", "over bare floor",
                           "SDK floor (s)", "over SDK floor"), rows)


def bend_table(results: list[Measurement]) -> str:
    rows = [(m.label, m.resources, f"{m.dependencies / m.resources:.1f}", f"{m.ms(m.ours):.2f}",
             f"{1000 * m.ours.gc_seconds / m.resources:.2f}", f"{m.ms(m.ours, without_gc=True):.2f}", f"{m.ours.full_collections:g}",
             f"{m.ms(m.bare):.2f}", f"{1000 * m.bare.gc_seconds / m.resources:.2f}", f"{m.ms(m.bare, without_gc=True):.2f}",
             f"{m.bare.full_collections:g}") for m in results]
    return markdown.table(("stack", "resources", "dependencies / resource", "ms / resource", "in cyclic GC", "without GC",
                           "full GCs / run", "bare floor ms / resource", "in cyclic GC", "without GC", "full GCs / run"), rows)


def synthetic(results: list[Measurement]) -> dict[int, Measurement]:
    return {m.services: m for m in results if m.label.endswith("services")}


def scaling_summary(results: list[Measurement]) -> str:
    by_size = synthetic(results)
    if 20 not in by_size or 200 not in by_size:
        return ""
    small, large = by_size[20], by_size[200]
    return (f"200 services / 20 services: {large.ours.seconds / small.ours.seconds:.1f}x wall time for "
            f"{large.resources / small.resources:.1f}x resources (bare floor: {large.bare.seconds / small.bare.seconds:.1f}x; "
            f"without the cyclic GC: ours {_without_gc(large.ours) / _without_gc(small.ours):.1f}x, "
            f"bare floor {_without_gc(large.bare) / _without_gc(small.bare):.1f}x).")


def _without_gc(timing: Timing) -> float:
    return timing.seconds - timing.gc_seconds


def bend_summary(results: list[Measurement]) -> str:
    by_size = synthetic(results)
    if len(by_size) < 2:
        return ""
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    span = f"from {small.resources} to {large.resources} resources ({small.services} to {large.services} services)"
    return (
        f"{span}: ours goes {small.ms(small.ours):.2f} -> {large.ms(large.ours):.2f} ms/resource, the bare floor "
        f"{small.ms(small.bare):.2f} -> {large.ms(large.bare):.2f}. Without the time in CPython's cyclic garbage collector "
        f"ours is {small.ms(small.ours, True):.2f} -> {large.ms(large.ours, True):.2f} ms/resource and the bare floor "
        f"{small.ms(small.bare, True):.2f} -> {large.ms(large.bare, True):.2f}: what bends is the collector, in both. "
        f"Full collections per run go {small.ours.full_collections:g} -> {large.ours.full_collections:g} (ours) and "
        f"{small.bare.full_collections:g} -> {large.bare.full_collections:g} (bare floor), and the collector's share of "
        f"ours goes {100 * small.ours.gc_seconds / small.ours.seconds:.0f}% -> {100 * large.ours.gc_seconds / large.ours.seconds:.0f}%. "
        f"Explicit dependencies stay at {small.dependencies / small.resources:.1f} -> {large.dependencies / large.resources:.1f} per resource."
    )


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def targets(results: list[Measurement], cold: float | None, suite: float | None) -> list[str]:
    dev = next(m for m in results if m.label == "dev")
    lines = []
    dev_text = f"warm, in process: {dev.ours.seconds:.2f} s"
    if cold is not None:
        dev_text += f"; a fresh interpreter, imports included: {cold:.2f} s"
    lines.append(f"- dev stack evaluates in < {DEV_SECONDS:g} s: {_verdict(max(dev.ours.seconds, cold or 0) < DEV_SECONDS)} ({dev_text}).")
    over = [m.over_bare for m in results]
    worst = max(results, key=lambda m: m.over_bare)
    lines.append(f"- our components add <= {100 * OVER_FLOOR:.0f}% over the floor (bare SDK, same resource count): "
                 f"{_verdict(max(over) <= OVER_FLOOR)} ({100 * min(over):+.0f}% to {100 * max(over):+.0f}%, worst {worst.label}; "
                 f"over the SDK floor of the same SDK classes: {100 * min(m.over_sdk for m in results):+.0f}% to "
                 f"{100 * max(m.over_sdk for m in results):+.0f}%; the SDK floor itself, with none of our code, is "
                 f"{100 * min(m.sdk.seconds / m.bare.seconds - 1 for m in results):+.0f}% to "
                 f"{100 * max(m.sdk.seconds / m.bare.seconds - 1 for m in results):+.0f}% over the bare floor).")
    by_size = synthetic(results)
    if 20 in by_size and 200 in by_size:
        ratio = by_size[200].ours.seconds / by_size[20].ours.seconds
        lines.append(f"- 200-service stack <= {RATIO_200_20:g}x the 20-service one: {_verdict(ratio <= RATIO_200_20)} "
                     f"({ratio:.1f}x for {by_size[200].resources / by_size[20].resources:.1f}x the resources).")
    if suite is not None:
        lines.append(f"- test suite < {SUITE_SECONDS:g} s on {os.cpu_count()} cores: {_verdict(suite < SUITE_SECONDS)} ({suite:.1f} s).")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--profile", type=int, metavar="N", help="attribute a profiled run of the N-service stack and its floors")
    parser.add_argument("--cold", type=int, default=0, metavar="RUNS", help="time RUNS fresh interpreters evaluating dev")
    parser.add_argument("--write", type=Path, help="write the report (Markdown) to this file")
    parser.add_argument("--suite", action="store_true", help="also time the whole test suite")
    parser.add_argument("--setup", action="store_true", help="also time `make venv schemas` on a fresh clone")
    args = parser.parse_args(argv)
    if any(size < REAL_SERVICES for size in [*args.sizes, *([args.profile] if args.profile else [])]):
        parser.error(f"stack sizes start at the real app's {REAL_SERVICES} services")

    cold = profile = None
    with tempfile.TemporaryDirectory(prefix="bench-charts-") as cache:
        os.environ[istio_charts.CACHE_ENV] = str(stand_in_chart_cache(Path(cache)))
        try:
            results = run_all(tuple(args.sizes), args.runs)
            if args.profile:
                profile = profile_breakdown(args.profile)
            if args.cold:
                cold = cold_dev_seconds(args.cold)
        finally:
            del os.environ[istio_charts.CACHE_ENV]
    report = [f"Machine: {machine()}.", "",
              f"Median of {args.runs} runs each (`python -m bench.program_scaling`); before every run a full collection "
              "empties the heap of the previous run's garbage.", "", table(results), "", scaling_summary(results)]
    print("\n".join(report), flush=True)
    suite = setup = None
    if args.suite:
        suite = suite_seconds()
    if args.setup:
        sources = pip_sources()
        setup = fresh_setup_seconds()
    sections = {
        "bend": [bend_table(results), "", bend_summary(results)],
        "profile": ([f"{profile[0]} resources ({args.profile} services); profiled wall times (inflated by the profiler): "
                     + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in profile[2].items()) + ".", "",
                     profile_table(profile[0], profile[1])] if profile else []),
        "targets": targets(results, cold, suite),
        "extras": ([f"Test suite (`.venv/bin/python -m pytest -q`, after set-up): {suite:.1f} s."] if suite is not None else [])
                  + ([f"README set-up on a fresh clone (`make venv schemas`: virtualenv, pip installs, legacy schemas): "
                      f"{setup:.0f} s; {sources}."] if setup is not None else []),
    }
    print("\n\n".join("\n".join(lines) for lines in sections.values() if lines))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(_document(report, sections))
    return 0


def _document(report: list[str], sections: dict[str, list[str]]) -> str:
    parts = [
        "# Performance",
        "",
        "How long the program takes to evaluate under Pulumi's mock engine (`tools/stack_run.py`: no cluster, no CLI), "
        "generated by `make bench` (`bench/program_scaling.py`). The **bare floor** is the issue's floor: the SDK "
        "registering as many plain `pulumi.CustomResource`s as the stack has resources, with the same inputs, in the same "
        "process. The **SDK floor** registers the same custom resources through the same provider classes "
        "(pulumi-kubernetes, -random, -tls) from plain dicts, flat: no Args classes, components, dependencies or logic of ours. "
        "Both floors go through the same harness as the program, so the harness's cost is in all three.",
        "",
        f"Synthetic stacks of N services are the dev stack plus groups of copies of the {REAL_SERVICES} real services under "
        "new names (`synthetic_catalogue`), each copy deployed with the dev stack file's settings of the service it "
        "copies: its versions and data tiers, canary weights, match routes and faults. A group's front end calls the "
        "group's backends and is called by the real front end; MongoDB-tier backends are seeded by their own Jobs and "
        "allowed into MongoDB; a service with an external host gets a host, and a ServiceEntry, of its own. So each copy "
        "registers what the service it copies does (Service, ServiceAccount, a Deployment per version, DestinationRule, "
        "VirtualService, Sidecar, AuthorizationPolicy, seeding Job), which `tests/test_bench.py` checks.",
        "",
        *report,
        "",
        "## Targets",
        "",
        *sections["targets"],
    ]
    if sections["bend"]:
        parts += ["", "## Where it bends, and why", "", *sections["bend"], "", _BEND_EXPLAINED]
    if sections["profile"]:
        parts += ["", "## Where the time goes against the bare floor", "", *sections["profile"], "", _PROFILE_EXPLAINED]
    if sections["extras"]:
        parts += ["", "## Test suite and set-up", "", *(f"- {line}" for line in sections["extras"])]
    return "\n".join(parts).rstrip() + "\n"


_BEND_EXPLAINED = """\
The time outside the collector grows linearly, for our program and for the bare floor alike: the bend is CPython's
cyclic garbage collector. The SDK creates every resource, its Outputs, futures and RPC tasks up front and keeps them
all alive until the event loop has drained, so the heap grows with the stack, and every full collection walks all of
it. Full collections come when enough objects have survived the younger generations, so there are more of them in a
bigger run and each one is longer. That is the SDK's and the interpreter's behaviour, and the bare floor shows it as
well as ours; we make it worse only by having more live objects per resource (typed Args, Outputs between resources).

What did grow faster than linear in our own code was MongoDB's dependencies: every MongoDB-tier Deployment waited for
the whole MongoDB component, and so for every seeding Job, so the dependency edges grew with the square of the number
of MongoDB-tier services (22.5 per resource at 400 services, 76,161 in all, each walked by the SDK's cycle check and
kept in the state). A version now waits for what it needs (the database, its Services and connection Secret, and its
own service's seeding Job), and the dependencies per resource in the table above stay flat. Measured when the fix was
made (median of 5; of 3 with the collector off): 400 services 12.25 s -> 10.95 s (collector off 5.71 -> 5.24 s),
200 services 5.35 -> 5.29 s (2.90 -> 2.64 s): a small share at these sizes, but it grew with the square. The harness's lookups
(`by_urn`, `ancestors`, `descendants`) are indexed instead of scanning every resource, and it reads the stack files
with libyaml; neither was in a program run's growth, but the tests and the harness's fixed cost per run use them."""

_PROFILE_EXPLAINED = """\
The profile covers the main thread (the mock monitor answers RPCs on worker threads; the main thread's wait for
them is in the rest) with the collector off. Our own code and the settings are a small share. Most of what we add
over the bare floor is the SDK doing more work per resource for typed provider classes: serialising nested Args
objects (walking their type hints to turn them into dicts), resolving each resource's outputs into typed output
classes, and capturing a stack trace for every resource's source position, which costs more the deeper the call
that registers it (a component's helper, not a flat loop). The SDK floor pays most of that too, which is why it sits
well above the bare floor with none of our code.

What we could do: pass plain dicts instead of Args classes (losing the type checking they give us in the
components); make the Istio objects and workloads wait for the mesh's releases rather than the whole mesh component
(the SDK expands a dependency on a component into one on each of its children, for every resource: the "explicit
dependencies" row); register fewer, larger objects; or keep the collector out of the way (`gc.freeze()` after
imports, or a higher threshold, in the program). The last changes the interpreter rather than our code and would
flatter the comparison with a floor run under the default collector; none of these is done here. Even the SDK floor,
with none of our code, is well over 20% above the bare floor, so the target stays missed while we use
pulumi-kubernetes' typed resource classes."""


if __name__ == "__main__":
    sys.exit(main())
