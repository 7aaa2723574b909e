"""Failed checks per workload of a Kubernetes misconfiguration scanner (checkov) over a stack's rendered objects.

    python -m tools.scan --stack prod [--pin-digests] [--charts]

Renders the stack as `make render` does (the mock engine, no cluster) and runs checkov's Kubernetes checks over the
objects, offline (`--skip-download`: no call to its vendor's API). Prints the failed checks per workload (Deployment,
StatefulSet, Job, ...) with the average, and marks each one the waiver table in docs/security.md documents. --pin-digests pins
every image the stack runs by a made-up digest first: what the stack scores once the stack file records the real
ones. --charts scans the workloads of the stack's Helm releases instead (istiod, the gateway, the add-ons): each
release rendered by `helm template` from the chart the stack installs (its `helm.chartsDir`, Istio 1.6's release
archive, or the chart's repository) with the release's values, and held against the chart waiver table. Exit code 1
when a failed check is not a documented waiver; `make scanner` (`--install`) installs checkov and builds Helm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools import render
from tools.errors import CommandError
from tools.stack_files import ROOT, default_stack_file, load_stack_settings

LOCK = ROOT / "tools" / "scanner" / "requirements.txt"
# Helm as the Kubernetes provider embeds it (the same module version), so a release renders here as it installs.
HELM_MODULE = ROOT / "tools" / "scanner" / "helm"
# checkov also reports a Pod per pod template (its findings are the workload's own): those are not counted twice.
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
WAIVER_PAGE = ROOT / "docs" / "security.md"
WAIVER_HEADING = "| waiver | why it is safe here | what would remove it |"
CHART_WAIVER_HEADING = "| chart workload | failed checks | why it stays | what the pinned chart lacks |"
CHART_WORKLOAD = re.compile(r"`([\w.-]+)@([\w.-]+)` `(\w+)/([\w.-]+)`")


def scanner_venv() -> Path:
    """Where `make scanner` installs checkov: a cache folder named by the lock file's contents, like the toolchain."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    return Path.home() / ".cache" / "bee-travels-toolchain" / f"checkov-{digest}"


def install_scanner() -> Path:
    """checkov and its frozen dependencies in their cache venv, unless a finished install is there already."""
    venv = scanner_venv()
    if not (venv / ".installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(LOCK)], check=True)
        (venv / ".installed").touch()
    return venv


def helm_version() -> str:
    """The Helm module version tools/scanner/helm pins."""
    found = re.search(r"^require helm\.sh/helm/v3 (v[\d.]+)$", (HELM_MODULE / "go.mod").read_text(), re.MULTILINE)
    if not found:
        raise CommandError(f"{HELM_MODULE / 'go.mod'} does not require helm.sh/helm/v3 at a release")
    return found.group(1)


def helm_binary() -> Path:
    """Where `make scanner` builds Helm: a cache folder named by the module's files, like the toolchain's."""
    digest = hashlib.sha256((HELM_MODULE / "go.mod").read_bytes() + (HELM_MODULE / "go.sum").read_bytes()).hexdigest()[:12]
    return Path.home() / ".cache" / "bee-travels-toolchain" / f"helm-{helm_version()}-{digest}" / "helm"


def install_helm() -> Path:
    """Helm's command built from its Go module (the module proxy is the one source needed), unless built already."""
    binary = helm_binary()
    if not binary.is_file():
        environment = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
        version_flag = f"-X helm.sh/helm/v3/internal/version.version={helm_version()}"
        subprocess.run(["go", "build", "-trimpath", "-ldflags", f"-s -w {version_flag}", "-o", str(binary.with_suffix(".partial")),
                        "helm.sh/helm/v3/cmd/helm"], cwd=HELM_MODULE, env=environment, check=True)
        binary.with_suffix(".partial").rename(binary)
    return binary


@dataclass(frozen=True)
class Failure:
    workload: str  # Kind.namespace.name, as checkov names a resource
    check: str  # CKV_K8S_...
    title: str


def documented_waivers(page: Path = WAIVER_PAGE) -> set[str]:
    """The check ids named in the first column of the waiver table (docs/security.md, Hardening)."""
    text = page.read_text()
    table = text[text.index(WAIVER_HEADING):].split("\n\n", 1)[0]
    return {check for row in table.splitlines()[2:] for check in re.findall(r"CKV_K8S_\d+", row.split("|")[1])}


def digests_for_every_image(stack: str, istio_version: str | None = None) -> dict[str, str]:
    """A made-up digest per repository the stack runs (on `istio_version` if given): the form a registry's would have."""
    settings = load_stack_settings(stack, default_stack_file(stack))
    if istio_version:
        settings = settings.model_copy(update={"istio": settings.istio.model_copy(update={"version": istio_version})})
    return {repository: f"sha256:{index:064x}" for index, repository in enumerate(settings.image_repositories(), start=1)}


def scan(files: dict[str, str], checkov: Path) -> tuple[list[Failure], list[str]]:
    """The failed checks on workloads, and every workload scanned."""
    with tempfile.TemporaryDirectory(prefix="scan-") as folder:
        for path, text in files.items():
            if path.startswith("kubernetes/"):
                (Path(folder) / path.replace("/", "_")).write_text(text)
        done = subprocess.run([str(checkov), "--directory", folder, "--framework", "kubernetes", "--output", "json",
                               "--compact", "--skip-download"], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    results: dict[str, Any] = (report[0] if isinstance(report, list) else report)["results"]
    workloads = sorted({check["resource"] for kind in ("passed_checks", "failed_checks") for check in results[kind]
                        if check["resource"].split(".", 1)[0] in WORKLOADS})
    failures = [Failure(check["resource"], check["check_id"], check["check_name"]) for check in results["failed_checks"]
                if check["resource"] in workloads]
    return failures, workloads


# ---- the charts' workloads --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChartRelease:
    """A Helm release as the stack declares it: what `helm template` needs to render it as the provider installs it."""
    name: str
    namespace: str
    chart: str  # a local folder or archive, or a chart's name in `repository`
    version: str | None
    repository: str | None
    values: Mapping[str, Any]
    value_files: tuple[str, ...]

    def source_flags(self) -> list[str]:
        return [*(["--version", self.version] if self.version else []), *(["--repo", self.repository] if self.repository else [])]


def chart_releases(stack: str, overrides: Mapping[str, Any] | None = None) -> tuple[list[ChartRelease], str]:
    """The stack's Helm releases, from its program under the mock engine, and the Kubernetes version it targets."""
    from tools.stack_run import run_stack, unwrap  # the program's SDK: only needed here

    run = run_stack(stack, overrides)
    if run.error:
        raise CommandError(f"{stack}: the program stopped before its releases were known: {run.error}")
    releases = []
    for resource in run.resources:
        if resource.type != render.HELM_RELEASE:
            continue
        inputs = unwrap(resource.inputs)
        releases.append(ChartRelease(
            inputs["name"], inputs["namespace"], inputs["chart"], inputs.get("version"),
            (inputs.get("repositoryOpts") or {}).get("repo"), inputs.get("values") or {},
            tuple(asset["path"] for asset in inputs.get("valueYamlFiles") or ())))
    # The key's own path among the edits (`pulumi config set --path kubernetesVersion`), else the stack file's.
    version = (overrides or {}).get("kubernetesVersion") or load_stack_settings(stack, default_stack_file(stack)).kubernetes_version
    return releases, version


def _helm(helm: Path, *arguments: str) -> str:
    done = subprocess.run([str(helm), *arguments], capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise CommandError(f"helm {' '.join(arguments[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def chart_label(helm: Path, release: ChartRelease) -> str:
    """`name@version` of the chart a release installs, from its Chart.yaml (what the chart waiver table names)."""
    chart = yaml.safe_load(_helm(helm, "show", "chart", release.chart, *release.source_flags()))
    return f"{chart['name']}@{chart['version']}"


def render_release(helm: Path, release: ChartRelease, kubernetes_version: str) -> list[dict[str, Any]]:
    """The objects `helm template` renders for the release (CRDs aside), each in the release's namespace."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="values-") as values:
        json.dump(release.values, values)  # JSON is YAML; the file goes with the block, secrets and all
        values.flush()
        text = _helm(helm, "template", release.name, release.chart, *release.source_flags(), "--namespace", release.namespace,
                     "--kube-version", kubernetes_version, *(flag for path in release.value_files for flag in ("-f", path)),
                     "-f", values.name)
    documents = [document for document in yaml.safe_load_all(text) if isinstance(document, dict) and document.get("kind")]
    for document in documents:
        document.setdefault("metadata", {}).setdefault("namespace", release.namespace)
    return documents


@dataclass(frozen=True)
class ChartScan:
    failures: list[Failure]
    workloads: list[str]
    charts: dict[str, str]  # workload -> chart@version

    def is_waived(self, failure: Failure, waivers: Mapping[tuple[str, str], set[str]]) -> bool:
        return failure.check in waivers.get(self.key(failure.workload), set())

    def undocumented(self, waivers: Mapping[tuple[str, str], set[str]]) -> list[str]:
        return sorted(f"{self.charts[failure.workload]} {failure.workload} {failure.check} {failure.title}"
                      for failure in self.failures if not self.is_waived(failure, waivers))

    def key(self, workload: str) -> tuple[str, str]:
        kind, _namespace, name = workload.split(".", 2)
        return self.charts[workload], f"{kind}/{name}"

    def found(self) -> dict[tuple[str, str], set[str]]:
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for failure in self.failures:
            found[self.key(failure.workload)].add(failure.check)
        return dict(found)


def scan_charts(releases: Iterable[ChartRelease], kubernetes_version: str, helm: Path, checkov: Path) -> ChartScan:
    """checkov over every release's rendered objects, one file per object: a chart's file that checkov cannot parse
    (a template inside a ConfigMap, say) must not hide the workloads beside it."""
    files: dict[str, str] = {}
    charts: dict[str, str] = {}
    for release in releases:
        label = chart_label(helm, release)
        for index, document in enumerate(render_release(helm, release, kubernetes_version)):
            files[f"kubernetes/charts/{release.name}/{index:03d}.yaml"] = render.to_yaml(document)
            metadata = document["metadata"]
            charts[f"{document['kind']}.{metadata['namespace']}.{metadata.get('name')}"] = label
    failures, workloads = scan(files, checkov)
    return ChartScan(failures, workloads, {workload: charts[workload] for workload in workloads})


def documented_chart_waivers(page: Path = WAIVER_PAGE) -> dict[tuple[str, str], set[str]]:
    """(chart@version, Kind/name) -> the check ids its row of the chart waiver table names."""
    text = page.read_text()
    table = text[text.index(CHART_WAIVER_HEADING):].split("\n\n", 1)[0]
    waivers: dict[tuple[str, str], set[str]] = {}
    for row in table.splitlines()[2:]:
        cells = row.split("|")
        for chart, version, kind, name in CHART_WORKLOAD.findall(cells[1]):
            waivers[(f"{chart}@{version}", f"{kind}/{name}")] = set(re.findall(r"CKV_K8S_\d+", cells[2]))
    return waivers


def per_workload(failures: Sequence[Failure], workloads: Sequence[str]) -> dict[str, list[Failure]]:
    found: dict[str, list[Failure]] = {workload: [] for workload in workloads}
    for failure in failures:
        found[failure.workload].append(failure)
    return found


def _report(stack: str, failures: Sequence[Failure], workloads: Sequence[str], labels: Mapping[str, str],
            is_waived: Callable[[Failure], bool]) -> bool:
    """Prints the failed checks per workload and per check; True when every one is a documented waiver."""
    by_check: dict[str, int] = defaultdict(int)
    for workload, found in per_workload(failures, workloads).items():
        shown = f"{workload} ({labels[workload]})" if workload in labels else workload
        print(f"{len(found)}  {shown}  {' '.join(failure.check for failure in found)}")
        for failure in found:
            by_check[f"{failure.check} {failure.title}"] += 1
    print(f"{stack}: {len(failures)} failed checks on {len(workloads)} workloads, "
          f"{len(failures) / max(len(workloads), 1):.2f} per workload")
    undocumented = {f"{failure.check} {failure.title}" for failure in failures if not is_waived(failure)}
    for check, count in sorted(by_check.items(), key=lambda item: -item[1]):
        print(f"  {count:3d}  {check}{'   (NOT a documented waiver)' if check in undocumented else ''}")
    return not undocumented


def _chart_edits(args: argparse.Namespace) -> dict[str, str]:
    edits = {"helm.chartsDir": str(args.charts_dir)} if args.charts_dir else {}
    return {**edits, **({"istio.chartsDir": str(args.istio_charts)} if args.istio_charts else {})}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scan", description=__doc__.split("\n", 1)[0])
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--stack")
    chosen.add_argument("--install", action="store_true", help="install checkov and build Helm into their cache folders (make scanner)")
    parser.add_argument("--pin-digests", action="store_true", help="pin every image by a made-up digest first")
    parser.add_argument("--charts", action="store_true", help="scan the workloads of the stack's Helm releases instead")
    parser.add_argument("--charts-dir", type=Path, help="with --charts: render from this folder of pulled charts (as helm.chartsDir)")
    parser.add_argument("--istio-charts", type=Path, help="with --charts: Istio 1.6's charts folder (as istio.chartsDir)")
    args = parser.parse_args(argv)
    if args.install:
        print(install_scanner())
        print(install_helm())
        return 0
    checkov, helm = scanner_venv() / "bin" / "checkov", helm_binary()
    for tool in (checkov, helm) if args.charts else (checkov,):
        if not tool.is_file():
            print(f"error: no {tool.name} at {tool}; run `make scanner`", file=sys.stderr)
            return 2
    overrides = {"images.digests": digests_for_every_image(args.stack)} if args.pin_digests else {}
    if args.charts:
        try:
            releases, kubernetes_version = chart_releases(args.stack, {**overrides, **_chart_edits(args)})
            found = scan_charts(releases, kubernetes_version, helm, checkov)
        except CommandError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        waivers = documented_chart_waivers()
        clean = _report(args.stack, found.failures, found.workloads, found.charts, lambda failure: found.is_waived(failure, waivers))
    else:
        failures, workloads = scan(render.render_stack(args.stack, overrides or None), checkov)
        waived = documented_waivers()
        clean = _report(args.stack, failures, workloads, {}, lambda failure: failure.check in waived)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
