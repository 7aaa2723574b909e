"""The real Pulumi CLI on this project: the pinned toolchain, a local file backend and a passphrase made per run.

A workspace is a temporary project folder that links the program's files (so the committed stack files are
never touched), with stack files written from the committed ones plus `pulumi config set --path` style edits.
No cluster is reachable unless a kubeconfig is given: previews then run the real engine, providers and policy
pack while the Kubernetes provider plans without a server.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.backend import local_backend_url
from tools.stack_files import default_stack_file, stack_file_config
from tools.stack_run import ROOT, set_path, stand_in_charts_dir

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
# What the program needs from the repository; stack files and local state are left behind.
PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "domain", "config", "builders", "components", "requirements.txt", ".venv")
_toolchain_lock = threading.Lock()
_toolchain_bin: Path | None = None


def toolchain_bin() -> Path:
    """The pinned toolchain's bin folder: `make toolchain` built it; this only finds it (seconds when warm)."""
    global _toolchain_bin
    with _toolchain_lock:
        if _toolchain_bin is None:
            done = subprocess.run(["bash", str(ROOT / "scripts" / "toolchain.sh")], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"the pinned toolchain is not ready; run `make toolchain`:\n{done.stderr[-4000:]}")
            _toolchain_bin = Path(done.stdout.strip().splitlines()[-1])
        return _toolchain_bin


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    events: list[dict] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class Workspace:
    """One project folder and one file backend; stacks in it are created with `init`."""

    def __init__(self, root: Path, kubeconfig: Path | None = None, source: Path = ROOT):
        self.root = root
        self.project = root / "project"
        self.project.mkdir(parents=True)
        self.use_program(source)
        (root / "state").mkdir()
        self.passphrase = secrets.token_urlsafe(24)
        bin_dir = toolchain_bin()
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "KUBERNETES_"))},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_HOME": str(bin_dir.parent / "home"),
            "PULUMI_BACKEND_URL": local_backend_url(root / "state"),
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "PULUMI_DEBUG_COMMANDS": "true",  # enables --event-log, the engine events the Automation API also reads
            "KUBECONFIG": str(kubeconfig or root / "no-cluster"),
            "NO_COLOR": "1",
        }

    def use_program(self, source: Path) -> None:
        """Run the program (and read the stack files) of `source`: this repository, or an older tree of it."""
        self.source = source
        # Older trees' components imported from tools/; today's program must run without it.
        for name in (*PROGRAM_FILES, *(("tools",) if source != ROOT else ())):
            link = self.project / name
            if link.is_symlink():
                link.unlink()
            target = source / name if (source / name).exists() else ROOT / name  # the venv is this repository's
            if (source / name).exists() or name == ".venv":
                link.symlink_to(target)

    def pulumi(self, *args: str, check: bool = True, timeout: float = 600, events: bool = False) -> Result:
        log = self.root / f"events-{secrets.token_hex(4)}.jsonl"
        flags = ["--non-interactive", *(["--event-log", str(log)] if events else [])]
        # Flags go before a `--`, after which everything is a value (one may start with dashes, like a PEM).
        cut = args.index("--") if "--" in args else len(args)
        argv = ["pulumi", *args[:cut], *flags, *args[cut:]]
        done = subprocess.run(argv, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        result = Result(argv, done.returncode, done.stdout, done.stderr)
        if events and log.exists():
            result.events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if check and done.returncode != 0:
            raise AssertionError(f"`{' '.join(argv)}` exited {done.returncode}:\n{result.output[-6000:]}")
        return result

    def init(self, stack: str, base: str | None, overrides: Mapping[str, Any] | None = None,
             secret_values: Mapping[str, str] | None = None) -> Path:
        """Create `stack` whose stack file is Pulumi.<base>.yaml (none: empty) with `overrides` applied; secrets set
        encrypted."""
        self.pulumi("stack", "init", stack)
        stack_file = default_stack_file(stack, self.project)
        salt = (yaml.safe_load(stack_file.read_text()) or {}).get("encryptionsalt")
        self.write_stack_file(stack, base, overrides, salt)
        for key, value in (secret_values or {}).items():
            self.pulumi("config", "set", "--secret", "--stack", stack, "--", key, value)
        return stack_file

    def write_stack_file(self, stack: str, base: str | None, overrides: Mapping[str, Any] | None = None,
                         salt: str | None = None) -> None:
        """Pulumi.<stack>.yaml as the program's own Pulumi.<base>.yaml (none: empty) with `overrides`, keeping the
        stack's salt."""
        stack_file = default_stack_file(stack, self.project)
        if salt is None:
            salt = (yaml.safe_load(stack_file.read_text()) or {}).get("encryptionsalt")
        committed = (yaml.safe_load(default_stack_file(base, self.source).read_text()) or {}) if base else {}
        values = {key.removeprefix(f"{PROJECT}:"): value for key, value in (committed.get("config") or {}).items()}
        for path, value in (overrides or {}).items():
            set_path(values, path, value)
        document = {"encryptionsalt": salt, "config": stack_file_config(values)}
        stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def preview(self, stack: str, *extra: str, check: bool = True) -> Result:
        return self.pulumi("preview", "--stack", stack, "--json", "--policy-pack", str(ROOT / "policy"), *extra,
                           check=check, events=True)


def planned_resources(events: list[dict]) -> dict[tuple[str, str], str]:
    """(type, name) -> operation, for every resource step of the engine's event log (providers and the stack left out)."""
    planned = {}
    for event in events:
        step = event.get("resourcePreEvent", {}).get("metadata")
        if not step or step.get("type", "").startswith("pulumi:"):
            continue
        planned[(step["type"], step["urn"].rsplit("::", 1)[1])] = step["op"]
    return planned


def policy_results(events: list[dict]) -> tuple[set[str], set[str]]:
    """Names of the policies that passed and that failed on some resource or on the stack."""
    passed: set[str] = set()
    failed: set[str] = set()
    for event in events:
        for kind in ("policyAnalyzeSummaryEvent", "policyAnalyzeStackSummaryEvent"):
            summary = event.get(kind)
            if summary:
                passed |= set(summary.get("passed") or [])
                failed |= set(summary.get("failed") or [])
    return passed, failed


def pinned_charts() -> list:
    """Every repository chart a stack may install: current Istio's three and the add-ons of both Istio lines."""
    from builders.addons import ADDONS
    from builders.charts import repository_charts
    from config.settings import IstioSettings

    charts = repository_charts(IstioSettings(version="1.30.3"))
    return [*charts, *(chart for addons in ADDONS.values() for chart in (addons.prometheus, addons.grafana, addons.kiali))]


def stand_in_helm_charts(root: Path, istio_crds: Path | None = None) -> Path:
    """A helm.chartsDir with a stand-in for every repository chart any stack installs, for the benchmark only (the
    tests install the real charts, harness/real_charts.py); with `istio_crds`, the base chart installs those CRDs."""
    folder = stand_in_charts_dir(root, pinned_charts())
    if istio_crds is not None:
        # Helm installs a chart's crds/ before its templates.
        (folder / "base-1.30.3" / "crds").mkdir()
        (folder / "base-1.30.3" / "crds" / "istio-crds.yaml").write_text(istio_crds.read_text())
    return folder
