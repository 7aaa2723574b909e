"""The promotion loop end to end: a local git repository, the Prometheus stand-in, pull requests recorded locally."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from test_promote import HOTEL, prometheus  # noqa: F401 - the Prometheus stand-in, as a fixture

from tools import promotion_loop
from tools.stack_run import ROOT

QUIET = "{v1: 100, v2: 0}"  # destination and carrental keep their canaries at 0: only hotel's is judged


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository holding prod's stack file as committed, with only hotel's canary live."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    for service in ("destination", "carrental"):
        text = _with_weights(text, service, QUIET)
    (root / "Pulumi.prod.yaml").write_text(text)
    _commit(root, "prod as committed")
    return root


def _with_weights(text: str, service: str, weights: str) -> str:
    """prod's stack file with one service's committed weights ({v1: 90, v2: 10}) replaced, the rest as written."""
    at = text.index("{v1: 90, v2: 10}", text.index(f"    {service}:\n"))
    return text[:at] + weights + text[at + len("{v1: 90, v2: 10}"):]


def _set_canary(repo: Path, **settings: object) -> None:
    stack_file = repo / "Pulumi.prod.yaml"
    text = stack_file.read_text()
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in settings.items())
    stack_file.write_text(text + f"  bee-travels-mesh:canary:\n{lines}")
    _commit(repo, "canary settings")


def _loop(repo: Path, prometheus, forge_file: Path, **kwargs) -> promotion_loop.Loop:  # noqa: F811
    return promotion_loop.Loop("prod", repo, repo / "Pulumi.prod.yaml", "main", promotion_loop.LocalForge(forge_file),
                               prometheus.url, **kwargs)


def test_an_advance_opens_one_pull_request_and_a_repeat_run_updates_it(repo, prometheus, tmp_path):  # noqa: F811
    forge = tmp_path / "prs.json"
    (outcome,) = _loop(repo, prometheus, forge).run()
    assert (outcome.service, outcome.action) == ("hotel", "ADVANCE") and "opened" in outcome.detail
    records = json.loads(forge.read_text())
    assert list(records) == ["promote/prod-hotel"]
    assert records["promote/prod-hotel"]["title"] == "Promote hotel v2 to 25% on prod"
    assert "ADVANCE" in records["promote/prod-hotel"]["body"] and "success rate" in records["promote/prod-hotel"]["body"]
    # The branch holds exactly the one-line weight change on top of main; main itself is untouched.
    diff = _git(repo, "diff", "main", "promote/prod-hotel")
    assert [line for line in diff.splitlines() if line.startswith(("+ ", "- "))] == [
        "-      weights: {v1: 90, v2: 10}", "+      weights: {v1: 75, v2: 25}"]
    assert "{v1: 90, v2: 10}" in (repo / "Pulumi.prod.yaml").read_text()
    (again,) = _loop(repo, prometheus, forge).run()
    assert "updated" in again.detail
    records = json.loads(forge.read_text())
    assert list(records) == ["promote/prod-hotel"] and records["promote/prod-hotel"]["revisions"] == 2


def test_a_weight_younger_than_the_bake_time_holds(repo, prometheus, tmp_path):  # noqa: F811
    _set_canary(repo, minStepDuration="1h")
    changed = promotion_loop.last_weight_change(repo, repo / "Pulumi.prod.yaml", "hotel")
    assert changed is not None
    (young,) = _loop(repo, prometheus, tmp_path / "prs.json", now=lambda: changed + 600).run()
    assert young.action == "HOLD" and "600 s of canary.minStepDuration 3600 s" in young.detail
    assert not (tmp_path / "prs.json").exists()
    (baked,) = _loop(repo, prometheus, tmp_path / "prs.json", now=lambda: changed + 3601).run()
    assert baked.action == "ADVANCE"


def test_the_bake_time_counts_from_the_commit_that_changed_the_weights_not_from_later_edits(repo):
    first = promotion_loop.last_weight_change(repo, repo / "Pulumi.prod.yaml", "hotel")
    _set_canary(repo, minStepDuration="30m")  # a later commit that leaves hotel's weights alone
    assert promotion_loop.last_weight_change(repo, repo / "Pulumi.prod.yaml", "hotel") == first


def test_a_rollback_is_applied_to_that_route_alone_then_recorded_and_announced(repo, prometheus, tmp_path):  # noqa: F811
    _set_canary(repo, autoRollback=True)
    prometheus.set(success={"v2": "0.9"})
    applied, posted = [], []
    with _webhook(posted):
        (outcome,) = _loop(repo, prometheus, tmp_path / "prs.json",
                           apply=lambda stack, path, targets: applied.append((stack, path.read_text(), targets))).run()
    assert outcome.action == "ROLLBACK" and "applied" in outcome.detail
    ((stack, text, targets),) = applied
    assert stack == "prod" and "{v1: 100, v2: 0}" in text[text.index(HOTEL):]
    assert targets == ["urn:pulumi:prod::bee-travels-mesh::beetravels:app:MeshService$kubernetes:networking.istio.io/v1beta1:"
                       "VirtualService::traffic-hotel-virtual-service"]
    records = json.loads((tmp_path / "prs.json").read_text())
    assert records["rollback/prod-hotel"]["title"] == "Roll back hotel v2 to 0% on prod"
    assert "Applied already" in records["rollback/prod-hotel"]["body"]
    assert len(posted) == 1 and "Roll back hotel v2 to 0% on prod" in posted[0]["text"]


def test_a_rollback_that_fails_to_apply_calls_a_person_and_opens_nothing(repo, prometheus, tmp_path):  # noqa: F811
    """The route could not be rolled back: the webhook says so and that it needs a person, no pull request claims a
    rollback that did not happen, and the command exits 1 (tools.promotion_loop.main)."""
    _set_canary(repo, autoRollback=True)
    prometheus.set(success={"v2": "0.9"})
    posted = []
    with _webhook(posted):
        (outcome,) = _loop(repo, prometheus, tmp_path / "prs.json", apply=lambda *args, **kwargs: 1).run()
    assert (outcome.action, outcome.detail) == ("ROLLBACK", "apply failed")
    assert not (tmp_path / "prs.json").exists()
    assert [post["text"] for post in posted] == [
        "prod: rolling back hotel FAILED to apply; Roll back hotel v2 to 0% on prod needs a person now"]


def test_an_advance_to_100_percent_is_announced_and_one_short_of_it_is_not(repo, prometheus, tmp_path):  # noqa: F811
    posted = []
    with _webhook(posted):
        (step,) = _loop(repo, prometheus, tmp_path / "prs.json").run()  # 10% -> 25%
    assert step.action == "ADVANCE" and posted == []
    stack_file = repo / "Pulumi.prod.yaml"
    stack_file.write_text(_with_weights(stack_file.read_text(), "hotel", "{v1: 50, v2: 50}"))
    _commit(repo, "hotel at 50%")
    with _webhook(posted):
        (last,) = _loop(repo, prometheus, tmp_path / "prs.json").run()
    assert last.action == "ADVANCE" and "Promote hotel v2 to 100% on prod" in last.detail
    assert [post["text"] for post in posted] == [
        "prod: hotel v2 reached 100%; Promote hotel v2 to 100% on prod (updated pull request)"]  # the step's one pull request


def test_without_auto_rollback_a_rollback_is_a_pull_request_only(repo, prometheus, tmp_path):  # noqa: F811
    prometheus.set(success={"v2": "0.9"})
    applied = []
    (outcome,) = _loop(repo, prometheus, tmp_path / "prs.json", apply=lambda *args, **kwargs: applied.append(args)).run()
    assert outcome.action == "ROLLBACK" and applied == []
    assert "Applied already" not in json.loads((tmp_path / "prs.json").read_text())["rollback/prod-hotel"]["body"]


@contextmanager
def _webhook(posted: list) -> Iterator[None]:
    """A local webhook receiver named in the loop's environment, collecting what it posts."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ[promotion_loop.WEBHOOK_ENV] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield
    finally:
        os.environ.pop(promotion_loop.WEBHOOK_ENV)
        server.shutdown()
