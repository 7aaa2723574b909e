"""The real engine: the pinned Pulumi CLI, language host, providers and policy pack preview every stack.

No cluster is reachable here, so the Kubernetes provider plans without a server (its unreachable-cluster mode).
The releases are given the real charts each stack pins (tests/real_charts.py); everything else is the committed stack
as users run it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from mesh_policies import POLICIES
from test_config_validation import BAD_CONFIGS, CLOUD_SECRETS

from harness.pulumi_cli import PROJECT, Workspace, planned_resources, policy_results
from harness.real_charts import real_charts
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import ROOT, run_stack

CLOUD_CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUbeeTravelsTestOnly\n-----END CERTIFICATE-----"
CLOUD_TIER = {"services.hotel.versions.v3": {"tier": "cloud"}, "services.hotel.weights.v3": 0,
              "cloudDatabase.host": "bee-db.example.com"}


@pytest.fixture(scope="module")
def charts():
    """The real charts every stack pins (tests/real_charts.py): Istio 1.6's folder and, where present, a helm.chartsDir."""
    found = real_charts()
    return {**found.edits("1.6.14"), **found.edits("1.30.3")}


STACKS = {  # real stack name -> (committed stack file it starts from, edits)
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "current": ("prod", CURRENT_ISTIO),
}


@pytest.fixture(scope="module")
def previews(tmp_path_factory, charts):
    """One real `pulumi preview --json --policy-pack policy` per stack, run side by side."""
    workspace = Workspace(tmp_path_factory.mktemp("real-engine"))
    for stack, (base, edits) in STACKS.items():
        workspace.init(stack, base, {**edits, **charts})
    with ThreadPoolExecutor(len(STACKS)) as pool:
        results = dict(zip(STACKS, pool.map(lambda stack: workspace.preview(stack, check=False), STACKS), strict=True))
    return workspace, results


@pytest.mark.parametrize("stack", list(STACKS))
def test_the_real_preview_succeeds(previews, stack):
    _, results = previews
    result = results[stack]
    assert result.returncode == 0, result.output[-6000:]
    assert result.json()["changeSummary"].get("create", 0) > 0


@pytest.mark.parametrize("stack", list(STACKS))
def test_the_real_engine_plans_what_the_mock_engine_registers(previews, charts, stack):
    _, results = previews
    base, edits = STACKS[stack]
    mock = run_stack(base, {**edits, **charts})
    assert mock.error is None, mock.error
    declared = {(resource.type, resource.name) for resource in mock.resources}
    planned = planned_resources(results[stack].events)
    assert set(planned) == declared, (
        f"only in the real plan: {sorted(set(planned) - declared)}\nonly in the mock run: {sorted(declared - set(planned))}")
    assert set(planned.values()) == {"create"}


@pytest.mark.parametrize("stack", list(STACKS))
def test_the_policy_pack_ran_in_the_real_engine_and_passed(previews, stack):
    _, results = previews
    passed, failed = policy_results(results[stack].events)
    assert failed == set()
    assert {policy.name for policy in POLICIES} <= passed, f"never evaluated: {sorted({p.name for p in POLICIES} - passed)}"
    summary = next(event["summaryEvent"] for event in results[stack].events if "summaryEvent" in event)
    # The engine names a local pack "<name>|local|<path>".
    assert [pack.split("|")[0] for pack in summary["PolicyPacks"]] == ["bee-travels-mesh"]


def test_no_secret_reaches_the_real_previews_output(tmp_path, charts):
    """A stack whose cloud tier needs both secret keys: their values appear nowhere the CLI writes."""
    workspace = Workspace(tmp_path)
    workspace.init("dev", "dev", {**CLOUD_TIER, **charts},
                   secret_values={"cloudDatabaseUrl": CLOUD_SECRETS["cloudDatabaseUrl"], "cloudDatabaseCert": CLOUD_CERT})
    stack_file = (workspace.project / "Pulumi.dev.yaml").read_text()
    result = workspace.preview("dev")
    planned = planned_resources(result.events)
    assert ("kubernetes:core/v1:Secret", "bee-travels-cloud-database") in planned, "the cloud tier's Secret is not planned"
    written = "\n".join([result.output, json.dumps(result.events), stack_file])
    for value in (CLOUD_SECRETS["cloudDatabaseUrl"], "MIIBszCCAVmgAwIBAgIUbeeTravelsTestOnly", workspace.passphrase):
        assert value not in written
    assert "secure:" in stack_file


# ---- bad stack files through the real CLI --------------------------------------------------------

@pytest.fixture(scope="module")
def refused(tmp_path_factory, charts):
    """Every crafted bad stack file of the offline tests, previewed by the real CLI (a few at a time)."""
    workspace = Workspace(tmp_path_factory.mktemp("bad-configs"))
    names = [f"bad{index}" for index in range(len(BAD_CONFIGS))]
    for name, (base, overrides, secret_values, _, _) in zip(names, BAD_CONFIGS, strict=True):
        workspace.init(name, base, {**charts, **overrides}, secret_values=secret_values)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(names, pool.map(lambda name: workspace.preview(name, check=False), names), strict=True))


@pytest.mark.parametrize(("index", "case"), list(enumerate(BAD_CONFIGS)),
                         ids=[f"{case[0]}:{case[3]}:{case[4][:24]}" for case in BAD_CONFIGS])
def test_the_real_cli_refuses_a_bad_stack_file_before_planning_anything(refused, index, case):
    base, _, _, path, fragment = case
    result = refused[f"bad{index}"]
    assert result.returncode != 0
    diagnostics = "\n".join(event["diagnosticEvent"]["message"] for event in result.events if "diagnosticEvent" in event)
    # The real stack is named bad<N>, so the message names its own stack file.
    assert f"Pulumi.bad{index}.yaml has " in diagnostics, diagnostics[-3000:]
    line = next((line for line in diagnostics.splitlines() if f"{PROJECT}:{path}:" in line), None)
    assert line is not None, f"no problem reported for {path}:\n{diagnostics[-3000:]}"
    assert fragment in line
    assert planned_resources(result.events) == {}, "a refused stack must not plan any resource"


# ---- the project file the CLI checks before the program runs -------------------------------------

def _declare_secret_keys_without_default(project_yaml: Path) -> None:
    """Pulumi.yaml as it was: both secret keys declared in the project's config block, with no default."""
    document = yaml.safe_load(project_yaml.read_text())
    for key in ("cloudDatabaseUrl", "cloudDatabaseCert"):
        document["config"][key] = {"type": "string", "secret": True, "description": "declared as before"}
    project_yaml.write_text(yaml.safe_dump(document, sort_keys=False))


def test_the_old_project_file_stops_the_real_cli_and_the_committed_one_does_not(tmp_path, charts):
    workspace = Workspace(tmp_path)
    workspace.init("dev", "dev", {**charts, "services.hotel.weights.v2": 40})  # refused by the program, if it runs
    project_yaml = workspace.project / "Pulumi.yaml"
    project_yaml.unlink()
    project_yaml.write_text((ROOT / "Pulumi.yaml").read_text())
    committed = workspace.preview("dev", check=False)
    assert "Pulumi.dev.yaml has " in committed.output + json.dumps(committed.events), "the program did not run"
    _declare_secret_keys_without_default(project_yaml)
    old = workspace.preview("dev", check=False)
    assert old.returncode != 0
    assert "Stack 'dev' is missing configuration values 'cloudDatabaseCert' and 'cloudDatabaseUrl'" in old.output


def test_every_key_the_project_declares_has_a_default():
    """The CLI requires every declared key without a default on every stack; none may lack one."""
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert [key for key, spec in declared.items() if isinstance(spec, dict) and "default" not in spec and "value" not in spec] == []

