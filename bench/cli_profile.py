"""Where the engine's CPU goes in one large update: the CLI's own profile, read by Go's pprof.

    python -m bench.cli_profile [--services 200] [--write docs/performance.md] [--save run.json | --render run.json]

Deploys one synthetic stack of N services (as `bench.real_cluster` does: fresh simulated cluster, pinned CLI,
providers and policy pack) with `pulumi up --profiling`, which writes the CLI process's CPU profile, then attributes
its CPU with `go tool pprof -top -cum` to the parts of saving the state after each step, against the rest. Only the
CLI process is profiled: the program, the policy pack, the providers and the API server run in processes of their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import markdown
from bench.program_scaling import machine
from bench.real_cluster import (
    ISTIO_CRDS,
    POLICY,
    STACK,
    UP_TIMEOUT,
    Shape,
    bench_cluster,
    declare,
    nodes_for,
    program_revision,
    toolchain_line,
    workspace_for,
    write_section,
)
from harness.pulumi_cli import stand_in_helm_charts, toolchain_bin

SECTION = "## The engine's CPU in a large update"

# (label, pprof function name): each part's cumulative CPU; a part's row nests in the one above it that holds it.
SAVE = "github.com/pulumi/pulumi/pkg/v3/backend.(*SnapshotManager).saveSnapshot"
PARTS = (
    ("saving the state after a step (all of it)", SAVE),
    ("  the snapshot turned into the file's objects (resources, secrets)",
     "github.com/pulumi/pulumi/pkg/v3/backend.(*SnapshotManager).Deployment"),
    ("  JSON encoding of the whole state", "github.com/pulumi/pulumi/pkg/v3/backend/diy.compactJSONMarshaler.Marshal"),
    ("  writing the file (the file bucket's MD5 included)", "gocloud.dev/blob.(*Bucket).WriteAll"),
    ("  copying the last file to .bak", "github.com/pulumi/pulumi/pkg/v3/backend/diy.backupTarget"),
    ("  integrity check of the state", "github.com/pulumi/pulumi/pkg/v3/resource/stack/snapshot.VerifyIntegrity"),
    ("Go's garbage collector (background marking)", "runtime.gcBgMarkWorker"),
)
_TOP_LINE = re.compile(r"^\s*[\d.]+[a-z]*\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)([a-z]*)\s+[\d.]+%\s+(.+?)\s*$")  # a zero has no unit
_UNITS = {"": 1.0, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "hrs": 3600.0}
_TOTAL = re.compile(r"Total samples = ([\d.]+)(\w+)")


@dataclass
class Profile:
    services: int
    resources: int
    up: float  # the update's wall time
    cli_cpu: float  # CPU seconds the CLI's profile sampled
    state_bytes: int
    parts: dict[str, float]  # label -> CPU seconds
    command: str = ""
    revision: str = ""
    toolchain: str = ""


def cumulative_seconds(pprof_top: str) -> tuple[float, dict[str, float]]:
    """Total sampled CPU, and each function's cumulative CPU, from `go tool pprof -top -cum` output."""
    total = _TOTAL.search(pprof_top)
    if not total:
        raise ValueError("pprof's output has no 'Total samples' line")
    functions = {}
    for line in pprof_top.splitlines():
        found = _TOP_LINE.match(line)
        if found:
            functions[found.group(3)] = float(found.group(1)) * _UNITS[found.group(2)]
    return float(total.group(1)) * _UNITS[total.group(2)], functions


def attribute(pprof_top: str) -> tuple[float, dict[str, float]]:
    total, functions = cumulative_seconds(pprof_top)
    return total, {label: functions.get(function, 0.0) for label, function in PARTS}


def pprof_top(binary: Path, profile: Path) -> str:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go is not on PATH; `go tool pprof` reads the CLI's profile")
    return subprocess.run([go, "tool", "pprof", "-top", "-cum", "-unit=s", "-nodefraction=0", "-nodecount=1000000", str(binary), str(profile)],
                          check=True, capture_output=True, text=True).stdout


def profile_update(services: int, work: Path) -> Profile:
    charts = stand_in_helm_charts(work / "charts", ISTIO_CRDS)
    shape = Shape(f"{services} services", services)
    declared = declare(shape, charts)
    with bench_cluster(work / "cluster", nodes_for(declared), declared.volumes) as cluster:
        workspace = workspace_for(shape, work / "workspace", cluster, declared.stack_edits)
        prefix = work / "cli"
        started = time.perf_counter()
        workspace.pulumi("up", "--stack", STACK, "--yes", "--skip-preview", *POLICY, "--profiling", str(prefix),
                         timeout=UP_TIMEOUT)
        up = time.perf_counter() - started
        state = workspace.root / "state" / ".pulumi" / "stacks"
        state_bytes = sum(path.stat().st_size for path in state.rglob(f"{STACK}.json"))
        server = cluster.server_version()
    cpu_profile = next(work.glob("cli.*.cpu"))
    total, parts = attribute(pprof_top(toolchain_bin() / "pulumi", cpu_profile))
    return Profile(services, declared.resources, up, total, state_bytes, parts, toolchain=toolchain_line(server))


def section(profile: Profile) -> str:
    rows = [(label.strip() if not label.startswith("  ") else f"&nbsp;&nbsp;{label.strip()}", f"{seconds:.1f}",
             f"{100 * seconds / profile.cli_cpu:.0f}%") for label, seconds in profile.parts.items()]
    saving = profile.parts[PARTS[0][0]]
    return "\n".join([
        SECTION, "",
        f"`{profile.command}`: one `pulumi up --skip-preview --policy-pack policy --profiling` of the {profile.services}-service "
        f"synthetic stack ({profile.resources} resources) from empty, on a fresh simulated cluster, as `make bench-real` "
        "deploys it; the CLI's CPU profile read with `go tool pprof -top -cum`. Only the CLI process is sampled: the "
        "program, the policy pack, the providers and the API server run in processes of their own.",
        "",
        f"Machine: {machine()}. {profile.toolchain}. The program at {profile.revision}.",
        "",
        f"The profiled update took {profile.up:.0f} s (its time without the profiler is `make bench-real`'s to say: the "
        f"profiler slows the CLI, and other work may have shared the cores); the CLI used {profile.cli_cpu:.0f} s of CPU, "
        f"{saving:.0f} s ({100 * saving / profile.cli_cpu:.0f}%) of it saving the state, which ended at "
        f"{profile.state_bytes / 2**20:.1f} MiB.",
        "",
        markdown.table(["CLI's CPU in", "CPU (s)", "share of the CLI's CPU"], rows),
        "",
        "The parts nest: the indented rows are inside the first one. The garbage collector's marking runs beside "
        "the code whose allocations it cleans up, so it is not inside any row above it.",
        "",
        "**What a user could switch off, and why it is not.** Of each save, one part has a switch: the integrity "
        f"check (`pulumi up --disable-integrity-checking`, {_share(profile, 5)} of the CLI's CPU). The "
        f"copy to `.bak` ({_share(profile, 4)}) has none (`PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS` turns off only "
        "the one backup an update makes as it starts). Both are shares of CPU read from this profile, not updates "
        "timed with them off, and together they are a few percent against a state that grows with every step: the "
        "rest is the engine turning the whole snapshot into JSON after each step, which no setting of the file "
        "backend changes. What does is a smaller state per update: a platform stack and app stacks "
        "([platform-stacks.md](platform-stacks.md)).",
    ])


def _share(profile: Profile, index: int) -> str:
    return f"{100 * profile.parts[PARTS[index][0]] / profile.cli_cpu:.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--write", type=Path, help=f"put the report in this Markdown file, under '{SECTION}'")
    parser.add_argument("--save", type=Path, metavar="JSON", help="also keep the measurements in this file")
    parser.add_argument("--render", type=Path, metavar="JSON", help="report measurements saved by --save; deploy nothing")
    args = parser.parse_args(argv)
    if args.render:
        profile = Profile(**json.loads(args.render.read_text()))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        revision = program_revision()
        with tempfile.TemporaryDirectory(prefix="bench-cli-profile-") as work:
            profile = profile_update(args.services, Path(work))
        profile.command, profile.revision = f"python -m bench.cli_profile --services {args.services}", revision
        if args.save:
            args.save.write_text(json.dumps(dataclasses.asdict(profile)))
    text = section(profile)
    print(text)
    if args.write:
        write_section(args.write, text, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
