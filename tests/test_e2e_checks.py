"""The end-to-end checks' judgement, without a cluster: counting served requests and the split's tolerance."""

import argparse
import http.server
import json
import shutil
import subprocess
import threading

import pytest

from tools import e2e

# Envoy's /stats/prometheus as a hotel v2 pod reports it (trimmed labels; both reporters appear in real output).
STATS = """
# TYPE istio_requests_total counter
istio_requests_total{response_code="200",reporter="destination",source_app="bee-ui",destination_app="hotel",destination_version="v2",request_protocol="http"} 37
istio_requests_total{response_code="503",reporter="destination",source_app="bee-ui",destination_app="hotel",destination_version="v2",request_protocol="http"} 3
istio_requests_total{response_code="200",reporter="source",source_app="hotel",destination_app="mongodb",destination_version="unknown"} 80
istio_requests_total{response_code="200",reporter="destination",source_app="bee-ui",destination_app="destination",destination_version="v1"} 9
istio_request_duration_milliseconds_bucket{reporter="destination",destination_app="hotel",le="10"} 12
"""


def test_counts_only_requests_the_service_itself_served():
    assert e2e.requests_by_version(STATS, "hotel") == {"v2": 40}
    assert e2e.requests_by_version(STATS, "destination") == {"v1": 9}
    assert e2e.requests_by_version(STATS, "carrental") == {}


def test_a_split_close_to_its_weights_passes():
    shares = e2e.judge_split({"v1": 362, "v2": 38}, {"v1": 90, "v2": 10})
    assert all(share.ok for share in shares)


@pytest.mark.parametrize("observed", [{"v1": 200, "v2": 200}, {"v1": 400}, {"v1": 300, "v2": 100}])
def test_a_split_far_from_its_weights_fails(observed):
    shares = e2e.judge_split(observed, {"v1": 90, "v2": 10})
    assert not all(share.ok for share in shares)


def test_a_version_weighted_0_or_100_must_be_exact():
    assert all(s.ok for s in e2e.judge_split({"v1": 400}, {"v1": 100, "v2": 0}))
    assert not all(s.ok for s in e2e.judge_split({"v1": 399, "v2": 1}, {"v1": 100, "v2": 0}))
    assert not all(s.ok for s in e2e.judge_split({"v1": 399, "v3": 1}, {"v1": 100}))


def test_tolerance_is_four_standard_deviations_of_the_binomial():
    share = next(s for s in e2e.judge_split({"v1": 360, "v2": 40}, {"v1": 90, "v2": 10}) if s.version == "v2")
    assert share.allowed_deviation == pytest.approx(4 * (400 * 0.1 * 0.9) ** 0.5 + 0.5)


def test_enough_requests_for_the_smallest_weight_to_be_seen():
    assert e2e.minimum_requests({"v1": 90, "v2": 10}) == 160
    assert e2e.minimum_requests({"v1": 99, "v2": 1}) == 1600
    assert e2e.minimum_requests({"v1": 100}) == 16


def test_header_argument_must_be_name_equals_value():
    assert e2e.parse_header("x-bee-canary=true") == ("x-bee-canary", "true")
    with pytest.raises(argparse.ArgumentTypeError):
        e2e.parse_header("x-bee-canary")


def test_plan_from_dev_outputs_checks_each_split_and_header_route(dev):
    checks = e2e.plan(dev.outputs)
    splits = {c[2]: c[4] for c in checks if c[0] == "split"}
    weighted = {s for s, w in dev.outputs["canaryWeights"].items() if sum(1 for v in w.values() if v) > 1}
    assert set(splits) == weighted and weighted
    assert all(json.loads(splits[s]) == dev.outputs["canaryWeights"][s] for s in splits)
    headers = [c for c in checks if c[0] == "header"]
    assert headers == [["header", "--service", "hotel", "--header", "x-bee-canary=true", "--version", "v2"]]
    assert dev.outputs["mtlsMode"] != "STRICT" and not [c for c in checks if c[0] == "plaintext"]


def test_plan_under_strict_mtls_includes_a_plain_text_request(prod):
    assert prod.outputs["mtlsMode"] == "STRICT"
    assert [c for c in e2e.plan(prod.outputs) if c[0] == "plaintext"] == [["plaintext", "--service", "destination"]]


def test_every_planned_check_parses_as_a_command():
    outputs = {"canaryWeights": {"hotel": {"v1": 50, "v2": 50}}, "mtlsMode": "STRICT", "networkPolicies": True,
               "matchRoutes": {"hotel": [{"header": "x-bee-canary", "value": "true", "version": "v2"}]},
               "observability": {"prometheus": "kubectl ...", "kiali": "kubectl ..."}}
    checks = e2e.plan(outputs)
    assert [c[0] for c in checks] == ["split", "header", "plaintext", "fence"]
    for check in checks:
        extra = ["--gateway", "http://gw"] if check[0] == "split" else []
        parsed = e2e.build_parser().parse_args([*check, *extra])
        assert parsed.command == check[0]
        assert parsed.fenced == ["istiod", "kiali", "prometheus"] if check[0] == "fence" else parsed.service == "hotel"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_with_network_policies_on_the_fence_is_checked_against_every_add_on_the_stack_runs(stack, request):
    run = request.getfixturevalue(stack)
    assert run.outputs["networkPolicies"] is True
    fence = [c for c in e2e.plan(run.outputs) if c[0] == "fence"]
    assert fence == [["fence", "--fenced", "istiod", *sorted(set(run.outputs["observability"]) & set(e2e.FENCED))]]
    assert len(fence[0]) > 3  # the stack runs add-ons, each probed
    assert not [c for c in e2e.plan({**run.outputs, "networkPolicies": False}) if c[0] == "fence"]


def _probe(tmp_path, answering: set[str], targets: list[str]) -> str:
    """The probe pod's shell script, run here with a curl that answers only for the named hosts (else times out)."""
    fake = tmp_path / "bin" / "curl"
    fake.parent.mkdir(exist_ok=True)
    hosts = " ".join(answering)
    fake.write_text(f"#!/bin/sh\nfor host in {hosts}; do case \"$*\" in *//$host.*) printf 200; exit 0;; esac; done\n"
                    "printf 000; exit 28\n")
    fake.chmod(0o755)
    done = subprocess.run(["sh", "-c", e2e._PROBE_SCRIPT, "probe", *targets], capture_output=True, text=True, check=True,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    return done.stdout


def test_the_fence_passes_when_only_the_gateway_answers_an_outsider(tmp_path):
    fenced = ["istiod", "grafana", "prometheus"]
    targets = [f"gateway={e2e.OPEN_TO_ALL[1]}", *(f"{name}={e2e.FENCED[name]}" for name in fenced)]
    passed, lines = e2e.judge_fence(_probe(tmp_path, {"istio-ingressgateway"}, targets), fenced)
    assert passed, lines
    leaking = _probe(tmp_path, {"istio-ingressgateway", "grafana"}, targets)
    passed, lines = e2e.judge_fence(leaking, fenced)
    assert not passed and any("grafana" in line and "does not enforce" in line for line in lines)


def test_the_fence_proves_nothing_when_even_the_gateway_is_silent(tmp_path):
    targets = [f"gateway={e2e.OPEN_TO_ALL[1]}", f"istiod={e2e.FENCED['istiod']}"]
    passed, lines = e2e.judge_fence(_probe(tmp_path, set(), targets), ["istiod"])
    assert not passed and any("shows nothing" in line for line in lines)
    assert not e2e.judge_fence("", ["istiod"])[0]  # no pod output at all: nothing was shown


def test_the_request_loop_run_in_the_ui_pod_sends_the_header_and_counts_codes():
    # The UI pod runs this script with its own node; here the machine's must be there (`make test` installs it: make node).
    assert shutil.which("node"), "node is needed to run the UI pod's request loop: install Node.js"
    seen_headers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen_headers.append(self.headers.get("x-bee-canary"))
            self.send_response(200 if len(seen_headers) < 3 else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(["node", "-e", e2e._NODE_GET_LOOP, "3", "127.0.0.1", str(server.server_port),
                                 "/api/v1/hotels/info/superchain", json.dumps({"x-bee-canary": "true"})],
                                capture_output=True, text=True, timeout=30, check=True)
    finally:
        server.shutdown()
    assert json.loads(result.stdout) == {"200": 2, "503": 1}
    assert seen_headers == ["true"] * 3


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """A stack file naming its own kubeconfig and context; every kubectl command recorded, each answered 'refused'."""
    from tools import cluster

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(f"config:\n  kubernetes:kubeconfig: {kubeconfig}\n  kubernetes:context: staging-admin\n")
    monkeypatch.setattr(e2e, "default_stack_file", lambda stack: stack_file)
    commands: list[list[str]] = []

    def fake_run(argv, **_):
        commands.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "refused")

    monkeypatch.setattr(cluster.subprocess, "run", fake_run)
    return ["kubectl", "--kubeconfig", str(kubeconfig), "--context", "staging-admin"], commands


def test_the_checks_run_kubectl_against_the_cluster_the_stack_names(staging):
    """Like drift, diagnose and recover, the e2e checks reach the cluster the stack's provider talks to: its
    kubernetes:kubeconfig and kubernetes:context, not whatever kubectl's current context is."""
    flags, commands = staging
    assert e2e.main(["--stack", "staging", "plaintext", "--service", "hotel"]) == 0  # refused: the check passes
    assert commands and commands[0][:5] == flags
    assert commands[0][5] == "run"
    commands.clear()
    assert e2e.main(["--context", "other", "plaintext", "--service", "hotel"]) == 0
    assert commands[0][:3] == ["kubectl", "--context", "other"]


def test_every_check_of_all_runs_against_the_cluster_the_stack_names(staging, tmp_path):
    flags, commands = staging
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"canaryWeights": {"hotel": {"v1": 100}}, "mtlsMode": "STRICT", "networkPolicies": True,
                                   "observability": {"grafana": "kubectl ..."}}))
    e2e.main(["--stack", "staging", "all", "--outputs", str(outputs), "--gateway", "http://gw"])
    assert [argv[5] for argv in commands] == ["run", "run"]  # the plain-text check, then the fence's probe pod
    assert all(argv[:5] == flags for argv in commands)
