"""The promotion loop: every canary of a stack judged on its metrics, each move a pull request, git the only state.

    python -m tools.promotion_loop --stack prod [--repo .] [--base main] [--prometheus URL] [--forge github]

For every service with a canary between 0% and 100% (see tools/promote.py for the judging):

  ADVANCE   a pull request (branch promote/<stack>-<service>) with the one weight change and the figures beside
            the bars in its body; a later run that advances the same canary updates that pull request.
  ROLLBACK  with canary.autoRollback, `pulumi up` of that service's VirtualService alone, at once, then a pull
            request (branch rollback/<stack>-<service>) recording it; without, the pull request only.
  HOLD      nothing: too little traffic, missing figures, a canary at 0 (restarting is a human edit), or a weight
            younger than canary.minStepDuration (measured from the commit that last changed it).

A rollback, and an advance that reaches 100%, are also posted to the webhook in $CANARY_WEBHOOK_URL when set (kept as
a secret). Exit code: 0, or 1 if a rollback could not be applied.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from config.settings import PROJECT
from domain.units import parse_duration
from tools import promote
from tools.errors import CommandError
from tools.stack_files import default_stack_file

WEBHOOK_ENV = "CANARY_WEBHOOK_URL"
SERVICES_KEY = f"{PROJECT}:services"


class Forge(Protocol):
    """Where pull requests live: GitHub, or a local record for tests and dry runs."""

    def open_or_update(self, branch: str, base: str, title: str, body: str) -> str:
        """Open a pull request from `branch`, or update the open one; 'opened' or 'updated'."""


class GitHubForge:
    def open_or_update(self, branch: str, base: str, title: str, body: str) -> str:
        found = subprocess.run(["gh", "pr", "list", "--head", branch, "--state", "open", "--json", "number"],
                               capture_output=True, text=True, check=True)
        numbers = [pr["number"] for pr in json.loads(found.stdout or "[]")]
        if numbers:
            subprocess.run(["gh", "pr", "edit", str(numbers[0]), "--title", title, "--body", body], check=True)
            return "updated"
        subprocess.run(["gh", "pr", "create", "--head", branch, "--base", base, "--title", title, "--body", body], check=True)
        return "opened"


@dataclass
class LocalForge:
    """Pull requests as a JSON file: branch -> {base, title, body, revisions}."""

    path: Path

    def records(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def open_or_update(self, branch: str, base: str, title: str, body: str) -> str:
        records = self.records()
        outcome = "updated" if branch in records else "opened"
        revisions = records.get(branch, {}).get("revisions", 0) + 1
        records[branch] = {"base": base, "title": title, "body": body, "revisions": revisions}
        self.path.write_text(json.dumps(records, indent=2, sort_keys=True))
        return outcome


@dataclass(frozen=True)
class Outcome:
    service: str
    action: str
    detail: str


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _weights_at(repo: Path, revision: str, relative: str, service: str) -> dict | None:
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{relative}"], capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        return None
    services = ((yaml.safe_load(shown.stdout) or {}).get("config") or {}).get(SERVICES_KEY) or {}
    return (services.get(service) or {}).get("weights")


def last_weight_change(repo: Path, stack_file: Path, service: str) -> float | None:
    """When the service's weights last changed in git: the newest commit whose weights differ from its parent's."""
    relative = str(stack_file.resolve().relative_to(repo.resolve()))
    for line in _git(repo, "log", "--format=%H %ct", "--", relative).splitlines():
        commit, stamp = line.split()
        if _weights_at(repo, commit, relative, service) != _weights_at(repo, f"{commit}^", relative, service):
            return float(stamp)
    return None


def canary_services(stack_file: Path) -> list[str]:
    """Services whose canary could move: more than one version, the last one weighted strictly between 0 and 100."""
    services = ((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}).get(SERVICES_KEY) or {}
    found = []
    for name, service in services.items():
        versions, weights = list((service or {}).get("versions") or {}), (service or {}).get("weights") or {}
        if len(versions) > 1 and 0 < weights.get(versions[-1], 0) < 100:
            found.append(name)
    return found


def _commit_on_branch(repo: Path, base: str, branch: str, relative: str, text: str, message: str) -> None:
    """`branch` = `base` plus one commit with the stack file's new text; pushed when the repository has a remote."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        _git(repo, "worktree", "add", "--force", "-B", branch, str(tree), base)
        try:
            (tree / relative).write_text(text)
            _git(tree, "add", relative)
            _git(tree, "-c", "user.name=promotion loop", "-c", "user.email=promotion-loop@localhost", "commit", "-q", "-m", message)
            if _git(repo, "remote").strip():
                _git(tree, "push", "--force", "origin", f"{branch}:{branch}")
        finally:
            _git(repo, "worktree", "remove", "--force", str(tree))


def notify(text: str) -> None:
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - the team's own webhook
        pass


def route_urn(stack: str, service: str) -> str:
    return (f"urn:pulumi:{stack}::{PROJECT}::beetravels:app:MeshService$kubernetes:networking.istio.io/v1beta1:"
            f"VirtualService::traffic-{service}-virtual-service")


@dataclass
class Loop:
    stack: str
    repo: Path
    stack_file: Path
    base: str
    forge: Forge
    prometheus: str | None = None
    now: Callable[[], float] = time.time
    apply: Callable[..., int | None] = promote.apply

    def run_service(self, service: str) -> Outcome:
        judged = promote.judge(self.stack, service, self.stack_file, self.prometheus)
        action, canary = judged.decision.action, judged.candidates.canary
        if action is promote.Action.ADVANCE:
            baking = self._baking(judged, service)
            if baking:
                return Outcome(service, "HOLD", baking)
        if action not in (promote.Action.ADVANCE, promote.Action.ROLLBACK):
            return Outcome(service, str(action), judged.report[-1] if judged.report else "")
        weight = judged.decision.weights.get(canary, 0)
        relative = str(self.stack_file.resolve().relative_to(self.repo.resolve()))
        verb = "Roll back" if action is promote.Action.ROLLBACK else "Promote"
        title = f"{verb} {service} {canary} to {weight}% on {self.stack}"
        body = "\n".join([f"`python -m tools.promotion_loop --stack {self.stack}` judged this canary:", "", "```",
                          *judged.report, "```"])
        if action is promote.Action.ROLLBACK:
            return self._roll_back(judged, service, relative, title, body)
        branch = f"promote/{self.stack}-{service}"
        _commit_on_branch(self.repo, self.base, branch, relative, judged.after, title)
        state = self.forge.open_or_update(branch, self.base, title, body)
        if weight == 100:
            notify(f"{self.stack}: {service} {canary} reached 100%; {title} ({state} pull request)")
        return Outcome(service, "ADVANCE", f"pull request {state}: {title}")

    def _baking(self, judged: promote.Judgement, service: str) -> str | None:
        minimum = parse_duration(judged.settings.canary.min_step_duration)
        changed = last_weight_change(self.repo, self.stack_file, service)
        if not minimum or changed is None:
            return None
        left = minimum - (self.now() - changed)
        return f"the current weights have been live {int(self.now() - changed)} s of canary.minStepDuration {int(minimum)} s" if left > 0 else None

    def _roll_back(self, judged: promote.Judgement, service: str, relative: str, title: str, body: str) -> Outcome:
        applied = ""
        if judged.settings.canary.auto_rollback:
            with tempfile.TemporaryDirectory() as scratch:
                # The rolled-back file is applied from beside the repository's, targeting only this route.
                rolled = Path(scratch) / self.stack_file.name
                rolled.write_text(judged.after)
                failed = self.apply(self.stack, rolled, targets=[route_urn(self.stack, service)])
            if failed is not None:
                notify(f"{self.stack}: rolling back {service} FAILED to apply; {title} needs a person now")
                return Outcome(service, "ROLLBACK", "apply failed")
            applied = " (applied: only its VirtualService)"
        branch = f"rollback/{self.stack}-{service}"
        _commit_on_branch(self.repo, self.base, branch, relative, judged.after, title)
        state = self.forge.open_or_update(branch, self.base, title, body + ("\n\nApplied already: merge to record it." if applied else ""))
        notify(f"{self.stack}: {title}{applied}; pull request {state}")
        return Outcome(service, "ROLLBACK", f"pull request {state}{applied}")

    def run(self) -> list[Outcome]:
        return [self.run_service(service) for service in canary_services(self.stack_file)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.promotion_loop", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    parser.add_argument("--base", default="main", help="the branch pull requests go to")
    parser.add_argument("--prometheus", help="overrides canary.prometheusUrl")
    parser.add_argument("--forge", default="github", help="github, or local:<file.json> to record pull requests in a file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    forge: Forge = LocalForge(Path(args.forge.split(":", 1)[1])) if args.forge.startswith("local:") else GitHubForge()
    loop = Loop(args.stack, args.repo, default_stack_file(args.stack, args.repo), args.base, forge, args.prometheus)
    try:
        outcomes = loop.run()
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for outcome in outcomes:
        print(f"{outcome.service}: {outcome.action} {outcome.detail}")
    return 1 if any(outcome.detail == "apply failed" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
