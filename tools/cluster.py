"""The cluster a stack's provider talks to, for the commands that read it: kubectl's flags from the stack file's
kubernetes:kubeconfig and kubernetes:context (or the options given), and a small reader over kubectl."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.errors import CommandError
from tools.stack_files import load_stack_values


class ReadError(CommandError):
    """A source of live data could not be read."""


@dataclass(frozen=True)
class Kubectl:
    cluster: tuple[str, ...]  # --kubeconfig / --context, as the stack's provider finds its cluster

    def items(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        where = ["-n", namespace] if namespace else ["--all-namespaces"]
        return self.get(kind, *where)["items"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Any kubectl command against the stack's cluster (exec, run), its output captured."""
        return subprocess.run(["kubectl", *self.cluster, *args], check=check, capture_output=True, text=True)

    def get(self, *args: str) -> dict[str, Any]:
        command = ["kubectl", *self.cluster, "get", *args, "-o", "json"]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise ReadError(f"`{' '.join(command[1:])}` failed: {done.stderr.strip()[-400:]}")
        return json.loads(done.stdout)


@contextlib.contextmanager
def stack_cluster(args: argparse.Namespace, stack_file: Path | None) -> Iterator[tuple[str, ...]]:
    """kubectl's and istioctl's flags for the cluster the stack's provider talks to: the options given, else the stack
    file's kubernetes:kubeconfig (a path, or the file's text, as the provider takes it) and kubernetes:context; with
    no stack file, the options alone (none: kubectl's own current context)."""
    values = load_stack_values(args.stack, stack_file)[0] if stack_file else {}
    kubeconfig, context = args.kubeconfig or values.get("kubernetes:kubeconfig"), args.context or values.get("kubernetes:context")
    if isinstance(kubeconfig, dict):
        raise ReadError(f"{stack_file.name} keeps kubernetes:kubeconfig as a secret; pass --kubeconfig PATH")
    with tempfile.TemporaryDirectory(prefix="stack-cluster-") as scratch:
        if kubeconfig and not Path(str(kubeconfig)).expanduser().is_file():
            inline = Path(scratch) / "kubeconfig"
            inline.write_text(str(kubeconfig))
            inline.chmod(0o600)
            kubeconfig = str(inline)
        yield (*(("--kubeconfig", str(Path(str(kubeconfig)).expanduser())) if kubeconfig else ()), *(("--context", str(context)) if context else ()))
