"""`make diagnose` (tools/diagnose.py) against istioctl and Prometheus outputs written by hand in their releases' formats (tests/data/diagnose) and a
cluster given as API objects; tests/test_real_cluster.py runs the API-server checks against the simulated cluster."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from test_promote import serving

from builders.routes import http_routes
from builders.signals import flagged_responses
from config.settings import Settings
from tools import cluster, diagnose
from tools.diagnose import Finding, Istioctl
from tools.stack_files import load_stack_settings
from tools.stack_run import ROOT

DATA = Path(__file__).parent / "data" / "diagnose"
NAMESPACE = "bee-travels"
# The pods the hand-written proxy-status tables name.
CANNED_PODS = {"bee-ui-v1-6d9f7c8b5d-x2k4p": ("bee-ui", "v1"), "carrental-v2-7b8c9d6f5-m9n2b": ("carrental", "v2"),
                 "hotel-v1-5f6d7c8b9-h7j3k": ("hotel", "v1")}


# ---- a cluster as API objects -----------------------------------------------------------------------

def _pod(name: str, app: str, version: str, ready: bool = True, sidecar: bool = True) -> dict:
    containers = [{"name": app}, *([{"name": "istio-proxy"}] if sidecar else [])]
    return {"metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app, "version": version}},
            "spec": {"containers": containers},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _named(name: str, spec: dict, namespace: str = NAMESPACE) -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def healthy_cluster(settings: Settings) -> dict[str, list[dict] | dict]:
    """Every version's pod ready with a sidecar, routes as the stack file says, mTLS as it asks: nothing to find."""
    pods = [_pod(f"{name}-{version}-abc12", name, version) for name, service in settings.services.items() for version in service.versions]
    return {
        "namespace": {"metadata": {"name": NAMESPACE, "labels": diagnose.injection_labels(settings.istio.revision)}},
        "pods": pods,
        "services": [_named(name, {"selector": {"app": name}}) for name in settings.services],
        "destinationrules": [_named(name, {"host": f"{name}.{NAMESPACE}.svc.cluster.local",
                                           "subsets": [{"name": v, "labels": {"version": v}} for v in service.versions]})
                             for name, service in settings.services.items()],
        "virtualservices": [_named(name, {"http": http_routes(name, service, settings.resilience_of(name), NAMESPACE)})
                            for name, service in settings.services.items()],
        "peerauthentications": [_named("default", {"mtls": {"mode": settings.security.mtls_mode}}, "istio-system")],
    }


@dataclass
class FakeKubectl:
    objects: dict
    cluster: tuple[str, ...] = ()

    def items(self, kind: str, namespace: str | None) -> list[dict]:
        return self.objects[kind.split(".")[0]]

    def get(self, kind: str, name: str) -> dict:
        return self.objects[kind]


def _settings(istio: str) -> Settings:
    prod = load_stack_settings("prod", ROOT / "Pulumi.prod.yaml")
    return prod.model_copy(update={"istio": prod.istio.model_copy(update={"version": istio})})


ISTIO = {"1.30": "1.30.3", "1.6": "1.6.14"}


@pytest.fixture(params=sorted(ISTIO))
def settings(request) -> Settings:
    return _settings(ISTIO[request.param])


# ---- hand-written istioctl and Prometheus outputs ------------------------------------------------------------------

def fake_istioctl(folder: Path, minor: str, proxy_status: str | None = None, analysis: str | None = None) -> tuple[Path, Path]:
    """An istioctl that logs its arguments and prints the hand-written output of the release `minor` (or the given one)."""
    log = folder / "istioctl-calls.log"
    script = folder / "istioctl"
    (folder / "proxy-status.txt").write_text(proxy_status or (DATA / f"proxy-status-{minor}.txt").read_text())
    (folder / "analyze.json").write_text(analysis or (DATA / f"analyze-{minor}.json").read_text())
    script.write_text(f"""#!{sys.executable}
import sys
with open({str(log)!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
outputs = {{"proxy-status": {str(folder / "proxy-status.txt")!r}, "analyze": {str(folder / "analyze.json")!r}}}
sys.stdout.write(open(outputs[sys.argv[1]]).read())
sys.exit(79 if sys.argv[1] == "analyze" else 0)  # analyze exits non-zero when it found something
""")
    script.chmod(0o755)
    return script, log


@dataclass
class CannedPrometheus:
    url: str = ""
    answer: bytes = field(default_factory=lambda: (DATA / "prometheus-flagged.json").read_bytes())
    queries: list[str] = field(default_factory=list)

    def reply(self, query: str) -> tuple[int, bytes]:
        self.queries.append(query)
        return 200, self.answer


@pytest.fixture
def canned_prometheus() -> Iterator[CannedPrometheus]:
    """A local Prometheus answering every instant query with the hand-written flagged-responses vector."""
    canned = CannedPrometheus()
    with serving(canned.reply) as canned.url:
        yield canned


NO_ERRORS = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'


def _run(settings: Settings, objects: dict, prometheus: str, istioctl: Path | None = None) -> diagnose.Report:
    locate = (lambda: Istioctl(str(istioctl), ("--kubeconfig", "/tmp/kubeconfig"))) if istioctl else None
    return diagnose.diagnose(settings, FakeKubectl(objects), locate, prometheus, "10m")


def _texts(report: diagnose.Report, check: str) -> list[str]:
    return [finding.text for finding in report.findings if finding.check == check]


def _with_canned_pods(settings: Settings) -> dict:
    objects = healthy_cluster(settings)
    objects["pods"] = [pod for pod in objects["pods"] if _labels(pod) not in CANNED_PODS.values()]
    objects["pods"] += [_pod(name, app, version) for name, (app, version) in CANNED_PODS.items()]
    return objects


def _labels(pod: dict) -> tuple[str, str]:
    return pod["metadata"]["labels"]["app"], pod["metadata"]["labels"]["version"]


# ---- the whole run --------------------------------------------------------------------------------------

def test_a_healthy_mesh_has_no_finding(settings, canned_prometheus, tmp_path):
    objects = healthy_cluster(settings)
    minor = settings.istio.minor
    synced = "SYNCED (4m)" if minor == "1.30" else "SYNCED"
    header = "NAME     CLUSTER     CDS     LDS     EDS     RDS     ISTIOD     VERSION"
    rows = [f"{pod['metadata']['name']}.{NAMESPACE}     Kubernetes     {synced}     {synced}     {synced}     {synced}     istiod-1     x"
            for pod in objects["pods"]]
    istioctl, _ = fake_istioctl(tmp_path, minor, "\n".join([header, *rows]) + "\n", analysis="[]")
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, objects, canned_prometheus.url, istioctl)
    assert report.findings == [], report.findings
    assert f"{NAMESPACE}: {settings.security.mtls_mode}" in report.raw["mTLS in force"]


def test_istioctl_is_asked_what_its_release_can_say_and_analyze_counts_errors_and_warnings(settings, canned_prometheus, tmp_path):
    minor = settings.istio.minor
    istioctl, log = fake_istioctl(tmp_path, minor)
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, _with_canned_pods(settings), canned_prometheus.url, istioctl)
    calls = log.read_text().splitlines()
    verbose = " --verbosity 1" if minor == "1.30" else ""  # 1.6's proxy-status has no such flag and always shows sync state
    assert calls == [f"proxy-status{verbose} --kubeconfig /tmp/kubeconfig", "analyze --all-namespaces --output json --kubeconfig /tmp/kubeconfig"]
    analyzed = _texts(report, "analyze")
    origin = "VirtualService bee-travels/carrental" if minor == "1.30" else "VirtualService carrental.bee-travels"
    assert any(text.startswith(f"Error IST0101 {origin}: ") and "carrental+v3" in text for text in analyzed)
    assert not any("IST0118" in text or "IST0102" in text for text in analyzed), "Info messages are not findings"
    assert ("IST0103" in " ".join(analyzed)) == (minor == "1.30"), "the hand-written 1.30 analysis has a Warning, 1.6's none"
    assert all(finding.next and finding.next[0].startswith("https://istio.io/") for finding in report.findings if finding.check == "analyze")


def test_proxies_behind_istiod_are_named_with_what_is_stale_and_the_commands_that_look_closer(settings, canned_prometheus, tmp_path):
    minor = settings.istio.minor
    istioctl, _ = fake_istioctl(tmp_path, minor)
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, _with_canned_pods(settings), canned_prometheus.url, istioctl)
    behind = {finding.text.split()[1]: finding for finding in report.findings if finding.check == "proxy" and "not in sync" in finding.text}
    carrental = behind.pop("carrental-v2-7b8c9d6f5-m9n2b.bee-travels")
    expected_states = {"1.30": "CDS STALE (12m), RDS STALE (12m)", "1.6": "RDS STALE (Never Acknowledged)"}[minor]
    assert f"({expected_states})" in carrental.text
    assert carrental.next == ("istioctl proxy-status carrental-v2-7b8c9d6f5-m9n2b.bee-travels",
                              "istioctl proxy-config route carrental-v2-7b8c9d6f5-m9n2b.bee-travels",
                              "kubectl logs carrental-v2-7b8c9d6f5-m9n2b -n bee-travels -c istio-proxy --since=10m")
    # ECDS NOT SENT is how a proxy without extension configs looks (1.30); a core type not sent is a proxy behind (1.6).
    expected_others = {"1.30": set(), "1.6": {"hotel-v1-5f6d7c8b9-h7j3k.bee-travels", "istio-ingressgateway-6b7c8d9f5-p4q5r.istio-system"}}
    assert set(behind) == expected_others[minor]
    # Every other app pod is ready with a sidecar but missing from the table: it never reached istiod.
    never = {finding.text.split(":")[0] for finding in report.findings if "never connected" in finding.text}
    assert never == {" ".join(_labels(pod)) for pod in _with_canned_pods(settings)["pods"]} - {" ".join(v) for v in CANNED_PODS.values()}


def test_recent_errors_name_service_version_caller_and_where_to_look(settings, canned_prometheus):
    objects = healthy_cluster(settings)
    report = _run(settings, objects, canned_prometheus.url)
    assert canned_prometheus.queries == [flagged_responses(NAMESPACE, "10m")]
    errors = {finding.text.split(" in the last")[0]: finding for finding in report.findings if finding.check == "errors"}
    assert list(errors) == ["bee-ui v1: 120 × 429 RL", "carrental v2: 37 × 503 UH", "hotel v1: 4 × 500 -", "no service: 3 × 404 NR"], \
        "most first; under one request in the window is noise from increase()'s extrapolation"
    # Refused by the callee's own proxy (an inbound rate limit): the callee's logs.
    limited = errors["bee-ui v1: 120 × 429 RL"]
    assert limited.text.endswith("from istio-ingressgateway, refused by its own proxy (rate limited (rateLimit in the stack file))")
    assert limited.next == ("kubectl logs bee-ui-v1-abc12 -n bee-travels -c bee-ui --since=10m",
                            "kubectl logs bee-ui-v1-abc12 -n bee-travels -c istio-proxy --since=10m")
    # Flagged on the way out: the caller's routes and clusters decided.
    unhealthy = errors["carrental v2: 37 × 503 UH"]
    assert "from bee-ui-v1, as the caller's proxy saw it (no healthy upstream: the subset has no ready pod" in unhealthy.text
    assert unhealthy.next == ("istioctl proxy-config cluster bee-ui-v1-abc12.bee-travels --fqdn carrental.bee-travels.svc.cluster.local",
                              "istioctl proxy-config route bee-ui-v1-abc12.bee-travels",
                              "kubectl logs bee-ui-v1-abc12 -n bee-travels -c istio-proxy --since=10m")
    # The app's own 500: its own container's logs.
    own = errors["hotel v1: 4 × 500 -"]
    assert own.text.endswith("(the app's own answer)") and own.next[0] == "kubectl logs hotel-v1-abc12 -n bee-travels -c hotel --since=10m"
    unrouted = errors["no service: 3 × 404 NR"]
    assert "(no route: no VirtualService route or Sidecar egress host matches" in unrouted.text
    assert unrouted.next[1] == "istioctl proxy-config route destination-v1-abc12.bee-travels"


def test_the_query_counts_5xx_where_the_caller_saw_them_and_flags_where_a_proxy_set_them():
    query = flagged_responses("shop", "5m")
    assert query.startswith("sum by (reporter, source_workload, source_workload_namespace, destination_service_name, "
                            "destination_version, response_code, response_flags) (")
    assert query.count("[5m]") == 4
    assert 'reporter="source",destination_service_namespace="shop",response_code=~"5.."' in query
    assert 'reporter="destination",destination_service_namespace="shop",response_flags!="-"' in query
    assert 'reporter="source",source_workload_namespace="shop",destination_service_namespace="unknown",response_flags!="-"' in query


# ---- the checks that need only the API server -------------------------------------------------------------

def test_a_subset_without_ready_pods_is_named_with_the_share_of_traffic_it_loses(settings, canned_prometheus):
    objects = healthy_cluster(settings)
    objects["pods"] = [pod if _labels(pod) != ("carrental", "v2") else _pod("carrental-v2-abc12", "carrental", "v2", ready=False)
                       for pod in objects["pods"]]
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, objects, canned_prometheus.url)
    (finding,) = report.findings
    assert finding == Finding("subset", "carrental subset v2 has no ready pod (the stack file routes it 10%: those requests end in 503 UH)",
                              ("kubectl get pods -n bee-travels -l app=carrental,version=v2",
                               "kubectl describe deployment carrental-v2 -n bee-travels"))


def test_pods_without_a_sidecar_are_grouped_by_version_and_a_missing_injection_label_is_named(settings, canned_prometheus):
    objects = healthy_cluster(settings)
    objects["pods"] += [_pod(f"hotel-v2-bare{i}", "hotel", "v2", sidecar=False) for i in range(2)]
    objects["namespace"] = {"metadata": {"name": NAMESPACE, "labels": {}}}
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, objects, canned_prometheus.url)
    namespace_finding, hotel = _texts(report, "sidecar")
    label = "istio.io/rev" if settings.istio.revision else "istio-injection=enabled"
    assert namespace_finding.startswith(f"namespace bee-travels lacks the injection label {label}")
    assert hotel.startswith("hotel v2: 2 pods (hotel-v2-bare0, hotel-v2-bare1) without an istio-proxy sidecar")
    assert "kubectl rollout restart deployment/hotel-v2 -n bee-travels" in hotel


def test_a_native_sidecar_counts_as_a_sidecar():
    native = {"spec": {"containers": [{"name": "hotel"}], "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}]}}
    plain_init = {"spec": {"containers": [{"name": "hotel"}], "initContainers": [{"name": "istio-proxy"}]}}
    assert diagnose.has_sidecar(native) and not diagnose.has_sidecar(plain_init)


def test_the_mtls_mode_in_force_is_the_namespaces_own_else_the_mesh_wide_one(settings, canned_prometheus):
    objects = healthy_cluster(settings)
    objects["peerauthentications"] += [_named("relaxed", {"mtls": {"mode": "PERMISSIVE"}}),
                                       _named("one-workload", {"selector": {"matchLabels": {"app": "x"}}, "mtls": {"mode": "DISABLE"}}, "other")]
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, objects, canned_prometheus.url)
    assert _texts(report, "mtls") == ["mTLS in bee-travels is PERMISSIVE; the stack file asks STRICT (security.mtlsMode)"]
    assert report.raw["mTLS in force"].splitlines() == ["bee-travels: PERMISSIVE", "istio-system: STRICT", "other: STRICT"]


def test_live_routes_that_differ_from_the_stack_file_are_findings(settings, canned_prometheus):
    objects = healthy_cluster(settings)
    hotel = next(item for item in objects["virtualservices"] if item["metadata"]["name"] == "hotel")
    weighted = next(route for route in hotel["spec"]["http"] if route["name"] == "weighted")
    for leg in weighted["route"]:
        leg["weight"] = 50
    canned_prometheus.answer = NO_ERRORS
    report = _run(settings, objects, canned_prometheus.url)
    assert _texts(report, "routes") == ["hotel route weighted: live v1 50%, v2 50%; stack file v1 90%, v2 10% (applied by `pulumi up --refresh`)"]


def test_a_source_that_cannot_be_read_is_a_finding_and_the_rest_still_runs(settings, tmp_path):
    objects = healthy_cluster(settings)
    objects["pods"][0]["spec"]["containers"].pop()  # one pod without its sidecar: still found

    def no_istioctl():
        raise cluster.ReadError("no istioctl 1.x: download failed")

    report = diagnose.diagnose(settings, FakeKubectl(objects), no_istioctl, "http://127.0.0.1:9", "10m")
    unread = _texts(report, "unread")
    assert unread[0] == "proxy-status and analyze were not run: no istioctl 1.x: download failed"
    assert unread[1].startswith("Prometheus at http://127.0.0.1:9 (`kubectl -n istio-system port-forward svc/prometheus 9090:9090`")
    assert len(_texts(report, "sidecar")) == 1


# ---- the command ------------------------------------------------------------------------------------------

def _fake_kubectl(folder: Path, objects: dict | None) -> None:
    """A kubectl on PATH answering `get <kind> ... -o json` from `objects`, or failing like an unreachable server."""
    (folder / "objects.json").write_text(json.dumps(objects))
    script = folder / "kubectl"
    script.write_text(f"""#!{sys.executable}
import json, sys
objects = json.load(open({str(folder / "objects.json")!r}))
if objects is None:
    sys.exit("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?")
kind = sys.argv[sys.argv.index("get") + 1].split(".")[0]
print(json.dumps(objects[kind] if kind == "namespace" else {{"items": objects[kind]}}))
""")
    script.chmod(0o755)


@pytest.mark.parametrize(("broken", "exit_code", "first_line"), [
    (False, diagnose.EXIT_CLEAN, "prod: no finding(s)"),
    (True, diagnose.EXIT_FINDINGS, "prod: 1 finding(s)"),
])
def test_the_command_prints_findings_first_and_exits_by_what_it_found(tmp_path, monkeypatch, capsys, canned_prometheus,
                                                                       broken, exit_code, first_line):
    settings = load_stack_settings("prod", ROOT / "Pulumi.prod.yaml")
    objects = healthy_cluster(settings)
    if broken:
        objects["pods"][0]["spec"]["containers"].pop()
    _fake_kubectl(tmp_path, objects)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    canned_prometheus.answer = NO_ERRORS
    assert diagnose.main(["--stack", "prod", "--no-istioctl", "--prometheus", canned_prometheus.url]) == exit_code
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first_line
    assert out.index("---- pods ----") > (out.index("[sidecar]") if broken else 0), "findings come before the raw data"


def test_a_cluster_that_cannot_be_read_exits_2_with_the_reason(tmp_path, monkeypatch, capsys):
    _fake_kubectl(tmp_path, None)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert diagnose.main(["--stack", "prod", "--no-istioctl"]) == diagnose.EXIT_ERROR
    assert "connection to the server 127.0.0.1:6443 was refused" in capsys.readouterr().err


# ---- offline analysis of the rendered objects (the pull-request check) ------------------------------------

def _analyzing_istioctl(folder: Path, analysis: str) -> tuple[Path, Path]:
    """An istioctl whose `analyze` logs its arguments and the files it was given, then answers `analysis`."""
    log, script = folder / "analyze-call.json", folder / "istioctl"
    (folder / "analysis.json").write_text(analysis)
    script.write_text(f"""#!{sys.executable}
import json, os, sys
given = sys.argv[-1]
files = sorted(os.listdir(given)) if os.path.isdir(given) else []
kinds = {{}}
for name in files:
    text = open(os.path.join(given, name)).read()
    kinds[name] = text
json.dump({{"args": sys.argv[1:-1], "files": kinds}}, open({str(log)!r}, "w"))
print(open({str(folder / "analysis.json")!r}).read())
sys.exit(79)
""")
    script.chmod(0o755)
    return script, log


@pytest.mark.parametrize(("stack", "minor"), [("dev", "1.6"), ("dev-current", "1.30")])
def test_offline_analysis_gets_the_rendered_objects_and_the_pods_their_workloads_make(tmp_path, capsys, stack, minor):
    from tools import analyze

    istioctl, log = _analyzing_istioctl(tmp_path, "[]")
    exit_code = analyze.main(["--stack", stack, "--istioctl", str(istioctl)])
    assert exit_code == analyze.EXIT_CLEAN, capsys.readouterr()
    call = json.loads(log.read_text())
    gateway = {"1.30": "Gateway bee-travels/bee-travels-gateway", "1.6": "Gateway bee-travels-gateway.bee-travels"}[minor]
    expected = ["analyze", "--use-kube=false", "--output", "json", "--failure-threshold", "Error", "--istioNamespace",
                "istio-system", *(["--recursive"] if minor == "1.6" else [])]  # 1.6 reads folders only with -R
    assert call["args"][:len(expected)] == expected
    assert call["args"][-2:] == ["--suppress", f"IST0101={gateway}"], "only the chart-made gateway pods are missing offline"
    documents = [yaml.safe_load(text) for text in call["files"].values()]
    kinds = {document["kind"] for document in documents}
    assert {"VirtualService", "DestinationRule", "Gateway", "Sidecar", "AuthorizationPolicy", "Deployment", "Pod"} <= kinds
    assert "Secret" not in kinds, "masked Secrets are not analyzed"
    pods = {document["metadata"]["name"]: document for document in documents if document["kind"] == "Pod"}
    workloads = [document for document in documents if document["kind"] in ("Deployment", "StatefulSet")]
    assert set(pods) == {f"{w['metadata']['name']}-0" for w in workloads}
    hotel = pods["hotel-v1-0"]
    assert hotel["metadata"]["labels"]["app"] == "hotel" and hotel["metadata"]["labels"]["version"] == "v1"
    assert hotel["metadata"]["namespace"] == "bee-travels"


def test_offline_analysis_fails_on_an_error_and_passes_with_warnings(tmp_path, capsys):
    from tools import analyze

    written = json.loads((DATA / "analyze-1.6.json").read_text())
    istioctl, _ = _analyzing_istioctl(tmp_path, json.dumps(written))
    assert analyze.main(["--stack", "dev", "--istioctl", str(istioctl)]) == analyze.EXIT_ERRORS
    out = capsys.readouterr().out
    assert "dev: Error IST0101 VirtualService carrental.bee-travels: Referenced host+subset" in out
    assert "dev: istioctl 1.6.14 analyze: 1 error(s), 0 warning(s)" in out
    warning = [{**written[0], "level": "Warning"}, written[1]]
    (tmp_path / "analysis.json").write_text(json.dumps(warning))
    assert analyze.main(["--stack", "dev", "--istioctl", str(istioctl)]) == analyze.EXIT_CLEAN
    assert "dev: istioctl 1.6.14 analyze: 0 error(s), 1 warning(s)" in capsys.readouterr().out


def test_the_cluster_is_the_one_the_stacks_provider_talks_to_unless_told_otherwise(tmp_path):
    stack_file = tmp_path / "Pulumi.prod.yaml"
    inline = "apiVersion: v1\nkind: Config\nclusters: []\n"
    stack_file.write_text(yaml.safe_dump({"config": {"kubernetes:context": "prod-cluster", "kubernetes:kubeconfig": inline}}))
    with cluster.stack_cluster(diagnose.parse_args(["--stack", "prod"]), stack_file) as flags:
        assert flags[0] == "--kubeconfig" and flags[2:] == ("--context", "prod-cluster")
        written = Path(flags[1])
        assert written.read_text() == inline and written.stat().st_mode & 0o077 == 0, "the kubeconfig's text, readable by us only"
    assert not written.exists()
    given = diagnose.parse_args(["--stack", "prod", "--kubeconfig", str(stack_file), "--context", "other"])
    with cluster.stack_cluster(given, stack_file) as flags:
        assert flags == ("--kubeconfig", str(stack_file), "--context", "other")
    stack_file.write_text(yaml.safe_dump({"config": {"kubernetes:kubeconfig": {"secure": "v1:abc"}}}))
    with pytest.raises(cluster.ReadError, match="Pulumi.prod.yaml keeps kubernetes:kubeconfig as a secret; pass --kubeconfig"):
        with cluster.stack_cluster(diagnose.parse_args(["--stack", "prod"]), stack_file):
            pass
