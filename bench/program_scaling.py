"""How evaluating the program scales: the real program under the mock engine, against the bare SDK's floor.

    python -m bench.program_scaling [--runs 5] [--sizes 20 50 100 200] [--write docs/performance.md] [--suite] [--setup]

For dev, prod and synthetic stacks of N services (the dev stack's five plus generated backends shaped like
the real ones: two JSON versions, a 90/10 split, their own Service, ServiceAccount, DestinationRule,
VirtualService, AuthorizationPolicy and Sidecar), it reports the median wall time of the whole program run,
the resources registered, the time per resource, and two floors: the SDK floor registers the same resources
through the same SDK classes (pulumi-kubernetes, pulumi-random, pulumi-tls) flat, with none of our logic,
components or dependencies; the bare floor registers as many plain CustomResources with the same inputs. `--suite` adds the test suite's wall
time, `--setup` the README's test set-up on a fresh virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
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
import pulumi_random
import pulumi_tls

from components import catalogue
from tools import istio_charts
from tools.stack_run import ROOT, Registered, StackRun, run_stack, stand_in_chart_cache

DEFAULT_SIZES = (20, 50, 100, 200)
REAL_SERVICES = len(catalogue.CATALOGUE)


@dataclass(frozen=True)
class Measurement:
    label: str
    services: int
    resources: int
    seconds: float
    floor_seconds: float  # the same resources through the same SDK classes, flat, no logic
    plain_seconds: float  # as many bare CustomResources with the same inputs

    @property
    def per_resource_ms(self) -> float:
        return 1000 * self.seconds / self.resources

    @property
    def overhead(self) -> float:
        return self.seconds / self.floor_seconds - 1


def synthetic_name(index: int) -> str:
    return f"svc-{index:03d}"


@contextlib.contextmanager
def synthetic_catalogue(count: int) -> Iterator[dict]:
    """`count` generated backends in the app catalogue, and the stack overrides that deploy them."""
    added = {synthetic_name(i): catalogue._backend(synthetic_name(i), 10000 + i, synthetic_name(i), f"/api/v1/{synthetic_name(i)}")
             for i in range(count)}
    catalogue.CATALOGUE.update(added)
    try:
        yield {f"services.{name}": {"versions": {"v1": {"tier": "json"}, "v2": {"tier": "json"}}, "weights": {"v1": 90, "v2": 10}}
               for name in added}
    finally:
        for name in added:
            catalogue.CATALOGUE.pop(name, None)


def _sdk_class(resource_type: str) -> tuple[Callable[..., object], dict]:
    """The SDK class a type token names, and fixed arguments (Istio kinds are generic custom resources)."""
    package, module, kind = resource_type.split(":")
    if package == "kubernetes" and "." in module.split("/")[0] and module != "helm.sh/v3":
        return pulumi_kubernetes.apiextensions.CustomResource, {}
    root = {"kubernetes": pulumi_kubernetes, "random": pulumi_random, "tls": pulumi_tls}[package]
    if package == "kubernetes":
        for part in module.replace("helm.sh", "helm").split("/"):
            root = getattr(root, part)
    return getattr(root, kind), {}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def sdk_program(resources: list[Registered]) -> Callable[[], None]:
    """The floor: the same resources through the same SDK classes, registered flat, with none of our logic."""
    custom = [r for r in resources if r.custom]

    def program() -> None:
        for index, resource in enumerate(custom):
            cls, _ = _sdk_class(resource.type)
            inputs = resource.manifest()
            if cls is pulumi_kubernetes.apiextensions.CustomResource:
                cls(f"sdk-{index}", api_version=inputs.pop("apiVersion"), kind=inputs.pop("kind"), **inputs)
                continue
            inputs.pop("apiVersion", None)
            inputs.pop("kind", None)
            cls(f"sdk-{index}", **{_snake(key): value for key, value in inputs.items()})
    return program


def plain_program(payloads: list[dict]) -> Callable[[], None]:
    """The floor: one plain resource per resource of the real run, carrying the same inputs, and nothing else."""
    def program() -> None:
        for index, payload in enumerate(payloads):
            pulumi.CustomResource("bench:index:Plain", f"plain-{index}", payload)
    return program


def median_seconds(run: Callable[[], StackRun], runs: int) -> tuple[float, StackRun]:
    times, last = [], None
    for _ in range(runs):
        started = time.perf_counter()
        last = run()
        times.append(time.perf_counter() - started)
        if last.error:
            raise SystemExit(f"benchmark run failed: {last.error}")
    return statistics.median(times), last


def measure(label: str, stack: str, overrides: dict, services: int, runs: int) -> Measurement:
    seconds, result = median_seconds(lambda: run_stack(stack, overrides), runs)
    payloads = [resource.manifest() for resource in result.resources]
    floor, _ = median_seconds(lambda: run_stack(stack, program=sdk_program(result.resources)), runs)
    plain, _ = median_seconds(lambda: run_stack(stack, program=plain_program(payloads)), runs)
    return Measurement(label, services, len(payloads), seconds, floor, plain)


def run_all(sizes: tuple[int, ...], runs: int) -> list[Measurement]:
    results = [measure("dev", "dev", {}, REAL_SERVICES, runs), measure("prod", "prod", {}, REAL_SERVICES, runs)]
    for size in sizes:
        with synthetic_catalogue(size - REAL_SERVICES) as overrides:
            results.append(measure(f"{size} services", "dev", overrides, size, runs))
    return results


def timed_command(command: list[str], cwd: Path, env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def suite_seconds() -> float:
    return timed_command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT,
                         env={key: value for key, value in os.environ.items() if key != istio_charts.CACHE_ENV})


def fresh_setup_seconds() -> float:
    """`make venv schemas` (what `make test` does before testing) in a fresh copy of the repository."""
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as folder:
        copy = Path(folder) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(copy)], check=True)
        return timed_command(["make", "venv", "schemas"], copy)


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        memory = f", {kib / 2**20:.0f} GiB"
    return (f"{platform.machine()}, {cpus} cores{memory}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, pulumi SDK {_version('pulumi')}, pulumi-kubernetes {_version('pulumi_kubernetes')}")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package.replace("_", "-"))


def table(results: list[Measurement]) -> str:
    rows = ["| stack | services | resources | median wall (s) | ms / resource | SDK floor (s) | over floor | bare resources (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {m.label} | {m.services} | {m.resources} | {m.seconds:.2f} | {m.per_resource_ms:.1f} | "
             f"{m.floor_seconds:.2f} | {100 * m.overhead:+.0f}% | {m.plain_seconds:.2f} |" for m in results]
    return "\n".join(rows)


def scaling_summary(results: list[Measurement]) -> str:
    by_size = {m.services: m for m in results if m.label.endswith("services")}
    lines = []
    if 20 in by_size and 200 in by_size:
        lines.append(f"200 services / 20 services: {by_size[200].seconds / by_size[20].seconds:.1f}x wall time for "
                     f"{by_size[200].resources / by_size[20].resources:.1f}x resources.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--write", type=Path, help="write the report (Markdown) to this file")
    parser.add_argument("--suite", action="store_true", help="also time the whole test suite")
    parser.add_argument("--setup", action="store_true", help="also time `make venv schemas` on a fresh clone")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-charts-") as cache:
        os.environ[istio_charts.CACHE_ENV] = str(stand_in_chart_cache(Path(cache)))
        try:
            results = run_all(tuple(args.sizes), args.runs)
        finally:
            del os.environ[istio_charts.CACHE_ENV]
    report = [f"Machine: {machine()}.", f"Median of {args.runs} runs each; `python -m bench.program_scaling`.", "",
              table(results), "", scaling_summary(results)]
    print("\n".join(report), flush=True)
    extras = []
    if args.suite:
        extras.append(f"\nTest suite (`pytest -q`, after set-up): {suite_seconds():.1f} s.")
    if args.setup:
        extras.append(f"\nREADME test set-up on a fresh clone (`make venv schemas`: venv and pip install): {fresh_setup_seconds():.0f} s.")
    print("\n".join(extras))
    text = "\n".join(report + extras).rstrip() + "\n"
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(_document(text))
    return 0


def _document(report: str) -> str:
    return ("# Performance\n\nHow long the program takes to evaluate under Pulumi's mock engine (no cluster, no CLI), "
            "against two floors: the SDK floor registers the same resources through the same SDK classes with none of "
            "our logic, components or dependencies; the bare floor registers as many plain CustomResources with the "
            "same inputs. Regenerate with `make bench`.\n\n" + report)


if __name__ == "__main__":
    sys.exit(main())
