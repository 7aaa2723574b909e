"""`istioctl analyze` of a stack's rendered objects, offline: the pull-request check that Istio finds no error in them.

    python -m tools.analyze --stack dev [--istioctl PATH] [--keep DIR]

Renders the stack as `make render` does (the mock engine, no cluster), and gives istioctl of the stack's own Istio
release (fetched and verified like the charts, unless --istioctl names one) the Kubernetes objects, with `--use-kube=false`.
Offline, the analyzers would miss what only a cluster has, so the input also holds one Pod per Deployment and
StatefulSet, made from its pod template (what the cluster would run: the Sidecars', AuthorizationPolicies' and
DestinationRule subsets' selectors are checked against them). Secrets are left out (the render masks their data).
The ingress gateway's pods come from the Helm chart, not from the render, so "no pod matches the Gateway's selector"
is suppressed for the stack's Gateway only. Prints every Error and Warning; exit code 1 on any Error, 2 when the
stack or istioctl cannot be had.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from builders.routes import GATEWAY_NAME
from config.settings import Settings
from domain.mesh import ISTIO_NAMESPACE
from tools import diagnose, render
from tools.cluster import ReadError
from tools.errors import CommandError
from tools.stack_files import default_stack_file, load_stack_settings

EXIT_CLEAN, EXIT_ERRORS, EXIT_UNAVAILABLE = 0, 1, 2
WORKLOADS = ("Deployment", "StatefulSet")
# How each release names a resource in a suppression (the origin's FriendlyName: pkg/config/analysis/legacy/source/
# kube/origin.go at 1.30.3, galley/pkg/config/source/kube/rt/origin.go at 1.6.14); 1.6 reads folders only with -R.
FRIENDLY_NAME = {"1.30": "{kind} {namespace}/{name}", "1.6": "{kind} {name}.{namespace}"}
FOLDER_ARGS = {"1.30": (), "1.6": ("--recursive",)}
GATEWAY_SELECTOR_NOT_FOUND = "IST0101"


def pod_from(workload: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Deployment or StatefulSet makes, as far as the analyzers look: its template's labels, annotations and spec."""
    template = workload["spec"]["template"]
    metadata = template.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{workload['metadata']['name']}-0", "namespace": workload["metadata"].get("namespace"),
                         "labels": metadata.get("labels") or {}, "annotations": metadata.get("annotations") or {}},
            "spec": template["spec"]}


def analyzed_objects(files: dict[str, str]) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects istioctl reads, and the Pods their workloads make."""
    objects = [yaml.safe_load(text) for path, text in sorted(files.items())
               if path.startswith("kubernetes/") and not path.rsplit("/", 1)[-1].startswith("Secret.")]
    return objects + [pod_from(item) for item in objects if item.get("kind") in WORKLOADS]


def suppressions(settings: Settings, objects: Iterable[dict[str, Any]]) -> list[str]:
    form = FRIENDLY_NAME[settings.istio.minor]
    gateways = [item["metadata"] for item in objects if item.get("kind") == "Gateway" and item["metadata"]["name"] == GATEWAY_NAME]
    return [f"{GATEWAY_SELECTOR_NOT_FOUND}={form.format(kind='Gateway', namespace=meta['namespace'], name=meta['name'])}"
            for meta in gateways]


def istioctl_args(settings: Settings, folder: Path, suppressed: Sequence[str]) -> list[str]:
    minor = settings.istio.minor
    return ["analyze", "--use-kube=false", "--output", "json", "--failure-threshold", "Error",
            "--istioNamespace", ISTIO_NAMESPACE, *FOLDER_ARGS[minor], *(arg for s in suppressed for arg in ("--suppress", s)), str(folder)]


def analyze(settings: Settings, files: dict[str, str], istioctl: str, folder: Path) -> list[dict[str, Any]]:
    objects = analyzed_objects(files)
    folder.mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(objects):
        (folder / f"{index:04d}-{item['kind']}.{item['metadata']['name']}.yaml").write_text(yaml.safe_dump(item, sort_keys=False))
    done = subprocess.run([istioctl, *istioctl_args(settings, folder, suppressions(settings, objects))],
                          capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0 and not done.stdout.strip():
        raise ReadError(f"istioctl analyze failed: {done.stderr.strip()[-1000:]}")
    return diagnose.parse_analysis(done.stdout)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.analyze", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--istioctl", help="istioctl to run (default: the stack's Istio release, fetched and verified)")
    parser.add_argument("--keep", type=Path, help="write the analyzed objects here and keep them")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_stack_settings(args.stack, default_stack_file(args.stack))
        istioctl = args.istioctl or diagnose.matching_istioctl(settings)
        folder = args.keep or Path(tempfile.mkdtemp(prefix="analyze-"))
        try:
            messages = analyze(settings, render.render_stack(args.stack), istioctl, folder)
        finally:
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    shown = diagnose.analysis_findings(messages)
    for finding in shown:
        print(f"{args.stack}: {finding.text}" + "".join(f"\n    see {url}" for url in finding.next))
    errors = sum(message.get("level") == "Error" for message in messages)
    print(f"{args.stack}: istioctl {settings.istio.version} analyze: {errors} error(s), {len(shown) - errors} warning(s)")
    return EXIT_ERRORS if errors else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
