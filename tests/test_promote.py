"""Metric-gated promotion (tools/promote.py) against a fake Prometheus: a local HTTP server answering with
hand-written responses in the shape of Prometheus' query API."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pulumi.automation
import pytest

from builders.signals import Scope, p95_latency_ms, requests_served, success_ratio
from config.settings import Settings
from tools import promote
from tools.prometheus import PORT_FORWARD
from tools.stack_run import ROOT

SIGNALS = {"requests": requests_served, "success": success_ratio, "p95": p95_latency_ms}
# A healthy canary: enough traffic, success rate and p95 well within the bars of both stacks.
HEALTHY = {
    "requests": {"v1": "4810.29", "v2": "532"},
    "success": {"v1": "0.99916", "v2": "0.99871"},
    "p95": {"v1": "180", "v2": "212.4"},
}
HOTEL = "    hotel:\n"  # anchor: the hotel section of a stack file (destination and carrental carry identical weight lines)
PROD_WEIGHTS = "{v1: 90, v2: 10}"


# ---- the fake Prometheus -----------------------------------------------------------------------

@dataclass
class FakePrometheus:
    """Answers /api/v1/query for the three signals of one service, in the vector shape Prometheus' API returns
    (written by hand: no Prometheus runs here)."""

    url: str = ""
    namespace: str = "bee-travels"
    window: str = "5m"
    answers: dict[str, dict[str, str | None]] = field(default_factory=lambda: {name: dict(values) for name, values in HEALTHY.items()})
    raw_reply: tuple[int, bytes] | None = None  # replaces every answer (errors, wrong servers)
    queries: list[str] = field(default_factory=list)

    def set(self, **changes: dict[str, str | None]) -> None:
        """Change some versions' values; None drops the version's series."""
        for signal, values in changes.items():
            self.answers[signal].update(values)

    def reply(self, query: str) -> tuple[int, bytes]:
        self.queries.append(query)
        if self.raw_reply:
            return self.raw_reply
        # Which signal is asked for is recognised by the query text that builders/signals.py builds.
        by_query = {build(Scope(self.namespace, "hotel"), self.window): name for name, build in SIGNALS.items()}
        if query not in by_query:
            return 400, json.dumps({"status": "error", "errorType": "bad_data", "error": f"unexpected query {query}"}).encode()
        values = self.answers[by_query[query]]
        result = [{"metric": {"destination_service_name": "hotel", "destination_version": version}, "value": [1700000000.123, value]}
                  for version, value in values.items() if value is not None]
        return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@contextmanager
def serving(reply: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """A local HTTP server answering Prometheus' /api/v1/query with `reply(query)`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            request = urlparse(self.path)
            status, body = reply(parse_qs(request.query).get("query", [""])[0]) if request.path == "/api/v1/query" else (404, b"")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    with serving(fake.reply) as fake.url:
        yield fake


# ---- stack files and runs ----------------------------------------------------------------------

def splice(text: str, anchor: str, old: str, new: str) -> str:
    """`text` with the first `old` after `anchor` replaced: the expected edit, by position."""
    at = text.index(old, text.index(anchor))
    return text[:at] + new + text[at + len(old):]


def stack_copy(tmp_path: Path, stack: str = "prod", edits: tuple[tuple[str, str, str], ...] = (), append: str = "") -> Path:
    path = tmp_path / f"Pulumi.{stack}.yaml"
    shutil.copyfile(ROOT / path.name, path)
    text = path.read_bytes().decode()
    for anchor, old, new in edits:
        text = splice(text, anchor, old, new)
    path.write_bytes((text + append).encode())
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str
    before: str
    after: str


@pytest.fixture
def run(prometheus, capsys) -> Callable[..., Run]:
    def run_promote(stack_file: Path, *args: str, service: str = "hotel") -> Run:
        before = stack_file.read_bytes().decode()
        stack = stack_file.name.split(".")[1]
        code = promote.main(["--stack", stack, "--service", service, "--stack-file", str(stack_file), "--prometheus", prometheus.url, *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err, before, stack_file.read_bytes().decode())

    return run_promote


def hotel_weights(stack_file: Path) -> dict[str, int]:
    """The weights as the settings model reads the (edited) file: it must still validate."""
    return promote.load_stack_settings(stack_file.name.split(".")[1], stack_file).services["hotel"].weights


# ---- advance -----------------------------------------------------------------------------------

SERVICE_WINDOW = (HOTEL, "      replicas: 2\n", "      replicas: 2\n      serviceLevel: {window: 10m}\n")
OTHER_NAMESPACE = "  bee-travels-mesh:appNamespace: travels\n"


@pytest.mark.parametrize(("stack", "edits", "append", "scope", "old", "new", "decision", "edited"), [
    ("prod", (), "", ("bee-travels", "5m"), PROD_WEIGHTS, "{v1: 75, v2: 25}", "ADVANCE hotel v2 10% -> 25% (v1 90% -> 75%)",
     "Edited Pulumi.prod.yaml: services.hotel.weights.v2 10 -> 25, services.hotel.weights.v1 90 -> 75"),
    ("dev", (), "", ("bee-travels", "5m"), "{v1: 50, v2: 50}", "{v1: 0, v2: 100}", "ADVANCE hotel v2 50% -> 100% (v1 50% -> 0%)",
     "Edited Pulumi.dev.yaml: services.hotel.weights.v2 50 -> 100, services.hotel.weights.v1 50 -> 0"),
    # The queries cover the stack's app namespace over the service's own window (its serviceLevel override).
    ("prod", (SERVICE_WINDOW,), OTHER_NAMESPACE, ("travels", "10m"), PROD_WEIGHTS,
     "{v1: 75, v2: 25}", "ADVANCE hotel v2 10% -> 25%", "services.hotel.weights.v2 10 -> 25"),
])
def test_advance_moves_the_canary_one_step_and_changes_nothing_else(tmp_path, prometheus, run, stack, edits, append, scope, old, new,
                                                                   decision, edited):
    prometheus.namespace, prometheus.window = scope
    stack_file = stack_copy(tmp_path, stack, edits, append)
    result = run(stack_file)
    assert result.code == 0, result.err
    assert result.after == splice(result.before, HOTEL, old, new)
    assert f"Decision: {decision}" in result.out and edited in result.out
    assert "v2 532" in result.out and "99.87%" in result.out and "212.4 ms" in result.out
    assert len(prometheus.queries) == 3
    new_weights = hotel_weights(stack_file)
    assert new_weights == {version: int(weight) for version, weight in (pair.split(": ") for pair in new.strip("{}").split(", "))}


# ---- hold --------------------------------------------------------------------------------------

@pytest.mark.parametrize("quiet", ["v2", "v1"])
def test_hold_on_too_little_traffic_edits_nothing(tmp_path, prometheus, run, quiet):
    prometheus.set(requests={quiet: "40.2"})
    result = run(stack_copy(tmp_path))
    assert result.code == 3
    assert result.after == result.before
    assert f"{quiet} served 40 requests in the window, fewer than the 100" in result.out
    assert "Decision: HOLD hotel v2 stays at 10% (v1 90%)" in result.out


@pytest.mark.parametrize(("answers", "missing"), [
    ({"requests": {"v2": None}}, "request count for v2"),
    ({name: {"v1": None, "v2": None} for name in SIGNALS}, "request count, success rate, p95 latency for v2"),
    ({"p95": {"v2": "NaN"}}, "p95 latency for v2"),
    ({"success": {"v1": "+Inf"}}, "success rate for v1"),
])
def test_hold_on_missing_data_edits_nothing(tmp_path, prometheus, run, answers, missing):
    prometheus.set(**answers)
    result = run(stack_copy(tmp_path))
    assert result.code == 3
    assert result.after == result.before
    assert f"Prometheus has no {missing} in the window" in result.out
    assert "no weight moves on missing or insufficient data" in result.out


def test_hold_on_a_canary_at_weight_zero(tmp_path, run):
    result = run(stack_copy(tmp_path, edits=((HOTEL, PROD_WEIGHTS, "{v1: 100, v2: 0}"),)))
    assert result.code == 3
    assert result.after == result.before
    assert "v2 has weight 0, so it is not being promoted" in result.out
    assert "--path services.hotel.weights.v2 10` and `pulumi config set --stack prod --path services.hotel.weights.v1 90`" in result.out


# ---- roll back ---------------------------------------------------------------------------------

RULES = {
    "success below the service level": "is below the service level's 99.00% (serviceLevel.minSuccessRatePercent)",
    "success trails stable": "(canary.maxSuccessRateDropPercent)",
    "p95 above the service level": "is above the service level's 1000 ms (serviceLevel.maxP95LatencyMs)",
    "p95 above stable's": "(canary.maxLatencyIncreasePercent, canary.latencyToleranceMs)",
}
LOOSER_SERVICE_LEVEL = "  bee-travels-mesh:serviceLevel: {minSuccessRatePercent: 95}\n"


@pytest.mark.parametrize(("answers", "append", "fired", "figures"), [
    ({"success": {"v2": "0.95", "v1": "0.96"}}, "", {"success below the service level"}, "v2's success rate 95.00%"),
    # A looser service level, so only the comparison with stable can fire.
    ({"success": {"v2": "0.97", "v1": "0.999"}}, LOOSER_SERVICE_LEVEL, {"success trails stable"},
     "v2's success rate 97.00% trails v1's 99.90% by 2.90 points, more than the 1 point allowed"),
    ({"p95": {"v2": "1500", "v1": "1400"}}, "", {"p95 above the service level"}, "v2's p95 latency 1500 ms"),
    ({"p95": {"v2": "400", "v1": "200"}}, "", {"p95 above stable's"}, "v2's p95 latency 400 ms is above v1's 200 ms +25%, at least +10 ms = 250 ms"),
    ({"success": {"v2": "0.95", "v1": "0.999"}, "p95": {"v2": "1500", "v1": "200"}}, "", set(RULES), "by 4.90 points"),
])
def test_rollback_sends_the_canary_share_back_to_stable(tmp_path, prometheus, run, answers, append, fired, figures):
    prometheus.set(**answers)
    stack_file = stack_copy(tmp_path, append=append)
    result = run(stack_file)
    assert result.code == 4, result.err
    assert result.after == splice(result.before, HOTEL, PROD_WEIGHTS, "{v1: 100, v2: 0}")
    assert hotel_weights(stack_file) == {"v1": 100, "v2": 0}
    assert "Decision: ROLLBACK hotel v2 10% -> 0% (v1 90% -> 100%)" in result.out
    assert {name for name, text in RULES.items() if text in result.out} == fired
    assert figures in result.out


def test_rollback_inserts_a_weight_the_stable_version_did_not_have(tmp_path, prometheus, run):
    # v3 is reached only through a header route, so it has no weight key until it takes the canary's share.
    three_versions = ((HOTEL, "        v2: {tier: mongodb}\n", "        v2: {tier: mongodb}\n        v3: {tier: json}\n"),
                      (HOTEL, "          version: v2\n", "          version: v3\n"))
    prometheus.set(requests={"v3": "700"}, success={"v2": "0.9", "v3": "1"}, p95={"v3": "150"})
    stack_file = stack_copy(tmp_path, edits=three_versions)
    result = run(stack_file, "--canary", "v2", "--stable", "v3")
    assert result.code == 4, result.err
    assert result.after == splice(result.before, HOTEL, PROD_WEIGHTS, "{v1: 90, v2: 0, v3: 10}")
    assert "services.hotel.weights.v3 (not set) -> 10" in result.out
    assert hotel_weights(stack_file) == {"v1": 90, "v2": 0, "v3": 10}


# ---- complete ----------------------------------------------------------------------------------

def test_complete_at_100_suggests_retiring_the_old_version(tmp_path, run):
    result = run(stack_copy(tmp_path, edits=((HOTEL, PROD_WEIGHTS, "{v1: 0, v2: 100}"),)))
    assert result.code == 0
    assert result.after == result.before
    assert "promotion is complete" in result.out and "retire v1" in result.out
    assert "pulumi config rm --stack prod --path services.hotel.versions.v1\n" in result.out
    assert "pulumi config rm --stack prod --path services.hotel.weights.v1\n" in result.out


# ---- editing the file --------------------------------------------------------------------------

DOCUMENT = """# top comment: kept
config:
  bee-travels-mesh:services:
    hotel:
      versions:
        v1: {{tier: json}}  # stable
        v2: {{tier: mongodb}}
{weights}
      replicas: 2
  bee-travels-mesh:production: false
"""
BLOCK = """      weights:
        # the canary grows by steps
        v1: {v1}   # stable
        "v2": {v2}
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize(("weights", "changes", "expected"), [
    ("      weights: {v1: 90, v2: 10}", {"v2": 25, "v1": 75}, "      weights: {v1: 75, v2: 25}"),
    ("      weights: { v1: 90 ,v2: 10 }", {"v2": 25, "v1": 75}, "      weights: { v1: 75 ,v2: 25 }"),
    (BLOCK.format(v1=90, v2=10).rstrip("\n"), {"v2": 25, "v1": 75}, BLOCK.format(v1=75, v2=25).rstrip("\n")),
    ("      weights: {v1: 100}", {"v1": 90, "v2": 10}, "      weights: {v1: 90, v2: 10}"),
    ("      weights: {}", {"v1": 100}, "      weights: {v1: 100}"),
    ("      weights:\n        v1: 100  # all of it", {"v1": 90, "v2": 10}, "      weights:\n        v1: 90  # all of it\n        v2: 10"),
    ("      weights:\n           v1: 100", {"v1": 90, "v2": 10}, "      weights:\n           v1: 90\n           v2: 10"),
])
def test_edit_weights_changes_only_the_numbers(weights, changes, expected, newline):
    def document(weights_text: str) -> str:
        return DOCUMENT.format(weights=weights_text).replace("\n", newline)

    edited = promote.edit_weights(document(weights), "hotel", changes)
    assert edited == document(expected)
    promote.check_edit(document(weights), edited, "hotel", changes)


def test_check_edit_refuses_an_edit_that_touches_anything_else():
    before = DOCUMENT.format(weights="      weights: {v1: 90, v2: 10}")
    with pytest.raises(promote.CommandError, match="more than the weights"):
        promote.check_edit(before, before.replace("replicas: 2", "replicas: 3").replace("90", "75"), "hotel", {"v1": 75})


@pytest.mark.parametrize(("sabotage", "message"), [
    # An editor that touches another key is caught by comparing the parsed files...
    ("edit_weights", "would change more than the weights"),
    # ...and arithmetic that breaks the weights' sum is caught by the settings model, before the file is replaced.
    ("advanced", "weights add up to 105"),
])
def test_a_faulty_edit_never_reaches_the_file(tmp_path, run, monkeypatch, sabotage, message):
    faults = {
        "edit_weights": lambda text, service, changes: text.replace("replicas: 3", "replicas: 5").replace("{v1: 90, v2: 10}", "{v1: 75, v2: 25}"),
        "advanced": lambda candidates, steps: ({"v1": 80, "v2": 25}, None),
    }
    monkeypatch.setattr(promote, sabotage, faults[sabotage])
    stack_file = stack_copy(tmp_path)
    result = run(stack_file)
    assert result.code == 2
    assert result.after == result.before
    assert message in result.err
    assert [path.name for path in tmp_path.iterdir()] == [stack_file.name]  # no temporary file left behind


@pytest.mark.parametrize(("weights", "canary", "stable"), [
    ({"v1": 10, "v2": 80, "v3": 10}, "v3", "v2"),  # stable: the other version with the largest weight
    ({"v1": 45, "v2": 45, "v3": 10}, "v3", "v1"),  # a tie goes to the version listed first
])
def test_default_canary_is_the_last_version_and_stable_the_heaviest_other(weights, canary, stable):
    versions = {"v1": {"tier": "json"}, "v2": {"tier": "mongodb"}, "v3": {"tier": "json"}}
    settings = Settings.model_validate({"services": {"hotel": {"versions": versions, "weights": weights}}})
    chosen = promote.choose_candidates(settings, "prod", "hotel", None, None, "Pulumi.prod.yaml")
    assert (chosen.canary, chosen.stable) == (canary, stable)


@pytest.mark.parametrize(("weights", "action", "after", "note"), [
    ({"v1": 5, "v2": 10, "v3": 85}, "ADVANCE", {"v1": 0, "v2": 15, "v3": 85}, "v1 had only 5% to give, so v2 stops at 15% instead of the 25% step"),
    ({"v2": 10, "v3": 90}, "HOLD", {"v2": 10, "v3": 90}, "v1 had only 0% to give"),  # v1 has no weight key at all
])
def test_advance_clamps_when_stable_has_too_little_to_give(weights, action, after, note):
    candidates = promote.Candidates("prod", "hotel", canary="v2", stable="v1", weights=weights)
    healthy = {version: promote.Figures(version, 500, 99.9, 100) for version in ("v1", "v2")}
    bars = promote.Bars(min_requests=100, min_success_percent=99, max_success_drop_points=1, max_p95_ms=1000, max_latency_increase_percent=25,
                         latency_tolerance_ms=10)
    decision = promote.decide(candidates, healthy["v2"], healthy["v1"], bars, [10, 25, 50, 100])
    assert (decision.action, decision.weights) == (action, after)
    assert any(note in reason for reason in decision.reasons)


# ---- --apply -----------------------------------------------------------------------------------

@dataclass
class FakeAutomation:
    """Stands in for pulumi.automation.select_stack; records each stack selected and what the file held at `up`."""

    stack_file: Path
    fail: bool = False
    selected: list[tuple[str, str]] = field(default_factory=list)
    ups: list[tuple[dict, str]] = field(default_factory=list)

    def select_stack(self, stack_name: str, work_dir: str, **_options):
        self.selected.append((stack_name, work_dir))
        return self

    def up(self, **options):
        self.ups.append((options, self.stack_file.read_bytes().decode()))
        if self.fail:
            raise pulumi.automation.errors.CommandError(pulumi.automation.CommandResult("", "update failed", 255))


@pytest.mark.parametrize(("answers", "edits", "fail", "code", "applied"), [
    ({}, (), False, 0, True),                                                     # advance
    ({"success": {"v2": "0.5"}}, (), False, 4, True),                             # rollback: urgent, applied
    ({"requests": {"v2": "3"}}, (), False, 3, False),                             # hold: nothing to apply
    ({}, ((HOTEL, PROD_WEIGHTS, "{v1: 0, v2: 100}"),), False, 0, False),          # complete: nothing to apply
    ({}, (), True, 1, True),                                                      # advance, then `pulumi up` fails
])
def test_apply_runs_pulumi_up_only_after_an_edit(tmp_path, prometheus, run, monkeypatch, answers, edits, fail, code, applied):
    prometheus.set(**answers)
    stack_file = stack_copy(tmp_path, edits=edits)
    automation = FakeAutomation(stack_file, fail=fail)
    monkeypatch.setattr(pulumi.automation, "select_stack", automation.select_stack)
    result = run(stack_file, "--apply")
    assert result.code == code
    if not applied:
        assert automation.selected == [] and automation.ups == []
        return
    assert automation.selected == [("prod", str(ROOT))]
    [(options, file_at_up)] = automation.ups
    assert options["policy_packs"] == [str(ROOT / "policy")] and options["on_output"] is print
    assert options["config_file"] == str(stack_file)  # the copy, not the repository's Pulumi.prod.yaml
    assert file_at_up == result.after != result.before  # the edit is written before the update starts
    if fail:
        assert "pulumi up failed" in result.err and "stays" in result.err


# ---- errors ------------------------------------------------------------------------------------

def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(("reply", "message"), [
    ("unreachable", "cannot reach Prometheus at http://127.0.0.1:"),
    ((400, b'{"status":"error","errorType":"bad_data","error":"1:1: parse error"}'), "refused the query (HTTP 400, bad_data: 1:1: parse error)"),
    ((200, b"<html>Grafana</html>"), "did not answer like Prometheus' HTTP API"),
])
def test_prometheus_errors_exit_2_without_editing(tmp_path, prometheus, run, reply, message):
    stack_file = stack_copy(tmp_path)
    if reply == "unreachable":
        prometheus.url = _closed_port_url()
    else:
        prometheus.raw_reply = reply
    result = run(stack_file)
    assert result.code == 2
    assert result.after == result.before
    assert message in result.err
    assert reply != "unreachable" or PORT_FORWARD in result.err


@pytest.mark.parametrize(("service", "args", "edits", "message"), [
    ("nosuch", [], (), "Pulumi.prod.yaml: bee-travels-mesh:services.nosuch does not exist"),
    ("currencyexchange", [], (), "Pulumi.prod.yaml: bee-travels-mesh:services.currencyexchange.versions lists only v1"),
    ("hotel", ["--canary", "v9"], (), "Pulumi.prod.yaml: bee-travels-mesh:services.hotel.versions.v9 does not exist"),
    ("hotel", [], ((HOTEL, PROD_WEIGHTS, "{v1: 90, v2: 20}"),), "bee-travels-mesh:services.hotel.weights: weights add up to 110"),
])
def test_config_errors_exit_2_naming_the_stack_file_and_key(tmp_path, prometheus, run, service, args, edits, message):
    stack_file = stack_copy(tmp_path, edits=edits)
    result = run(stack_file, *args, service=service)
    assert result.code == 2
    assert result.after == result.before
    assert message in result.err and "Pulumi.prod.yaml" in result.err
    assert prometheus.queries == []


def test_the_port_forward_hint_is_the_one_the_stack_prints():
    from tools.stack_run import run_stack

    assert run_stack("prod").outputs["observability"]["prometheus"].startswith(PORT_FORWARD + " ")


@pytest.mark.parametrize(("stable_ms", "canary_ms", "action"), [
    (5, 8, "ADVANCE"),      # +60%, but 3 ms: within the absolute tolerance, not a regression
    (5, 16, "ROLLBACK"),    # 11 ms slower: past both the 25% and the 10 ms allowance
    (200, 240, "ADVANCE"),  # +20%
    (200, 260, "ROLLBACK"),  # +30%
])
def test_latency_is_judged_by_percentage_with_an_absolute_tolerance(stable_ms, canary_ms, action):
    candidates = promote.Candidates("prod", "hotel", canary="v2", stable="v1", weights={"v1": 90, "v2": 10})
    bars = promote.Bars(min_requests=100, min_success_percent=99, max_success_drop_points=1, max_p95_ms=1000,
                        max_latency_increase_percent=25, latency_tolerance_ms=10)
    decision = promote.decide(candidates, promote.Figures("v2", 500, 99.9, canary_ms), promote.Figures("v1", 5000, 99.9, stable_ms),
                              bars, [10, 25, 50, 100])
    assert decision.action == action


def test_reaching_100_says_how_to_retire_the_old_version(tmp_path, prometheus, run):
    result = run(stack_copy(tmp_path, "dev"))
    assert "ADVANCE hotel v2 50% -> 100%" in result.out
    assert "pulumi config rm --stack dev --path services.hotel.versions.v1" in result.out


def test_a_quiet_canary_beside_a_busy_stable_version_is_called_out(tmp_path, prometheus, run):
    prometheus.set(requests={"v2": "3", "v1": "4810"})
    result = run(stack_copy(tmp_path))
    assert result.code == 3 and result.after == result.before
    assert "v2 served 3 requests" in result.out and "check that v2's pods are ready" in result.out
