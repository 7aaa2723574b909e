"""Metric-gated canary promotion: judge a canary on Prometheus' figures, then advance, hold or roll back its weight in the stack file.

    python -m tools.promote --stack prod --service hotel                 # edit Pulumi.prod.yaml only (for a pull request)
    python -m tools.promote --stack prod --service hotel --apply         # edit, then `pulumi up` with the policy pack
    python -m tools.promote --stack dev --service hotel --canary v2 --stable v1 --prometheus http://localhost:9090

The canary is the last version listed under services.<service>.versions, the stable version the other one with the
largest weight (--canary/--stable override). Their request count, success rate and p95 latency over the service
level's window come from Prometheus (canary.prometheusUrl, or --prometheus), through the queries in
builders/signals.py, and are judged against serviceLevel and canary settings:

  HOLD      some figure is missing, or either version served fewer than canary.minRequests requests, or the canary
            has weight 0 (restarting a canary is a reviewed human edit): nothing is edited.
  ROLLBACK  the canary's success rate is below the service level or trails stable by more than
            canary.maxSuccessRateDropPercent points, or its p95 is above the service level or more than
            canary.maxLatencyIncreasePercent above stable's: the canary goes to 0, stable takes its share.
  ADVANCE   otherwise: the canary moves to the next of canary.steps, stable gives up what the canary gains.
  COMPLETE  the canary already has 100: nothing is edited; the commands that retire the old versions are printed.

Only the weight numbers change in the stack file; comments, order, quoting and style stay byte for byte. With
--apply an edit is followed by `pulumi up` (Automation API, policy pack applied): after an advance or a rollback,
never after a hold.

Exit codes: 0 advanced or complete, 3 held, 4 rolled back, 2 usage, configuration or Prometheus error (nothing
edited), 1 `pulumi up` failed after the edit (the stack file keeps it).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from pulumi import automation

from builders.signals import Scope, p95_latency_ms, requests_served, success_ratio
from config.settings import PROJECT, CanarySettings, ServiceLevel, Settings
from tools.backend import local_backend_url
from tools.errors import CommandError
from tools.prometheus import query_rows
from tools.stack_files import ROOT, default_stack_file, load_stack_settings

EXIT_DONE, EXIT_UP_FAILED, EXIT_ERROR, EXIT_HOLD, EXIT_ROLLBACK = 0, 1, 2, 3, 4
SERVICES_KEY = f"{PROJECT}:services"


# ---- the stack's settings ----------------------------------------------------------------------

# ---- which versions are compared ---------------------------------------------------------------

@dataclass(frozen=True)
class Candidates:
    """The canary, the version it is judged against, and the service's weights as routed now."""

    stack: str
    service: str
    canary: str
    stable: str
    weights: dict[str, int]

    def weight(self, version: str) -> int:
        return self.weights.get(version, 0)


def choose_candidates(settings: Settings, stack: str, service: str, canary: str | None, stable: str | None,
                      stack_file: str) -> Candidates:
    where = f"{stack_file}: {PROJECT}:services"
    if service not in settings.services:
        raise CommandError(f"{where}.{service} does not exist; services in this stack: {', '.join(settings.services)}")
    versions = list(settings.services[service].versions)
    if len(versions) < 2:
        raise CommandError(f"{where}.{service}.versions lists only {', '.join(versions)}; promotion needs a canary and a "
                             f"stable version: add the new version there (and its weight under services.{service}.weights)")
    weights = settings.services[service].effective_weights()
    canary = canary or versions[-1]
    for role, version in (("canary", canary), ("stable", stable)):
        if version is not None and version not in versions:
            raise CommandError(f"{where}.{service}.versions.{version} does not exist, so it cannot be the {role} "
                                 f"(deployed: {', '.join(versions)})")
    others = [version for version in versions if version != canary]
    # max() keeps the first of equal weights, so ties go to the version listed first.
    stable = stable or max(others, key=lambda version: weights.get(version, 0))
    if stable == canary:
        raise CommandError(f"--canary and --stable both name {canary}; compare two different versions of {service}")
    return Candidates(stack, service, canary, stable, weights)


# ---- figures from Prometheus -------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    """One version's figures over the window; None where Prometheus has no finite value."""

    version: str
    requests: float | None
    success_percent: float | None
    p95_ms: float | None

    def missing(self) -> list[str]:
        named = {"request count": self.requests, "success rate": self.success_percent, "p95 latency": self.p95_ms}
        return [name for name, value in named.items() if value is None]


def query_vector(base_url: str, promql: str, timeout: float) -> dict[str, float | None]:
    """An instant query's value per destination_version; NaN and ±Inf (no traffic to compute on) read as None."""
    values: dict[str, float | None] = {}
    for labels, value in query_rows(base_url, promql, timeout):
        if "destination_version" in labels:
            values[labels["destination_version"]] = value if math.isfinite(value) else None
    return values


def read_figures(url: str, namespace: str, candidates: Candidates, window: str, timeout: float) -> tuple[Figures, Figures]:
    scope = Scope(namespace, candidates.service)
    requests = query_vector(url, requests_served(scope, window), timeout)
    success = query_vector(url, success_ratio(scope, window), timeout)
    latency = query_vector(url, p95_latency_ms(scope, window), timeout)

    def figures(version: str) -> Figures:
        ratio = success.get(version)
        return Figures(version, requests.get(version), None if ratio is None else 100 * ratio, latency.get(version))

    return figures(candidates.canary), figures(candidates.stable)


# ---- the decision ------------------------------------------------------------------------------

class Action(StrEnum):
    ADVANCE = "ADVANCE"
    HOLD = "HOLD"
    ROLLBACK = "ROLLBACK"
    COMPLETE = "COMPLETE"


EXIT_CODES = {Action.ADVANCE: EXIT_DONE, Action.COMPLETE: EXIT_DONE, Action.HOLD: EXIT_HOLD, Action.ROLLBACK: EXIT_ROLLBACK}


@dataclass(frozen=True)
class Bars:
    """The thresholds a canary is held to, resolved for one service against its stable version's figures."""

    min_requests: int
    min_success_percent: float
    max_success_drop_points: float
    max_p95_ms: float
    max_latency_increase_percent: float
    latency_tolerance_ms: float

    @classmethod
    def of(cls, canary: CanarySettings, level: ServiceLevel) -> Bars:
        return cls(canary.min_requests, level.min_success_rate_percent, canary.max_success_rate_drop_percent,
                   level.max_p95_latency_ms, canary.max_latency_increase_percent, canary.latency_tolerance_ms)

    def success_floor(self, stable: Figures) -> float | None:
        return None if stable.success_percent is None else stable.success_percent - self.max_success_drop_points

    def latency_ceiling(self, stable: Figures) -> float | None:
        if stable.p95_ms is None:
            return None
        return max(stable.p95_ms * (1 + self.max_latency_increase_percent / 100), stable.p95_ms + self.latency_tolerance_ms)

    @property
    def latency_allowance(self) -> str:
        return f"+{self.max_latency_increase_percent:g}%, at least +{_ms(self.latency_tolerance_ms)}"


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    weights: dict[str, int]  # every weight after the decision; equal to the current ones when nothing moves

    def changes(self, current: Mapping[str, int]) -> dict[str, int]:
        return {version: weight for version, weight in self.weights.items() if current.get(version) != weight}


def decide_before_measuring(candidates: Candidates, steps: Sequence[int]) -> Decision | None:
    """Canaries that no figure could move, so Prometheus is not asked: one not started (weight 0) and one at 100."""
    canary, stable, weight = candidates.canary, candidates.stable, candidates.weight(candidates.canary)
    if weight == 0:
        # After a rollback the canary sits at 0; starting it again is a decision for a reviewed edit, not for metrics.
        first, set_weight = steps[0], f"pulumi config set --stack {candidates.stack} --path services.{candidates.service}.weights"
        return Decision(Action.HOLD, (
            f"{canary} has weight 0, so it is not being promoted: starting (or restarting) a canary is a reviewed change, "
            f"for example `{set_weight}.{canary} {first}` and `{set_weight}.{stable} {candidates.weight(stable) - first}`; "
            "then run this again",), dict(candidates.weights))
    if weight == 100:
        return Decision(Action.COMPLETE, (f"{canary} already takes 100% of the traffic: promotion is complete",), dict(candidates.weights))
    return None


def decide(candidates: Candidates, canary: Figures, stable: Figures, bars: Bars, steps: Sequence[int]) -> Decision:
    current = dict(candidates.weights)
    shortfalls = _missing_or_too_little(canary, stable, bars)
    if shortfalls:
        return Decision(Action.HOLD, (*shortfalls, "no weight moves on missing or insufficient data"), current)
    breaches = _breaches(canary, stable, bars)
    if breaches:
        return Decision(Action.ROLLBACK, tuple(breaches), rolled_back(candidates))
    weights, note = advanced(candidates, steps)
    if weights[canary.version] == candidates.weight(canary.version):
        return Decision(Action.HOLD, (f"{note}; name a version with weight to give in --stable",), current)
    healthy = (f"{canary.version} meets every bar: success rate {canary.success_percent:.2f}%, p95 {_ms(canary.p95_ms)} "
               f"over {canary.requests:.0f} requests")
    return Decision(Action.ADVANCE, (healthy, *([note] if note else [])), weights)


def _missing_or_too_little(canary: Figures, stable: Figures, bars: Bars) -> list[str]:
    reasons = []
    for figures in (canary, stable):
        if figures.missing():
            reasons.append(f"Prometheus has no {', '.join(figures.missing())} for {figures.version} in the window")
        elif figures.requests < bars.min_requests:
            # increase() extrapolates; round down so 99.6 never reads as the 100 it falls short of.
            reasons.append(f"{figures.version} served {math.floor(figures.requests)} requests in the window, fewer than the "
                           f"{bars.min_requests} a decision needs (canary.minRequests)")
    starved = not canary.missing() and canary.requests < bars.min_requests
    if starved and not stable.missing() and stable.requests >= bars.min_requests:
        # Requests that never reach the canary (pods not ready, crashing or ejected) fail at the callers and are not
        # counted where they are served: a quiet canary next to a busy stable version may be a broken one.
        reasons.append(f"{stable.version} is busy while {canary.version} is quiet: check that {canary.version}'s pods are "
                       "ready and not ejected before waiting for more traffic")
    return reasons


def _breaches(canary: Figures, stable: Figures, bars: Bars) -> list[str]:
    name, base = canary.version, stable.version
    success, p95 = canary.success_percent, canary.p95_ms
    floor, ceiling = bars.success_floor(stable), bars.latency_ceiling(stable)
    checks = [
        (success < bars.min_success_percent,
         f"{name}'s success rate {success:.2f}% is below the service level's {bars.min_success_percent:.2f}% (serviceLevel.minSuccessRatePercent)"),
        (success < floor,
         f"{name}'s success rate {success:.2f}% trails {base}'s {stable.success_percent:.2f}% by "
         f"{_points(stable.success_percent - success, '.2f')}, more than the {_points(bars.max_success_drop_points)} allowed "
         "(canary.maxSuccessRateDropPercent)"),
        (p95 > bars.max_p95_ms,
         f"{name}'s p95 latency {_ms(p95)} is above the service level's {_ms(bars.max_p95_ms)} (serviceLevel.maxP95LatencyMs)"),
        (p95 > ceiling,
         f"{name}'s p95 latency {_ms(p95)} is above {base}'s {_ms(stable.p95_ms)} {bars.latency_allowance} = "
         f"{_ms(ceiling)} (canary.maxLatencyIncreasePercent, canary.latencyToleranceMs)"),
    ]
    return [reason for fired, reason in checks if fired]


def rolled_back(candidates: Candidates) -> dict[str, int]:
    weights = dict(candidates.weights)
    weights[candidates.stable] = candidates.weight(candidates.stable) + candidates.weight(candidates.canary)
    weights[candidates.canary] = 0
    return weights


def advanced(candidates: Candidates, steps: Sequence[int]) -> tuple[dict[str, int], str | None]:
    """The canary at the next step above its weight, paid for by the stable version alone; a note if stable ran short."""
    canary, stable = candidates.canary, candidates.stable
    current, available = candidates.weight(canary), candidates.weight(stable)
    target = next(step for step in steps if step > current)  # steps end at 100 and the canary is below it
    gain = min(target - current, available)
    weights = dict(candidates.weights)
    weights[canary], weights[stable] = current + gain, available - gain
    if gain == target - current:
        return weights, None
    others = ", ".join(f"{version} {weight}%" for version, weight in candidates.weights.items() if version not in (canary, stable))
    return weights, (f"{stable} had only {available}% to give, so {canary} stops at {current + gain}% instead of the "
                     f"{target}% step (other versions keep their weights: {others})")


# ---- editing the stack file in place -----------------------------------------------------------

@dataclass(frozen=True)
class Splice:
    start: int
    end: int
    text: str


def edit_weights(text: str, service: str, changes: Mapping[str, int]) -> str:
    """The stack file's text with services.<service>.weights set to `changes`, every other character kept."""
    weights = _weights_node(text, service)
    existing = {key.value: value for key, value in weights.value}
    splices = [_replace(existing[version], weight) for version, weight in changes.items() if version in existing]
    added = {version: weight for version, weight in changes.items() if version not in existing}
    if added:
        splices.append(_insert(text, weights, added))
    for splice in sorted(splices, key=lambda splice: splice.start, reverse=True):
        text = text[:splice.start] + splice.text + text[splice.end:]
    return text


def _weights_node(text: str, service: str) -> yaml.MappingNode:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for key in ("config", SERVICES_KEY, service, "weights"):
        child = _child(node, key)
        if child is None:
            raise CommandError(f"the stack file has no {PROJECT}:services.{service}.weights mapping to edit (missing '{key}'); "
                                 f"set the weights with `pulumi config set --path services.{service}.weights.<version> <weight>`")
        node = child
    if not isinstance(node, yaml.MappingNode):
        raise CommandError(f"{PROJECT}:services.{service}.weights in the stack file is not a mapping of version to weight")
    return node


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key_node, value in node.value if key_node.value == key), None)


def _replace(node: yaml.Node, weight: int) -> Splice:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:int":
        raise CommandError(f"the weight on line {node.start_mark.line + 1} of the stack file is not a plain integer; fix it by hand")
    return Splice(node.start_mark.index, node.end_mark.index, str(weight))


def _insert(text: str, weights: yaml.MappingNode, added: Mapping[str, int]) -> Splice:
    entries = [f"{_key(version)}: {weight}" for version, weight in added.items()]
    if weights.flow_style:
        if weights.value:  # right after the last value, so spacing before '}' and a trailing comma stay where they are
            at = weights.value[-1][1].end_mark.index
            return Splice(at, at, "".join(f", {entry}" for entry in entries))
        at = weights.end_mark.index - 1  # inside '{}'
        return Splice(at, at, ", ".join(entries))
    indent = " " * weights.value[0][0].start_mark.column
    newline = "\r\n" if "\r\n" in text else "\n"
    last_value_end = weights.value[-1][1].end_mark.index
    line_end = text.find("\n", last_value_end)
    lines = "".join(f"{indent}{entry}{newline}" for entry in entries)
    if line_end == -1:  # the weights end the file, without a final newline
        return Splice(len(text), len(text), newline + lines.removesuffix(newline))
    return Splice(line_end + 1, line_end + 1, lines)


def _key(version: str) -> str:
    # Version names like `on`, `no` or `1` would not read back as text unquoted.
    plain = yaml.safe_load(f"{version}: 0")
    return version if isinstance(plain, dict) and list(plain) == [version] else json.dumps(version)


def check_edit(before: str, after: str, service: str, changes: Mapping[str, int]) -> None:
    """Defence in depth: the edited file must parse to the original with exactly the changed weights."""
    expected = copy.deepcopy(yaml.safe_load(before))
    expected["config"][SERVICES_KEY][service]["weights"].update(changes)
    if yaml.safe_load(after) != expected:
        raise CommandError("editing the stack file would change more than the weights; nothing was written (please report this)")


def write_validated(stack: str, stack_file: Path, before: str, after: str) -> None:
    """Put `after` in place of the stack file only if the settings model still accepts it; atomic, file mode kept."""
    handle, temporary = tempfile.mkstemp(dir=stack_file.parent, prefix=f".{stack_file.name}.", suffix=".promote")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(after.encode("utf-8"))
        load_stack_settings(stack, Path(temporary), shown_as=stack_file.name)
        os.chmod(temporary, stack_file.stat().st_mode & 0o7777)
        if _read(stack_file) != before:
            raise CommandError(f"{stack_file.name} changed while the promotion ran; nothing was written, run it again")
        os.replace(temporary, stack_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read(path: Path) -> str:
    # Bytes, not read_text(): universal newlines would turn CRLF into LF and the edit would rewrite every line.
    return path.read_bytes().decode("utf-8")


# ---- what the run prints -----------------------------------------------------------------------

def _ms(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") + " ms"


def _points(value: float, spec: str = "g") -> str:
    return f"{value:{spec}} point{'' if value == 1 else 's'}"


def _or_no_data(value: float | None, show: Callable[[float], str]) -> str:
    return "no data" if value is None else show(value)


def header(candidates: Candidates, window: str, url: str) -> str:
    canary, stable = candidates.canary, candidates.stable
    return (f"Promotion of {candidates.service} on stack {candidates.stack}: canary {canary} ({candidates.weight(canary)}%) "
            f"against stable {stable} ({candidates.weight(stable)}%), window {window}, Prometheus {url}")


def figure_lines(canary: Figures, stable: Figures, bars: Bars) -> list[str]:
    floor, ceiling = bars.success_floor(stable), bars.latency_ceiling(stable)
    rows = [
        ("requests", canary.requests, stable.requests, lambda value: f"{value:.0f}",
         f"each at least {bars.min_requests} (canary.minRequests)"),
        ("success rate", canary.success_percent, stable.success_percent, lambda value: f"{value:.2f}%",
         f"{canary.version} at least {bars.min_success_percent:.2f}% (service level) and "
         f"{_or_no_data(floor, lambda value: f'{value:.2f}%')} ({stable.version} - {_points(bars.max_success_drop_points)})"),
        ("p95 latency", canary.p95_ms, stable.p95_ms, _ms,
         f"{canary.version} at most {_ms(bars.max_p95_ms)} (service level) and "
         f"{_or_no_data(ceiling, _ms)} ({stable.version} {bars.latency_allowance})"),
    ]
    return [f"  {name:<13} {canary.version} {_or_no_data(ours, show):<11} {stable.version} {_or_no_data(theirs, show):<11} bar: {bar}"
            for name, ours, theirs, show, bar in rows]


def decision_lines(decision: Decision, candidates: Candidates) -> list[str]:
    canary, stable, service = candidates.canary, candidates.stable, candidates.service
    before, after = candidates.weight, lambda version: decision.weights.get(version, 0)
    if decision.action in (Action.ADVANCE, Action.ROLLBACK):
        summary = (f"{service} {canary} {before(canary)}% -> {after(canary)}% "
                   f"({stable} {before(stable)}% -> {after(stable)}%)")
    elif decision.action is Action.HOLD:
        summary = f"{service} {canary} stays at {before(canary)}% ({stable} {before(stable)}%)"
    else:
        summary = f"{service} {canary} is at 100%"
    return [f"Decision: {decision.action} {summary}", *(f"  - {reason}" for reason in decision.reasons)]


def ordered_changes(decision: Decision, candidates: Candidates) -> dict[str, int]:
    """The weights that change, canary first and stable second, as the decision line reads."""
    changes = decision.changes(candidates.weights)
    first = [version for version in (candidates.canary, candidates.stable) if version in changes]
    return {version: changes[version] for version in [*first, *(v for v in changes if v not in first)]}


def edit_line(stack_file: Path, candidates: Candidates, changes: Mapping[str, int]) -> str:
    def was(version: str) -> str:
        return str(candidates.weights[version]) if version in candidates.weights else "(not set)"

    edits = ", ".join(f"services.{candidates.service}.weights.{version} {was(version)} -> {weight}" for version, weight in changes.items())
    return f"Edited {stack_file.name}: {edits}"


def next_step_lines(decision: Decision, stack: str) -> list[str]:
    if decision.action is Action.ROLLBACK:
        return [f"Next: apply the rollback now (`make up STACK={stack}`, or run this with --apply); it is urgent, then open a pull request."]
    return [f"Next: open a pull request with this change; once merged, `pulumi up` the {stack} stack (or run this with --apply)."]


def retirement_lines(settings: Settings, candidates: Candidates) -> list[str]:
    service = settings.services[candidates.service]
    old = [version for version in service.versions if version != candidates.canary]
    lines = [f"Once {candidates.canary} has proven itself, retire {', '.join(old)} in a reviewed change:"]
    for version in old:
        lines += [f"  pulumi config rm --stack {candidates.stack} --path services.{candidates.service}.{key}.{version}"
                  for key in ("versions", "weights")]
        lines += [f"  and remove services.{candidates.service}.matchRoutes[{index}] (it routes to {version})"
                  for index, route in enumerate(service.match_routes) if route.version == version]
    return lines


# ---- pulumi up through the Automation API ------------------------------------------------------

def apply(stack: str, stack_file: Path, targets: Sequence[str] = ()) -> int | None:
    """`pulumi up` with the policy pack, as scripts/up.sh runs it (only `targets`, when given); an exit code if it failed."""
    print(f"Applying: pulumi up --stack {stack} --policy-pack policy" + "".join(f" --target {urn}" for urn in targets))
    # A stack file inside another project folder (a copy of the program) is run there; every command the Automation
    # API runs for the update then reads that stack file, its encryption salt included.
    project = stack_file.parent if (stack_file.parent / "Pulumi.yaml").is_file() else ROOT
    in_place = stack_file.resolve() == default_stack_file(stack, project).resolve()
    try:
        target = automation.select_stack(stack_name=stack, work_dir=str(project),
                                         opts=automation.LocalWorkspaceOptions(env_vars=_backend_defaults()))
        target.up(on_output=print, policy_packs=[str(ROOT / "policy")], **({"target": list(targets)} if targets else {}),
                  **({} if in_place else {"config_file": str(stack_file)}))
    except Exception as error:  # the CLI's failures come in several types; each one leaves the edit in place
        print(f"error: pulumi up failed: {error}\nThe edit to {stack_file.name} stays; fix the cause and run "
              f"`make up STACK={stack}`, or revert the file.", file=sys.stderr)
        return EXIT_UP_FAILED
    return None


def _backend_defaults() -> dict[str, str]:
    """scripts/up.sh's local state and generated passphrase, for whatever the environment does not set itself."""
    defaults = {}
    if "PULUMI_BACKEND_URL" not in os.environ:
        defaults["PULUMI_BACKEND_URL"] = local_backend_url(ROOT / ".pulumi-state")
    passphrase = ROOT / ".pulumi-passphrase"
    if not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & set(os.environ) and passphrase.is_file():
        defaults["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase)
    return defaults


# ---- the command -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.promote", description=__doc__.split("\n", 1)[0],
                                     epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="stack name, e.g. prod (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--service", required=True, help="service whose canary is judged, e.g. hotel")
    parser.add_argument("--canary", help="canary version (default: the last one under services.<service>.versions)")
    parser.add_argument("--stable", help="version to compare with (default: the other version with the largest weight)")
    parser.add_argument("--prometheus", help="Prometheus base URL (default: canary.prometheusUrl, http://localhost:9090)")
    parser.add_argument("--apply", action="store_true", help="after an advance or rollback, run `pulumi up` for the stack")
    parser.add_argument("--stack-file", type=Path, help="stack file to read and edit (default: Pulumi.<stack>.yaml in the repository)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each Prometheus query (default 10)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Judgement:
    """One service's canary judged: the decision, the report a person reads, and the stack file it leads to."""

    settings: Settings
    candidates: Candidates
    decision: Decision
    report: list[str]
    changes: dict[str, int]
    before: str
    after: str  # equal to `before` unless the decision moves a weight


def judge(stack: str, service: str, stack_file: Path, prometheus: str | None = None, canary: str | None = None,
          stable: str | None = None, timeout: float = 10.0) -> Judgement:
    if not stack_file.is_file():
        raise CommandError(f"{stack_file} does not exist; create the stack with `pulumi stack init {stack}` or pass --stack-file")
    before = _read(stack_file)
    settings = load_stack_settings(stack, stack_file)
    candidates = choose_candidates(settings, stack, service, canary, stable, stack_file.name)
    level = settings.service_level_of(service)
    bars, url = Bars.of(settings.canary, level), prometheus or settings.canary.prometheus_url
    report = [header(candidates, level.window, url)]
    decision = decide_before_measuring(candidates, settings.canary.steps)
    if decision is None:
        measured_canary, measured_stable = read_figures(url, settings.app_namespace, candidates, level.window, timeout)
        report += figure_lines(measured_canary, measured_stable, bars)
        decision = decide(candidates, measured_canary, measured_stable, bars, settings.canary.steps)
    report += decision_lines(decision, candidates)
    if decision.action is Action.COMPLETE or decision.weights.get(candidates.canary) == 100:
        report += retirement_lines(settings, candidates)
    changes, after = {}, before
    if decision.action in (Action.ADVANCE, Action.ROLLBACK):
        changes = ordered_changes(decision, candidates)
        after = edit_weights(before, service, changes)
        check_edit(before, after, service, changes)
    return Judgement(settings, candidates, decision, report, changes, before, after)


def promote(args: argparse.Namespace, stack_file: Path) -> int:
    judged = judge(args.stack, args.service, stack_file, args.prometheus, args.canary, args.stable, args.timeout)
    decision, candidates, changes = judged.decision, judged.candidates, judged.changes
    print("\n".join(judged.report))
    if changes:
        write_validated(args.stack, stack_file, judged.before, judged.after)
        print(edit_line(stack_file, candidates, changes))
        if not args.apply:
            print("\n".join(next_step_lines(decision, args.stack)))
        elif (failed := apply(args.stack, stack_file)) is not None:
            return failed
    return EXIT_CODES[decision.action]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return promote(args, args.stack_file or default_stack_file(args.stack))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
