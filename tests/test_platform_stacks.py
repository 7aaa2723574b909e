"""A platform stack (Istio, the add-ons, mesh-wide policy) and app stacks on it, each with a namespace of its own."""

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_observability import promtool

from builders.istio_fence import ISTIOD_PODS, MERGED_METRICS_PORT
from builders.kube import NAMESPACE_LABEL
from config.settings import PROJECT
from tools.stack_files import ROOT, declared_platform, load_stack_settings, stack_file_config
from tools.stack_run import run_stack

DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
PLATFORM_KEYS = ("kubernetesVersion", "istio", "helm", "observability")


def app_stack_values(platform: str, namespace: str, host: str) -> dict:
    """An app stack of the whole app: dev's services and security in a namespace and on a host of its own."""
    keep = ("production", "mongodb", "security", "services")
    values = {key: copy.deepcopy(DEV[f"{PROJECT}:{key}"]) for key in keep}
    return {**values, "platformStack": platform, "appNamespace": namespace,
            "gateway": {"hosts": [host], "tls": {"mode": "self-signed"}}}


def write_stack(folder: Path, stack: str, values: dict) -> Path:
    path = folder / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": stack_file_config(values)}))
    return path


@pytest.fixture
def project(tmp_path, istio_chart_cache):
    """A project folder: `platform` (the dev stack file, on its own host, listing team-a and team-b) and both app stacks."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    platform = {key.removeprefix(f"{PROJECT}:"): value for key, value in copy.deepcopy(DEV).items()}
    platform["gateway"]["hosts"] = ["bee.example.com"]
    platform["appStacks"] = ["team-a", "team-b"]
    write_stack(tmp_path, "platform", platform)
    write_stack(tmp_path, "team-a", app_stack_values("platform", "team-a", "a.bee.example.com"))
    write_stack(tmp_path, "team-b", app_stack_values("platform", "team-b", "b.bee.example.com"))
    return tmp_path


def edit(folder: Path, stack: str, change) -> None:
    path = folder / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    values = {key.removeprefix(f"{PROJECT}:"): value for key, value in document["config"].items()}
    change(values)
    write_stack(folder, stack, values)


def platform_outputs(**changes):
    return {"istioVersion": "1.6.14", "istioRevision": "", "appStacks": {"team-a": "team-a", "team-b": "team-b"},
            "observability": {"prometheus": "kubectl -n istio-system port-forward svc/prometheus 9090:9090"}, **changes}


def run_app(project, stack="team-a", outputs=None):
    return run_stack(stack, stack_file=project / f"Pulumi.{stack}.yaml",
                     other_stacks={"platform": platform_outputs() if outputs is None else outputs})


def run_platform(project):
    return run_stack("platform", stack_file=project / "Pulumi.platform.yaml")


def policy(run, name):
    return run.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"security-istio-system-{name}-network").inputs["spec"]


def peers(rules, port):
    return [peer for rule in rules if any(p["port"] == port for p in rule["ports"]) for peer in rule.get("from", rule.get("to", []))]


# ---- the platform ------------------------------------------------------------------------------------------------

def test_the_platform_admits_each_app_stacks_namespace_through_the_istio_system_fence(project):
    run = run_platform(project)
    assert run.error is None, run.error
    namespaces = [peer["namespaceSelector"]["matchLabels"] for peer in peers(policy(run, "istiod")["ingress"], 15012)
                  if "namespaceSelector" in peer and "podSelector" not in peer]
    assert [labels for labels in namespaces] == [{NAMESPACE_LABEL: name} for name in ("bee-travels", "team-a", "team-b")]
    scraped = peers(policy(run, "prometheus")["egress"], MERGED_METRICS_PORT)
    assert [peer["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL] for peer in scraped] == ["bee-travels", "team-a", "team-b"]
    frontends = peers(policy(run, "ingress-gateway")["egress"], 9000)
    assert {peer["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL] for peer in frontends} == {"bee-travels", "team-a", "team-b"}
    assert run.outputs["appStacks"] == {"team-a": "team-a", "team-b": "team-b"}
    assert ISTIOD_PODS == policy(run, "istiod")["podSelector"]["matchLabels"]


def test_the_platforms_prometheus_holds_every_app_stacks_services_to_their_service_levels(project):
    edit(project, "team-b", lambda values: values.update(serviceLevel={"minSuccessRatePercent": 97}))
    run = run_platform(project)
    assert run.error is None, run.error
    files = run.named("kubernetes:helm.sh/v3:Release", "observability-prometheus").inputs["values"]["serverFiles"]
    groups = {group["name"]: group["rules"] for group in files["recording_rules.yml"]["groups"]}
    assert {"bee-travels-hotel-signals", "bee-travels-team-a-hotel-signals", "bee-travels-team-b-hotel-signals"} <= set(groups)
    # Each namespace's hotel is recorded from its own namespace's requests, so two hotels never share a series.
    assert 'destination_workload_namespace="team-a"' in groups["bee-travels-team-a-hotel-signals"][0]["expr"]
    assert 'destination_workload_namespace="team-b"' not in groups["bee-travels-team-a-hotel-signals"][0]["expr"]
    alerts = {group["name"]: group["rules"] for group in files["alerting_rules.yml"]["groups"]}
    team_b = [rule for rule in alerts["bee-travels-team-b-hotel-service-level"] if rule["alert"] == "BeeTravelsSuccessRateBelowServiceLevel"]
    assert team_b and all(rule["labels"]["namespace"] == "team-b" and rule["expr"].endswith("< 0.97") for rule in team_b)
    own = [rule for rule in alerts["bee-travels-hotel-service-level"] if rule["alert"] == "BeeTravelsSuccessRateBelowServiceLevel"]
    assert all('destination_workload_namespace="bee-travels"' in rule["expr"] and not rule["expr"].endswith("< 0.97") for rule in own)


# ---- an app stack ------------------------------------------------------------------------------------------------

def test_an_app_stack_deploys_its_namespace_on_the_platforms_istio_and_installs_none_of_its_own(project):
    run = run_app(project)
    assert run.error is None, run.error
    assert not run.of_type("kubernetes:helm.sh/v3:Release") and not run.of_type("Observability", "IstioMesh")
    objects = [resource.manifest() for resource in run.kubernetes_objects()]
    # In Istio's namespace only its own TLS Secret, named for its namespace: app stacks share the gateway's namespace.
    assert [(o["kind"], o["metadata"]["name"]) for o in objects if o["metadata"].get("namespace") == "istio-system"] == \
        [("Secret", "team-a-bee-travels-self-signed-tls")]
    gateway = next(o for o in objects if o["kind"] == "Gateway")
    assert gateway["metadata"]["namespace"] == "team-a" and gateway["spec"]["servers"][0]["hosts"] == ["a.bee.example.com"]
    assert gateway["spec"]["servers"][-1]["tls"]["credentialName"] == "team-a-bee-travels-self-signed-tls"
    assert not any(o["kind"] == "EnvoyFilter" and o["metadata"]["namespace"] == "istio-system" for o in objects)
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["name"] == "team-a" and namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    # dev's Istio 1.6 sidecars prove themselves with the pod's token: said on the namespace, for the policy pack.
    assert namespace["metadata"]["annotations"] == {"bee-travels.io/sidecar-jwt-policy": "first-party-jwt"}
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] != "Namespace"} <= {"team-a", "istio-system"}
    # Read through a StackReference to the platform: where its add-ons answer, for the commands run on this stack.
    assert run.outputs["observability"] == platform_outputs()["observability"] and run.outputs["platformStack"] == "platform"


def test_an_app_stack_takes_istio_and_the_add_on_settings_from_its_platforms_stack_file(project):
    edit(project, "platform", lambda values: values["observability"]["tracing"].update(enabled=False))
    settings = load_stack_settings("team-a", project / "Pulumi.team-a.yaml")
    platform = load_stack_settings("platform", project / "Pulumi.platform.yaml")
    for key in ("kubernetes_version", "istio", "helm", "observability"):
        assert getattr(settings, key) == getattr(platform, key)
    assert settings.app_namespace == "team-a" and not settings.observability.tracing.enabled
    # Without tracing on the platform, the app namespace's sidecars are not let out to the collector.
    run = run_app(project)
    istio = run.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "security-istio-network").inputs["spec"]
    assert [port["port"] for port in istio["egress"][0]["ports"]] == [15012]


# ---- refused before anything is registered -----------------------------------------------------------------------

def refused(run, stack_file, *expected):
    assert run.error is not None and not run.resources, "a refused link must register nothing"
    message = str(run.error)
    assert message.startswith(f"{stack_file} has"), message
    for text in expected:
        assert text in message, message
    return message


@pytest.mark.parametrize("key", PLATFORM_KEYS)
def test_an_app_stack_that_sets_a_platform_key_is_told_where_it_belongs(project, key):
    edit(project, "team-a", lambda values: values.update({key: DEV.get(f"{PROJECT}:{key}", {"chartsDir": "charts"})}))
    refused(run_app(project), "Pulumi.team-a.yaml", f"{PROJECT}:{key}: is the platform's to decide: Pulumi.platform.yaml sets it")


def test_an_app_stack_its_platform_does_not_list_is_refused_on_both_sides(project):
    edit(project, "platform", lambda values: values.update(appStacks=["team-b"]))
    refused(run_app(project), "Pulumi.team-a.yaml", "does not list team-a under appStacks; add it there and update platform first")
    edit(project, "platform", lambda values: values.update(appStacks=["team-a", "team-b", "team-c"]))
    refused(run_platform(project), "Pulumi.platform.yaml", "lists team-c, but there is no Pulumi.team-c.yaml")
    write_stack(project, "team-c", app_stack_values("other", "team-c", "c.bee.example.com"))
    refused(run_platform(project), "Pulumi.platform.yaml", "lists team-c, whose stack file does not name platform as its platformStack")


def test_an_app_stack_on_an_app_stack_or_on_itself_is_refused(project):
    edit(project, "team-b", lambda values: values.update(platformStack="team-a"))
    refused(run_app(project, "team-b"), "Pulumi.team-b.yaml", "names team-a, itself an app stack on platform")
    edit(project, "team-b", lambda values: values.update(platformStack="team-b"))
    refused(run_app(project, "team-b"), "Pulumi.team-b.yaml", "names this stack itself")


def test_a_broken_app_stack_file_stops_its_platform_naming_the_app_stacks_own_problem(project):
    edit(project, "team-b", lambda values: values["services"]["hotel"].update(weights={"v1": 60, "v2": 60}))
    message = refused(run_platform(project), "Pulumi.platform.yaml", "lists team-b, whose stack file is not valid",
                      "Pulumi.team-b.yaml has 1 configuration problem", f"{PROJECT}:services.hotel.weights")
    assert "team-a" not in message


@pytest.mark.parametrize("stack, change, expected", [
    ("team-b", lambda values: values.update(appNamespace="team-a"), "team-a and team-b both deploy to namespace team-a"),
    ("team-a", lambda values: values.update(appNamespace="bee-travels"), "platform and team-a both deploy to namespace bee-travels"),
    ("team-b", lambda values: values["gateway"].update(hosts=["*.bee.example.com"]),
     "team-a and team-b serve the same Gateway hosts (a.bee.example.com and *.bee.example.com)"),
    ("platform", lambda values: values["gateway"].update(hosts=["*"]), "platform and team-a serve the same Gateway hosts"),
])
def test_two_stacks_of_one_platform_may_not_share_a_namespace_or_a_gateway_host(project, stack, change, expected):
    edit(project, stack, change)
    refused(run_platform(project), "Pulumi.platform.yaml", expected)


@pytest.mark.parametrize("outputs, expected", [
    ({}, "names platform, which has not been deployed; run `pulumi up --stack platform` first"),
    (platform_outputs(appStacks={"team-b": "team-b"}), 'whose last update admitted {"team-b": "team-b"}, not team-a in namespace team-a'),
    (platform_outputs(appStacks={"team-a": "elsewhere"}), "not team-a in namespace team-a"),
    (platform_outputs(istioVersion="1.6.13"), "which runs Istio 1.6.13 (revision '') while its stack file now says 1.6.14"),
])
def test_an_app_stack_goes_only_onto_a_deployed_platform_that_admitted_it_at_its_istio(project, outputs, expected):
    refused(run_app(project, outputs=outputs), "Pulumi.team-a.yaml", f"{PROJECT}:platformStack: ", expected)


def test_a_failing_hotel_in_one_app_stack_alerts_for_that_namespace_alone_under_prometheus(project, tmp_path):
    """promtool evaluates the platform's rules on series from two namespaces that both run hotel v1 and v2."""
    run = run_platform(project)
    files = run.named("kubernetes:helm.sh/v3:Release", "observability-prometheus").inputs["values"]["serverFiles"]
    (tmp_path / "recording_rules.yml").write_text(yaml.safe_dump(files["recording_rules.yml"]))
    alerts = {"groups": [{**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"} for rule in group["rules"]]}
                         for group in files["alerting_rules.yml"]["groups"]]}
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(alerts))

    def served(namespace, version, failing):
        common = (f'reporter="destination",destination_workload_namespace="{namespace}",destination_service_name="hotel",'
                  f'destination_version="{version}"')
        series = [{"series": f'istio_requests_total{{{common},response_code="200"}}', "values": "0+600x40"},
                  {"series": f'istio_request_duration_milliseconds_bucket{{{common},le="+Inf"}}', "values": "0+600x40"},
                  {"series": f'istio_request_duration_milliseconds_bucket{{{common},le="100"}}', "values": "0+600x40"}]
        if failing:
            series.append({"series": f'istio_requests_total{{{common},response_code="503"}}', "values": "0+60x40"})
        return series

    series = [s for namespace in ("bee-travels", "team-a") for version in ("v1", "v2")
              for s in served(namespace, version, failing=(namespace, version) == ("team-a", "v2"))]
    labels = {"alertname": "BeeTravelsSuccessRateBelowServiceLevel", "severity": "warning", "namespace": "team-a", "service": "hotel",
              "version": "v2", "destination_workload_namespace": "team-a", "destination_service_name": "hotel", "destination_version": "v2"}
    case = {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "30m", "alertname": "BeeTravelsSuccessRateBelowServiceLevel", "exp_alerts": [{"exp_labels": labels}]}]}
    (tmp_path / "cases.yml").write_text(yaml.safe_dump({"rule_files": ["recording_rules.yml", "alerts.yml"],
                                                        "evaluation_interval": "1m", "tests": [case]}))
    done = subprocess.run([promtool(), "test", "rules", "cases.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_platform_keeps_every_app_stack_still_deployed_on_it(project):
    edit(project, "platform", lambda values: values.update(appStacks=["team-a"]))
    last = {"istioVersion": "1.6.14", "istioRevision": "", "appStacks": {"team-a": "team-a", "team-b": "team-b"}}
    still_there = run_stack("platform", stack_file=project / "Pulumi.platform.yaml", last_outputs=last,
                            other_stacks={"team-b": {"appNamespace": "team-b", "istioVersion": "1.6.14"}})
    refused(still_there, "Pulumi.platform.yaml", f"{PROJECT}:appStacks: drops team-b, which is still deployed in namespace team-b",
            "`pulumi destroy --stack team-b` first")
    destroyed = run_stack("platform", stack_file=project / "Pulumi.platform.yaml", last_outputs=last, other_stacks={"team-b": {}})
    assert destroyed.error is None, destroyed.error
    assert destroyed.outputs["appStacks"] == {"team-a": "team-a"}


def test_offline_an_app_stack_renders_on_its_platform_as_the_platforms_file_declares_it(project):
    declared = declared_platform("team-a", project / "Pulumi.team-a.yaml")
    assert declared == {"platform": {"istioVersion": "1.6.14", "istioRevision": "", "appStacks": {"team-a": "team-a"}}}
    run = run_stack("team-a", stack_file=project / "Pulumi.team-a.yaml", other_stacks=declared)
    assert run.error is None, run.error
    assert declared_platform("platform", project / "Pulumi.platform.yaml") == {}
    edit(project, "team-a", lambda values: values.update(istio={}))
    assert declared_platform("team-a", project / "Pulumi.team-a.yaml") == {}  # the program reports that file itself
