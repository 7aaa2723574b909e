"""Pulumi.dev-current.yaml is dev on the current generation (Istio 1.30, Kubernetes 1.33), and stays so.

Only the Istio and Kubernetes versions, and what they force, may differ from Pulumi.dev.yaml: the same services,
versions, canaries, security and observability. The program evaluates it under the mock engine, its objects
validate against Kubernetes 1.33 and Istio 1.30, and the real CLI previews it with the policy pack.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from mesh_policies import POLICIES

from harness import schema_validation as sv
from harness.pulumi_cli import Workspace, planned_resources, policy_results
from harness.real_charts import real_charts
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import PROJECT, ROOT, run_stack, unwrap

STACK = "dev-current"
# Each key that may differ from dev, and why the current generation forces it.
FORCED = {
    "kubernetesVersion": "a kind node that starts on cgroup v2 hosts (1.19+), in Istio 1.30's 1.32-1.36",
    "istio.version": "the current generation",
    "istio.jwtPolicy": "dev's kind 1.18 API server issues no projected service-account tokens; 1.33 does, and current "
                       "Istio uses nothing else",
}
CURRENT = {**CURRENT_ISTIO, "istio.jwtPolicy": "third-party-jwt"}
# Objects whose presence follows the Istio release, not the stack file: Istio 1.6's Grafana dashboards ship in its
# release archive (current Grafana downloads them by id), and the current Jaeger reads a configuration file.
ONLY_ON_1_6 = {("kubernetes:core/v1:ConfigMap", "observability-istio-grafana-dashboards"),
               ("kubernetes:core/v1:ConfigMap", "observability-istio-services-grafana-dashboards")}
ONLY_ON_CURRENT = {("kubernetes:core/v1:ConfigMap", "observability-tracing-config")}


def stack_config(stack: str) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.removeprefix(f"{PROJECT}:"): value for key, value in config.items()}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    return {path: leaf for key, child in value.items() for path, leaf in flatten(child, f"{prefix}.{key}" if prefix else key).items()}


def test_it_differs_from_dev_only_where_the_current_generation_forces_it():
    dev, current = flatten(stack_config("dev")), flatten(stack_config(STACK))
    differing = {path for path in dev.keys() | current.keys() if dev.get(path) != current.get(path)}
    assert differing <= set(FORCED), f"keep Pulumi.{STACK}.yaml in step with Pulumi.dev.yaml: {sorted(differing - set(FORCED))}"
    assert {path: current[path] for path in FORCED} == CURRENT


@pytest.fixture(scope="module")
def runs():
    return {"dev": run_stack("dev"), STACK: run_stack(STACK), "dev on current": run_stack("dev", CURRENT)}


def test_the_program_evaluates_it_as_dev_on_current_istio(runs):
    current, expected = runs[STACK], runs["dev on current"]
    assert current.error is None, current.error
    assert current.outputs["istioVersion"] == CURRENT_ISTIO["istio.version"]
    registered = {(r.type, r.name): unwrap(r.inputs, mask="<secret>") for r in current.resources}
    assert registered == {(r.type, r.name): unwrap(r.inputs, mask="<secret>") for r in expected.resources}


def test_it_deploys_devs_services_canaries_security_and_observability(runs):
    dev, current = runs["dev"], runs[STACK]
    assert dev.error is None, dev.error
    kept = ("canaryWeights", "matchRoutes", "mtlsMode", "appNamespace", "observability")
    assert {key: current.outputs[key] for key in kept} == {key: dev.outputs[key] for key in kept}
    declared = {(r.type, r.name) for r in dev.resources}
    assert {(r.type, r.name) for r in current.resources} == declared - ONLY_ON_1_6 | ONLY_ON_CURRENT


def test_its_objects_validate_against_kubernetes_1_33_and_istio_1_30(runs):
    sv.require_kubernetes_schemas("1.33")
    objects = [r.manifest() for r in runs[STACK].kubernetes_objects()]
    istio = [o for o in objects if ".istio.io/" in o.get("apiVersion", "")]
    assert [e for o in objects if o not in istio for e in sv.validate_kubernetes_object(o, "1.33")] == []
    sv.require_istio_schemas("1.30")
    assert [e for o in istio for e in sv.validate_istio_object(o, "1.30")] == []


def test_the_real_cli_previews_it_with_the_policy_pack(tmp_path):
    """As tests/test_real_engine.py does for dev and prod: no cluster, the real charts, the committed stack file."""
    workspace = Workspace(tmp_path / "workspace")
    charts = real_charts().edits(CURRENT_ISTIO["istio.version"])
    workspace.init(STACK, STACK, charts)
    result = workspace.preview(STACK)
    planned = planned_resources(result.events)
    mock = run_stack(STACK, charts)
    assert mock.error is None, mock.error
    assert set(planned) == {(r.type, r.name) for r in mock.resources} and set(planned.values()) == {"create"}
    passed, failed = policy_results(result.events)
    assert failed == set() and {policy.name for policy in POLICIES} <= passed
