"""Failed checks per workload of a Kubernetes misconfiguration scanner (checkov) over a stack's rendered objects.

    python -m tools.scan --stack prod [--pin-digests]

Renders the stack as `make render` does (the mock engine, no cluster) and runs checkov's Kubernetes checks over the
objects, offline (`--skip-download`: no call to its vendor's API). Prints the failed checks per workload (Deployment,
StatefulSet, Job, ...) with the average, and marks each one the waiver table in docs/security.md documents. --pin-digests pins
every image the stack runs by a made-up digest first: what the stack scores once the stack file records the real
ones. Exit code 1 when a failed check is not a documented waiver; `make scanner` (`--install`) installs checkov.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import render
from tools.stack_files import ROOT, default_stack_file, load_stack_settings

LOCK = ROOT / "tools" / "scanner" / "requirements.txt"
# checkov also reports a Pod per pod template (its findings are the workload's own): those are not counted twice.
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
WAIVER_PAGE = ROOT / "docs" / "security.md"
WAIVER_HEADING = "| waiver | why it is safe here | what would remove it |"


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


def per_workload(failures: Sequence[Failure], workloads: Sequence[str]) -> dict[str, list[Failure]]:
    found: dict[str, list[Failure]] = {workload: [] for workload in workloads}
    for failure in failures:
        found[failure.workload].append(failure)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scan", description=__doc__.split("\n", 1)[0])
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--stack")
    chosen.add_argument("--install", action="store_true", help="install checkov into its cache venv (make scanner)")
    parser.add_argument("--pin-digests", action="store_true", help="pin every image by a made-up digest first")
    args = parser.parse_args(argv)
    if args.install:
        print(install_scanner())
        return 0
    checkov = scanner_venv() / "bin" / "checkov"
    if not checkov.is_file():
        print(f"error: no checkov at {checkov}; run `make scanner`", file=sys.stderr)
        return 2
    overrides = {"images.digests": digests_for_every_image(args.stack)} if args.pin_digests else None
    failures, workloads = scan(render.render_stack(args.stack, overrides), checkov)
    waived = documented_waivers()
    by_check: dict[str, int] = defaultdict(int)
    for workload, found in per_workload(failures, workloads).items():
        print(f"{len(found)}  {workload}  {' '.join(failure.check for failure in found)}")
        for failure in found:
            by_check[f"{failure.check} {failure.title}"] += 1
    print(f"{args.stack}: {len(failures)} failed checks on {len(workloads)} workloads, "
          f"{len(failures) / max(len(workloads), 1):.2f} per workload")
    for check, count in sorted(by_check.items(), key=lambda item: -item[1]):
        print(f"  {count:3d}  {check}{'' if check.split()[0] in waived else '   (NOT a documented waiver)'}")
    return 1 if any(failure.check not in waived for failure in failures) else 0


if __name__ == "__main__":
    sys.exit(main())
