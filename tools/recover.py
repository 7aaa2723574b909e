"""What an interrupted `pulumi up` left behind, and the recovery: say it, or with --apply do it.

    python -m tools.recover --stack prod [--apply] [--kubeconfig PATH] [--context NAME]

An update cut off (the CLI killed, the machine gone, Ctrl-C twice) can leave three things, each found here (and,
when the CLI alone was killed, its plugins still running: then nothing is touched until they exit):
1. the backend's lock, held by a process that no longer runs: removed with `pulumi cancel` (only when the lock's
   process is gone from this host; a live one is another update, and nothing is touched);
2. pending operations in the state: a create the engine started but never recorded. Pulumi's documented recovery is
   `pulumi refresh` with `--import-pending-creates URN ID` for what exists and `--clear-pending-creates` for the rest;
   the IDs are the provider's (`namespace/name`), read from each create's inputs and looked up on the cluster;
3. a Helm release left `pending-install`/`pending-upgrade`/`pending-rollback` (Helm refuses any further operation on
   it): that revision's record is deleted, so the release is back at its last deployed revision; a first install cut
   off (whatever Helm recorded of it) loses every record and its create is cleared, and the next install adopts its
   objects, which carry Helm's ownership annotations.
Then a plain `pulumi up` converges. Exit code 0 when nothing is left to recover, 3 when something was found and not
(yet) recovered (without --apply), 2 when the stack or the cluster cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.backend import local_state_dir
from tools.cluster import Kubectl, ReadError, stack_cluster
from tools.stack_files import default_stack_file

EXIT_CLEAN, EXIT_UNAVAILABLE, EXIT_FOUND = 0, 2, 3
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
PENDING_HELM = ("pending-install", "pending-upgrade", "pending-rollback")


@dataclass
class Findings:
    stale_locks: list[Path] = field(default_factory=list)
    live_locks: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # "pid name" of plugins an update killed on its own left running
    imports: list[tuple[str, str]] = field(default_factory=list)  # (urn, provider id) of pending creates that exist
    clears: list[str] = field(default_factory=list)  # pending creates of objects that do not exist
    other_pending: list[str] = field(default_factory=list)  # updates/deletes cut off: a refresh reads them back
    helm_records: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, Secret, what it was)

    @property
    def empty(self) -> bool:
        return not (self.stale_locks or self.live_locks or self.orphans or self.imports or self.clears or self.other_pending or self.helm_records)


def pulumi(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["pulumi", *args, "--non-interactive"], capture_output=True, text=True, check=False, timeout=900)
    if check and done.returncode != 0:
        raise ReadError(f"`pulumi {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def lock_files(stack: str) -> list[Path]:
    """The file backend's locks on this stack (other backends keep theirs where only `pulumi cancel` reaches)."""
    state = local_state_dir(os.environ.get("PULUMI_BACKEND_URL", ""))
    if state is None:
        return []
    project = _project_name()
    root = state / ".pulumi" / "locks"
    return sorted(path for path in root.glob(f"**/{project}/{stack}/*.json") if path.is_file())


def _project_name() -> str:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "Pulumi.yaml").read_text())["name"]


def _lock_is_stale(path: Path) -> bool:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return False  # unreadable: leave it to a human
    if content.get("hostname") != socket.gethostname():
        return False  # another machine's update: it may well be running
    try:
        os.kill(int(content["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def orphaned_plugins(project: Path) -> list[str]:
    """Plugins of this project whose CLI is gone. Pulumi starts each plugin in a process group of its own, so
    `kill -9` of the CLI alone (or the OOM killer) leaves them running, and a provider may still finish the step it
    was on: nothing may be recovered until they exit."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            name, parent = fields["Name"].strip(), int(fields["PPid"])
            if not name.startswith("pulumi-") or Path(status.parent, "cwd").resolve() != project:
                continue
            parent_name = Path(f"/proc/{parent}/comm").read_text().strip() if parent > 1 else ""
        except (OSError, KeyError, ValueError):
            continue
        if not parent_name.startswith("pulumi"):
            found.append(f"{status.parent.name} {name}")
    return sorted(found)


def _provider_id(resource: dict[str, Any]) -> str | None:
    inputs = resource.get("inputs") or {}
    if resource.get("type") == HELM_RELEASE:
        name, namespace = inputs.get("name"), inputs.get("namespace") or "default"
        return f"{namespace}/{name}" if name else None
    metadata = inputs.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        return None
    return f"{metadata['namespace']}/{name}" if metadata.get("namespace") else name


def _kind(resource: dict[str, Any]) -> str:
    """kubectl's name for the kind at the declared version (kind.version.group), from the resource's type token
    (kubernetes:apps/v1:Deployment, kubernetes:core/v1:Secret)."""
    _, group_version, kind = resource["type"].split(":")
    group, _, version = group_version.rpartition("/")
    return kind.lower() if group == "core" else f"{kind.lower()}.{version}.{group}"


def _release_records(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return [record for record in kubectl.items("secrets", namespace)
            if (record["metadata"].get("labels") or {}).get("owner") == "helm"
            and (record["metadata"].get("labels") or {}).get("name") == name]


def _record_line(namespace: str, record: dict[str, Any]) -> tuple[str, str, str]:
    labels = record["metadata"].get("labels") or {}
    return (namespace, record["metadata"]["name"],
            f"release {labels.get('name')} revision {labels.get('version')}, {labels.get('status')}")


def _exists(kubectl: Kubectl, resource: dict[str, Any], provider_id: str) -> bool:
    namespace, _, name = provider_id.rpartition("/")
    try:
        kubectl.get(_kind(resource), name, *(("-n", namespace) if namespace else ()))
    except ReadError:
        return False
    return True


def _pending_create(findings: Findings, kubectl: Kubectl, urn: str, resource: dict[str, Any]) -> None:
    provider_id = _provider_id(resource)
    if provider_id is None:
        findings.clears.append(urn)
    elif resource.get("type") == HELM_RELEASE:
        # A first install cut off is recorded pending-install, failed (when the provider saw the CLI go), or even
        # deployed (Helm finished before the engine recorded it); Helm refuses to install that name again unless it
        # forgets it. Every record of it goes and the create is cleared: the next install adopts the objects it
        # left, which carry Helm's ownership annotations (importing a release the state never held is not needed).
        namespace, _, name = provider_id.rpartition("/")
        findings.clears.append(urn)
        findings.helm_records += [_record_line(namespace, record) for record in _release_records(kubectl, namespace, name)]
    elif _exists(kubectl, resource, provider_id):
        findings.imports.append((urn, provider_id))
    else:
        findings.clears.append(urn)


def find(stack: str, kubectl: Kubectl) -> Findings:
    findings = Findings()
    for path in lock_files(stack):
        if _lock_is_stale(path):
            findings.stale_locks.append(path)
        else:
            findings.live_locks.append(path.read_text(errors="replace").strip())
    findings.orphans = orphaned_plugins(Path.cwd().resolve())
    deployment = json.loads(pulumi("stack", "export", "--stack", stack).stdout).get("deployment") or {}
    namespaces = {"istio-system"}
    for operation in deployment.get("pending_operations") or []:
        resource = operation.get("resource") or {}
        urn = resource.get("urn", "?")
        if operation.get("type") != "creating":
            findings.other_pending.append(f"{operation.get('type')} {urn}")
            continue
        _pending_create(findings, kubectl, urn, resource)
    if not (deployment.get("resources") or deployment.get("pending_operations")):
        return findings  # never deployed: no release of this stack can be pending on the cluster
    for resource in deployment.get("resources") or []:
        if resource.get("type") == HELM_RELEASE:
            namespaces.add((resource.get("inputs") or {}).get("namespace") or "default")
    for namespace in sorted(namespaces):
        try:
            records = kubectl.items("secrets", namespace)
        except ReadError:
            continue
        for record in records:
            labels = record["metadata"].get("labels") or {}
            line = _record_line(namespace, record)
            if labels.get("owner") == "helm" and labels.get("status") in PENDING_HELM and line not in findings.helm_records:
                findings.helm_records.append(line)
    return findings


def report(stack: str, findings: Findings, applying: bool) -> list[str]:
    lines = []
    verb = "removing" if applying else "would remove"
    for lock in findings.live_locks:
        lines.append(f"another update holds the lock on {stack} ({lock}); wait for it, or if you know it is gone: pulumi cancel --stack {stack}")
    if findings.orphans:
        pids = " ".join(orphan.split()[0] for orphan in findings.orphans)
        lines.append(f"plugins of an update whose CLI was killed still run ({', '.join(findings.orphans)}): they may finish "
                     f"the step they were on; wait until they exit, or stop them (kill {pids}), then recover")
    for path in findings.stale_locks:
        lines.append(f"{verb} the lock left by a process that no longer runs ({path.name}) with `pulumi cancel`")
    for urn, provider_id in findings.imports:
        lines.append(f"{'importing' if applying else 'would import'} the interrupted create of {urn} (on the cluster as {provider_id})")
    for urn in findings.clears:
        lines.append(f"{'clearing' if applying else 'would clear'} the interrupted create of {urn} (not on the cluster; the next update creates it)")
    for what in findings.other_pending:
        lines.append(f"{'refreshing' if applying else 'would refresh'} the interrupted {what}")
    for namespace, secret, what in findings.helm_records:
        lines.append(f"{'deleting' if applying else 'would delete'} Helm's record of the interrupted {what} ({namespace}/{secret})")
    return lines


def recover(stack: str, findings: Findings, kubectl: Kubectl) -> None:
    if findings.live_locks:
        raise ReadError(f"another update holds the lock on {stack}; nothing was changed")
    if findings.orphans:
        raise ReadError(f"plugins of the interrupted update of {stack} still run; nothing was changed")
    if findings.stale_locks:
        pulumi("cancel", "--stack", stack, "--yes")
    for namespace, secret, _ in findings.helm_records:
        done = subprocess.run(["kubectl", *kubectl.cluster, "-n", namespace, "delete", "secret", secret], capture_output=True,
                              text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise ReadError(f"could not delete {namespace}/{secret}: {done.stderr.strip()}")
    if findings.imports or findings.clears or findings.other_pending:
        # A string-array flag: the URN and the ID are each one value of it, in pairs.
        imports = [argument for pair in findings.imports for value in pair for argument in ("--import-pending-creates", value)]
        clear = ["--clear-pending-creates"] if findings.clears else []
        pulumi("refresh", "--stack", stack, "--yes", "--skip-preview", *imports, *clear)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.recover", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--stack-file", type=Path)
    parser.add_argument("--apply", action="store_true", help="recover (default: only say what was found and what would be done)")
    parser.add_argument("--kubeconfig", help="default: the stack's kubernetes:kubeconfig, else kubectl's own")
    parser.add_argument("--context", help="default: the stack's kubernetes:context, else the kubeconfig's current one")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stack_file = args.stack_file or default_stack_file(args.stack)
    try:
        with stack_cluster(args, stack_file) as cluster:
            kubectl = Kubectl(cluster)
            findings = find(args.stack, kubectl)
            for line in report(args.stack, findings, args.apply):
                print(f"recover: {line}", file=sys.stderr)
            if findings.empty:
                return EXIT_CLEAN
            if not args.apply:
                print(f"recover: the last update of {args.stack} was interrupted; run `make recover STACK={args.stack}` "
                      f"(or python -m tools.recover --stack {args.stack} --apply), then `make up`", file=sys.stderr)
                return EXIT_FOUND
            recover(args.stack, findings, kubectl)
            print(f"recover: {args.stack} is ready for `pulumi up`", file=sys.stderr)
            return EXIT_CLEAN
    except ReadError as error:
        print(f"recover: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
