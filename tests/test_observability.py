"""Observability: toggles, service-level rules evaluated by Prometheus' own promtool, secrets, and nothing exposed."""

import json
import shutil
import subprocess

import pytest
import yaml

from builders.addon_values import DashboardsMissingError, istio_dashboards
from builders.signals import SIGNALS, Scope, p95_latency_ms, request_rate, requests_served, success_ratio
from tools.stack_run import run_stack, secret_paths, stand_in_chart_cache, unwrap

RELEASE = "kubernetes:helm.sh/v3:Release"
ALL_OFF = {"observability.prometheus": False, "observability.grafana": False, "observability.kiali": False,
           "observability.tracing.enabled": False}
NAMESPACE = "bee-travels"


def parts(run) -> set[str]:
    """Which add-ons a run installs, read from what it registers."""
    found = {r.inputs["name"] for r in run.of_type(RELEASE) if r.inputs["name"] in ("prometheus", "grafana", "kiali")}
    if any(r.k8s_name == "tracing" for r in run.of_type("Deployment")):
        found.add("tracing")
    return found


def release(run, name: str) -> dict:
    (found,) = [r for r in run.of_type(RELEASE) if r.inputs["name"] == name]
    return unwrap(found.inputs)


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("enabled", [set(), {"prometheus"}, {"prometheus", "grafana"}, {"prometheus", "kiali"}, {"tracing"},
                                     {"prometheus", "grafana", "kiali", "tracing"}], ids=lambda e: "+".join(sorted(e)) or "none")
def test_toggles_install_exactly_the_chosen_add_ons(stack, enabled):
    overrides = {**ALL_OFF, **{f"observability.{part}": True for part in enabled - {"tracing"}}}
    if "tracing" in enabled:
        overrides["observability.tracing.enabled"] = True
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    assert parts(run) == enabled
    assert set(run.outputs["observability"]) == enabled
    assert ("grafanaAdminPassword" in run.outputs) == ("grafana" in enabled)
    if not enabled:
        assert run.within("Observability").resources == []


def test_zipkin_backend_replaces_jaeger_behind_the_same_service():
    run = run_stack("dev", {"observability.tracing.backend": "zipkin"})
    (deployment,) = [d for d in run.of_type("Deployment") if d.k8s_name == "tracing"]
    assert "zipkin" in deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "kiali" in parts(run) and release(run, "kiali")["values"]["external_services"]["tracing"] == {"enabled": False}


# ---- the service-level rules, evaluated by promtool ------------------------------------------------

def promtool() -> str:
    """Prometheus' promtool, which evaluates the rules; a machine without it fails these tests, saying how to get it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Prometheus' promtool (Debian: apt-get install prometheus; "
                    "`make promtool` does it as root) to evaluate the rules")
    return found


def deployed_versions(run) -> list[tuple[str, str]]:
    """(service, version) of every app Deployment: what the rules must cover, taken from the workloads, not the rules."""
    labels = [d.inputs["spec"]["template"]["metadata"]["labels"] for d in run.within("MeshService").of_type("Deployment")]
    return sorted((label["app"], label["version"]) for label in labels)


def _series(service: str, version: str, failing: bool, slow: bool) -> list[dict]:
    common = (f'reporter="destination",destination_workload_namespace="{NAMESPACE}",'
              f'destination_service_name="{service}",destination_version="{version}"')
    served = [{"series": f'istio_requests_total{{{common},response_code="200"}}', "values": "0+600x40"}]
    if failing:  # one request in ten answered with a 503
        served.append({"series": f'istio_requests_total{{{common},response_code="503"}}', "values": "0+60x40"})
    # Every request under 100 ms when healthy; every request between 5 and 10 s when slow.
    buckets = {"100": 0 if slow else 600, "5000": 0 if slow else 600, "10000": 600, "+Inf": 600}
    served += [{"series": f'istio_request_duration_milliseconds_bucket{{{common},le="{le}"}}', "values": f"0+{per_minute}x40"}
               for le, per_minute in buckets.items()]
    return served


def _case(versions, victim, breach: str, severity: str = "warning") -> dict:
    series = [s for service, version in versions
              for s in _series(service, version, failing=(breach == "errors" and (service, version) == victim),
                               slow=(breach == "latency" and (service, version) == victim))]
    expected = {"errors": "BeeTravelsSuccessRateBelowServiceLevel", "latency": "BeeTravelsLatencyAboveServiceLevel"}
    service, version = victim
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "30m", "alertname": alert,
         "exp_alerts": [{"exp_labels": {"namespace": NAMESPACE, "service": service, "version": version,
                                        "destination_workload_namespace": NAMESPACE, "destination_service_name": service,
                                        "destination_version": version, "severity": severity}}] if kind == breach else []}
        for kind, alert in expected.items()]}


def _without_discovery(job: dict) -> dict:
    # Debian's promtool is built without Kubernetes discovery; a static target keeps the rest of the job checked.
    job = {key: value for key, value in job.items() if key != "kubernetes_sd_configs"}
    return {**job, "static_configs": job.get("static_configs", [{"targets": ["localhost:9090"]}])}


def _without_annotations(rules: dict) -> dict:
    # promtool compares annotations too; these cases check which alert fires for whom, the templates are checked apart.
    return {"groups": [{**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]}
                       for group in rules["groups"]]}


def _promtool_files(run, tmp_path):
    files = release(run, "prometheus")["values"]["serverFiles"]
    (tmp_path / "recording_rules.yml").write_text(yaml.safe_dump(files["recording_rules.yml"]))
    (tmp_path / "alerting_rules.yml").write_text(yaml.safe_dump(files["alerting_rules.yml"]))
    (tmp_path / "alerts_to_test.yml").write_text(yaml.safe_dump(_without_annotations(files["alerting_rules.yml"])))
    config = {**files["prometheus.yml"], "rule_files": ["recording_rules.yml", "alerting_rules.yml"],
              "scrape_configs": [_without_discovery(job) for job in files["prometheus.yml"]["scrape_configs"]]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    return files


def _promtool(*args, cwd):
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_configuration_and_rules_are_valid(any_stack, tmp_path):
    _promtool_files(any_stack, tmp_path)
    _promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def _run_rule_cases(run, tmp_path, victims):
    _promtool_files(run, tmp_path)
    severity = "critical" if run.stack == "prod" else "warning"
    versions = deployed_versions(run)
    cases = [_case(versions, victim, breach, severity) for victim in victims for breach in ("errors", "latency")]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump({"rule_files": ["recording_rules.yml", "alerts_to_test.yml"],
                                                        "evaluation_interval": "1m", "tests": cases}))
    _promtool("test", "rules", "cases.yml", cwd=tmp_path)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_deployed_version_alone_alerts_on_errors_and_latency(stack, request, tmp_path):
    run = request.getfixturevalue(stack)
    versions = deployed_versions(run)
    assert len(versions) >= 8
    # Each case breaks one version; promtool checks its alert fires with its labels and no other version's does.
    _run_rule_cases(run, tmp_path, versions)


def test_a_version_added_in_the_stack_file_is_covered(tmp_path):
    run = run_stack("dev", {"services.carrental.versions.v3": {"tier": "mongodb"},
                            "services.carrental.weights": {"v1": 50, "v2": 40, "v3": 10}})
    assert ("carrental", "v3") in deployed_versions(run)
    _run_rule_cases(run, tmp_path, [("carrental", "v3")])


def test_a_service_level_override_moves_only_that_services_bar(tmp_path):
    # Hotel tolerates 15% errors: its version failing one request in eleven no longer alerts; destination's still does.
    run = run_stack("dev", {"services.hotel.serviceLevel": {"minSuccessRatePercent": 85}})
    files = _promtool_files(run, tmp_path)
    case = _case(deployed_versions(run), ("hotel", "v2"), "errors")
    case["alert_rule_test"] = [{"eval_time": "30m", "alertname": "BeeTravelsSuccessRateBelowServiceLevel", "exp_alerts": []}]
    (tmp_path / "cases.yml").write_text(yaml.safe_dump({"rule_files": ["recording_rules.yml", "alerts_to_test.yml"],
                                                        "evaluation_interval": "1m", "tests": [case]}))
    _promtool("test", "rules", "cases.yml", cwd=tmp_path)
    assert any("< 0.99" in rule["expr"] for group in files["alerting_rules.yml"]["groups"] for rule in group["rules"]
               if 'destination_service_name="destination"' in rule["expr"])


def test_alert_after_is_how_long_a_breach_lasts_before_its_alert_fires():
    """serviceLevel.alertAfter is every alert's `for:`; a service's own serviceLevel moves only its alerts'."""
    run = run_stack("dev", {"serviceLevel.alertAfter": "12m", "services.hotel.serviceLevel": {"alertAfter": "3m"}})
    rules = release(run, "prometheus")["values"]["serverFiles"]["alerting_rules.yml"]
    waits = {(rule["labels"]["service"], rule["alert"]): rule["for"] for group in rules["groups"] for rule in group["rules"]}
    assert waits and {wait for (service, _), wait in waits.items() if service == "hotel"} == {"3m"}
    assert {wait for (service, _), wait in waits.items() if service != "hotel"} == {"12m"}


def test_alerts_cover_exactly_the_deployed_versions(any_stack):
    rules = release(any_stack, "prometheus")["values"]["serverFiles"]["alerting_rules.yml"]
    alerted = sorted({(rule["labels"]["service"], rule["labels"]["version"]) for group in rules["groups"] for rule in group["rules"]})
    assert alerted == sorted(set(deployed_versions(any_stack)))


# ---- Grafana, Kiali and the wiring between them ------------------------------------------------------

def test_canary_dashboard_shows_every_signal_per_service_from_recorded_series(dev):
    recorded = {rule["record"] for group in release(dev, "prometheus")["values"]["serverFiles"]["recording_rules.yml"]["groups"]
                for rule in group["rules"]}
    (config_map,) = [c for c in dev.of_type("ConfigMap") if c.k8s_name == "bee-travels-grafana-dashboards"]
    dashboard = json.loads(config_map.inputs["data"]["canary.json"])
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all(expr.split("{")[0] in recorded for expr in expressions)
    for service, _ in deployed_versions(dev):
        assert {expr.split("{")[0] for expr in expressions if f'destination_service_name="{service}"' in expr} == \
            {signal.record for signal in SIGNALS}
    assert "bee-travels" in release(dev, "grafana")["values"]["dashboardsConfigMaps"]


def test_grafana_admin_password_is_generated_and_secret(any_stack):
    (secret,) = [s for s in any_stack.within("Observability").of_type("Secret")]
    assert secret_paths(secret.inputs["stringData"]) == ["."]
    admin = release(any_stack, "grafana")["values"]["admin"]
    assert admin["existingSecret"] == secret.k8s_name
    assert {admin["userKey"], admin["passwordKey"]} == set(unwrap(secret.inputs["stringData"]))
    assert secret_paths(any_stack.outputs["grafanaAdminPassword"]) == ["."]
    values = release(any_stack, "grafana")["values"]
    assert values["grafana.ini"]["auth.anonymous"]["enabled"] is False


def test_nothing_is_exposed_outside_the_cluster_and_no_ui_is_anonymous(any_stack):
    for service in any_stack.within("Observability").of_type("Service"):
        assert service.inputs["spec"]["type"] == "ClusterIP"
    for name in ("prometheus", "grafana", "kiali"):
        text = json.dumps(release(any_stack, name)["values"])
        assert "LoadBalancer" not in text and "NodePort" not in text
    kiali = release(any_stack, "kiali")["values"]
    assert kiali["auth"]["strategy"] != "anonymous"
    # Kiali's 1.x charts add an Ingress unless told not to; the 2.x charts take it under deployment.ingress.
    assert kiali["deployment"].get("ingress_enabled") is False or kiali["deployment"].get("ingress") == {"enabled": False}


# What the pinned kiali-server charts read (their values.yaml and templates): 1.22.0 has deployment.pod_annotations
# but no pod_labels, no external_services.tracing.use_grpc (the server learned it in 1.31), and names resources with
# nameOverride/fullnameOverride; 2.11.0 names every resource after deployment.instance_name and has no overrides,
# and its default image is v2.11.0.
KIALI_1_22_UNREAD = ("deployment.pod_labels", "external_services.tracing.use_grpc")
KIALI_2_11_UNREAD = ("nameOverride", "fullnameOverride")


def _has(values: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def test_every_add_on_pod_opts_out_of_injection_the_way_istio_1_6_reads_it(dev, current):
    # Istio 1.6.14's injector (pkg/kube/inject/inject.go, injectRequired) reads the pod annotation only.
    opt_out = {"sidecar.istio.io/inject": "false"}
    for run in (dev, current):
        assert release(run, "prometheus")["values"]["server"]["podAnnotations"].items() >= opt_out.items()
        assert release(run, "grafana")["values"]["podAnnotations"].items() >= opt_out.items()
        assert release(run, "kiali")["values"]["deployment"].get("pod_annotations", opt_out).items() >= opt_out.items()
        for deployment in run.within("Observability").of_type("Deployment"):
            assert deployment.inputs["spec"]["template"]["metadata"]["annotations"].items() >= opt_out.items()


def test_kiali_gets_only_keys_its_pinned_chart_reads_and_is_named_kiali(dev, current):
    old, new = release(dev, "kiali")["values"], release(current, "kiali")["values"]
    assert [key for key in KIALI_1_22_UNREAD if _has(old, key)] == []
    assert old["deployment"]["pod_annotations"]["sidecar.istio.io/inject"] == "false"  # what Istio 1.6 honours
    assert old["fullnameOverride"] == "kiali"
    assert [key for key in KIALI_2_11_UNREAD if _has(new, key)] == []
    assert new["deployment"]["instance_name"] == "kiali" and new["deployment"]["pod_labels"] == {"sidecar.istio.io/inject": "false"}
    assert new["deployment"]["image_version"] == "v2.11.0"


def test_kiali_is_view_only_in_production_and_may_edit_elsewhere(dev, prod, current):
    """In prod Kiali cannot change the mesh it shows (its chart's deployment.view_only_mode) on either Istio line; dev
    keeps its editors."""
    view_only = [release(run, "kiali")["values"]["deployment"]["view_only_mode"] for run in (dev, prod, current)]
    assert view_only == [False, True, True]  # current: the prod stack on Istio 1.30


def test_uis_reach_each_other_at_the_services_the_charts_create(any_stack):
    prometheus = release(any_stack, "prometheus")["values"]["server"]
    namespace = release(any_stack, "prometheus")["namespace"]
    prometheus_url = f"http://{prometheus['fullnameOverride']}.{namespace}:{prometheus['service']['servicePort']}"
    (source,) = release(any_stack, "grafana")["values"]["datasources"]["datasources.yaml"]["datasources"]
    assert source["url"] == prometheus_url
    assert release(any_stack, "kiali")["values"]["external_services"]["prometheus"]["url"] == prometheus_url


def test_istio_sends_spans_to_the_tracing_backends_zipkin_service(any_stack):
    istiod = next(r for r in any_stack.of_type(RELEASE) if r.inputs["name"] == "istiod")
    address = unwrap(istiod.inputs)["values"]["meshConfig"]["defaultConfig"]["tracing"]["zipkin"]["address"]
    host, port = address.rsplit(":", 1)
    name, namespace = host.split(".", 1)
    (service,) = [s for s in any_stack.of_type("Service") if s.k8s_name == name and s.metadata["namespace"] == namespace]
    assert int(port) in {p["port"] for p in service.inputs["spec"]["ports"]}
    selector = service.inputs["spec"]["selector"]
    (deployment,) = [d for d in any_stack.of_type("Deployment") if d.k8s_name == "tracing"]
    assert selector.items() <= deployment.inputs["spec"]["template"]["metadata"]["labels"].items()


def test_istio_1_6_dashboards_come_from_the_release_archive(dev, istio_chart_cache):
    maps = {c.k8s_name: c for c in dev.within("Observability").of_type("ConfigMap")}
    mesh = json.loads(maps["istio-services-grafana-dashboards"].inputs["data"]["istio-mesh-dashboard.json"])
    assert mesh["title"].startswith("stand-in for istio-mesh-dashboard.json")
    assert "dashboards" not in release(dev, "grafana")["values"]  # nothing fetched from the internet


def test_current_istio_fetches_the_dashboards_of_its_own_release_verified_and_failing_loudly(current):
    values = release(current, "grafana")["values"]
    dashboards = values["dashboards"]["istio"]
    # Istio 1.30.3's samples/addons/grafana.yaml bundles these files of manifests/addons/dashboards at its tag.
    tag = "https://raw.githubusercontent.com/istio/istio/1.30.3/manifests/addons/dashboards/"
    assert {d["url"].removeprefix(tag) for d in dashboards.values()} == {
        "istio-mesh-dashboard.gen.json", "istio-service-dashboard.json", "istio-workload-dashboard.json",
        "istio-performance-dashboard.json", "pilot-dashboard.gen.json"}
    for dashboard in dashboards.values():
        assert "gnetId" not in dashboard  # grafana.com ids download revision 1 unless pinned
        # The chart's download script: `set -euf`, then curl <options> ... > file; piped through sed (hiding
        # curl's status) when `datasource` is set. Its default options are -skf: no TLS verification.
        options = dashboard["curlOptions"]
        assert options.startswith("-") and "k" not in options and "f" in options and "L" in options
        assert "datasource" not in dashboard and "b64content" not in dashboard


def test_missing_istio_dashboards_stop_the_program_before_anything_is_registered(tmp_path, monkeypatch):
    from tools import istio_charts

    cache = stand_in_chart_cache(tmp_path)
    (istio_charts.charts_dir("1.6.14", cache) / "istio-telemetry/grafana/dashboards/pilot-dashboard.json").unlink()
    monkeypatch.setenv(istio_charts.CACHE_ENV, str(cache))
    run = run_stack("dev")
    assert isinstance(run.error, DashboardsMissingError)
    assert "pilot-dashboard.json" in str(run.error) and "make istio-charts" in str(run.error)
    assert run.resources == []
    assert run_stack("dev", {"observability.grafana": False}).error is None


def test_dashboards_are_compact_json(istio_chart_cache):
    from builders.charts import chart_source
    from config.settings import HelmSettings, IstioSettings, ObservabilitySettings

    charts = chart_source(IstioSettings(), HelmSettings())
    compact = istio_dashboards(charts, ObservabilitySettings(grafana=True))
    texts = [text for files in compact.values() for text in files.values()]
    assert texts and all("\n" not in text and json.loads(text) for text in texts)
    assert istio_dashboards(charts, ObservabilitySettings(grafana=False)) == {}


def test_the_signals_compute_what_they_say_under_prometheus(tmp_path):
    # hotel v1: 600 requests a minute, all 200, half under 50 ms and all under 100 ms;
    # hotel v2: 500 answered 200 and 100 answered 503 a minute, all between 100 ms and 1 s.
    labels = 'reporter="destination",destination_workload_namespace="{ns}",destination_service_name="hotel",destination_version="{v}"'
    series = [{"series": f'istio_requests_total{{{labels.format(ns=NAMESPACE, v=v)},response_code="{code}"}}', "values": f"0+{n}x30"}
              for v, code, n in (("v1", "200", 600), ("v2", "200", 500), ("v2", "503", 100))]
    series += [{"series": f'istio_request_duration_milliseconds_bucket{{{labels.format(ns=NAMESPACE, v=v)},le="{le}"}}', "values": f"0+{n}x30"}
               for v, buckets in (("v1", {"50": 300, "100": 600, "+Inf": 600}), ("v2", {"100": 0, "1000": 600, "+Inf": 600}))
               for le, n in buckets.items()]
    # A namespace the scope does not cover must not count.
    series.append({"series": f'istio_requests_total{{{labels.format(ns="elsewhere", v="v1")},response_code="503"}}', "values": "0+999x30"})
    scope = Scope(NAMESPACE, "hotel")

    def expect(expression, v1, v2):
        return {"expr": expression, "eval_time": "20m", "exp_samples": [
            {"labels": f'{{destination_workload_namespace="{NAMESPACE}",destination_service_name="hotel",destination_version="{v}"}}',
             "value": value} for v, value in (("v1", v1), ("v2", v2))]}

    checks = [expect(requests_served(scope, "5m"), 3000, 3000), expect(request_rate(scope, "5m"), 10, 10),
              # 1 - (5xx per second / requests per second), in the order Prometheus rounds it: 5/6
              expect(success_ratio(scope, "5m"), 1, 1 - (100 / 60) / 10),
              # p95 by linear interpolation within the bucket: v1 50 + 0.9 * 50, v2 100 + 0.95 * 900
              expect(p95_latency_ms(scope, "5m"), 95, 955)]
    (tmp_path / "signals.yml").write_text(yaml.safe_dump({"tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]}))
    _promtool("test", "rules", "signals.yml", cwd=tmp_path)


def test_the_charts_helper_containers_get_requests_limits_and_no_privileges(dev, current):
    # prometheus 19.6.1 / 27.20.0: configmapReload.prometheus.{resources,containerSecurityContext} default to {};
    # grafana 9.2.2: downloadDashboards.resources defaults to {} (it downloads only on current Istio).
    for run in (dev, current):
        reload = release(run, "prometheus")["values"]["configmapReload"]["prometheus"]
        assert set(reload["resources"]) == {"requests", "limits"}
        assert reload["containerSecurityContext"]["allowPrivilegeEscalation"] is False
        assert reload["containerSecurityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(release(current, "grafana")["values"]["downloadDashboards"]["resources"]) == {"requests", "limits"}


def test_prometheus_without_a_volume_cannot_fill_the_nodes_disk():
    run = run_stack("dev", {"observability.prometheus": True, "observability.storageSize": None})
    assert run.error is None, run.error
    server = release(run, "prometheus")["values"]["server"]
    assert server["persistentVolume"] == {"enabled": False} and server["emptyDir"]["sizeLimit"].endswith("Gi")


SECCOMP_1_18 = {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
RUNTIME_DEFAULT = {"seccompProfile": {"type": "RuntimeDefault"}}


def test_the_add_ons_run_confined_through_the_keys_their_pinned_charts_read(dev, prod, current):
    """The values, as read off the pinned charts' templates (prometheus 19.6.1 / 27.20.0 deploy.yaml, grafana 6.31.1 /
    9.2.2 _pod.tpl and serviceaccount, kiali-server 1.22.0 / 2.11.0 deployment.yaml). What the 1.6 line's charts
    render from them on a real server is checked by tests/test_real_cluster_1_18.py (the add-ons run confined)."""
    for run, kubernetes_1_18 in ((dev, True), (prod, True), (current, False)):
        pull = "Always" if run.stack == "prod" else "IfNotPresent"  # images.pullPolicy of the stack file
        prometheus = release(run, "prometheus")["values"]
        server = prometheus["server"]
        assert server["containerSecurityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                      "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
        assert server["image"] == {"pullPolicy": pull} and prometheus["configmapReload"]["prometheus"]["image"] == {"pullPolicy": pull}
        grafana = release(run, "grafana")["values"]
        assert grafana["image"] == {"pullPolicy": pull}
        assert grafana["containerSecurityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        kiali = release(run, "kiali")["values"]["deployment"]
        if kubernetes_1_18:  # only the pod annotation exists there
            assert server["podAnnotations"].items() >= SECCOMP_1_18.items() and "securityContext" not in server
            assert grafana["podAnnotations"].items() >= SECCOMP_1_18.items()
            assert grafana["serviceAccount"] == {"autoMount": False}
            assert kiali["pod_annotations"].items() >= SECCOMP_1_18.items()
        else:
            assert server["securityContext"] == RUNTIME_DEFAULT and SECCOMP_1_18.keys().isdisjoint(server["podAnnotations"])
            assert grafana["automountServiceAccountToken"] is False and "serviceAccount" not in grafana
            # Kiali 2.11's template replaces its default context with this one: every default is restated.
            assert kiali["security_context"] == {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                                                 "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}, **RUNTIME_DEFAULT}
