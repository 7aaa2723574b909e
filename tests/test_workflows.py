"""The GitHub workflows call what exists here, preview with the policy pack, and gate prod behind dev and approval.

(Their schema is checked by `make lint`: check-jsonschema --builtin-schema vendor.github-workflows.)
"""

import os
import re

import pytest
import yaml

from tools.stack_run import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub means the string.
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def run_lines() -> list[str]:
    return [line for path in WORKFLOWS.glob("*.yml") for job in load(path.name)["jobs"].values()
            for step in job.get("steps", []) for line in str(step.get("run", "")).splitlines()]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_every_make_target_and_script_a_workflow_runs_exists():
    targets = {t for line in run_lines() for t in re.findall(r"\bmake ([a-z][a-z0-9-]*)", line)}
    assert targets and targets <= makefile_targets()
    scripts = {s for line in run_lines() for s in re.findall(r"(scripts/[\w.-]+)", line)}
    for script in scripts:
        assert os.access(ROOT / script, os.X_OK), script


def test_pull_requests_preview_dev_and_prod_with_the_policy_pack_and_comment():
    preview = load("preview.yml")
    assert "pull_request" in preview["on"]
    job = preview["jobs"]["preview"]
    assert job["needs"] == "test" and job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["uses"] == "./.github/workflows/pulumi-stack.yml" and job["with"]["command"] == "preview"
    action = next(s for s in load("pulumi-stack.yml")["jobs"]["pulumi"]["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
    assert action["uses"] == "pulumi/actions@v7"
    assert action["with"]["policyPacks"] == "policy" and "comment-on-pr" in action["with"]
    assert "make test" in [s.get("run") for s in preview["jobs"]["test"]["steps"]]


def test_pull_requests_get_one_traffic_summary_from_the_base_and_head_renders():
    runs = "\n".join(str(s.get("run", "")) for s in load("preview.yml")["jobs"]["test"]["steps"])
    # The base is rendered by its own program, so the summary compares what each side would deploy.
    assert "git worktree add ../base \"$BASE_SHA\"" in runs and "cd ../base && .venv/bin/python -m tools.render" in runs
    assert ".venv/bin/python -m tools.traffic_diff rendered-base rendered" in runs
    # One comment found by its marker and updated, never one per push (or someone else's edited).
    assert "startswith(\\\"$marker\\\")" in runs and "-X PATCH" in runs


def test_pull_requests_fail_on_an_error_istioctl_analyze_finds_in_each_rendered_stack():
    steps = load("preview.yml")["jobs"]["test"]["steps"]
    runs = [line.strip() for step in steps for line in str(step.get("run", "")).splitlines()]
    assert {"make analyze STACK=dev", "make analyze STACK=prod"} <= set(runs)
    # A step runs its lines under `bash -e`: the first stack's errors stop the job.
    analyze = next(step for step in steps if "make analyze STACK=dev" in str(step.get("run", "")))
    assert "continue-on-error" not in analyze and "|| true" not in analyze["run"]


def test_pulumi_version_in_ci_is_the_pinned_toolchains():
    pinned = re.search(r"^PULUMI_VERSION=(\S+)", (ROOT / "tools" / "toolchain" / "versions").read_text(), re.MULTILINE).group(1)
    action = next(s for s in load("pulumi-stack.yml")["jobs"]["pulumi"]["steps"] if "pulumi/actions" in s.get("uses", ""))
    assert action["with"]["pulumi-version"] == pinned


def test_prod_deploys_only_after_dev_and_behind_the_production_environment():
    jobs = load("deploy.yml")["jobs"]
    assert load("deploy.yml")["on"]["push"]["branches"] == ["main"]
    assert jobs["dev"]["needs"] == "test" and jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["with"] == {"command": "up", "stack": "prod", "environment": "production"}
    assert load("pulumi-stack.yml")["jobs"]["pulumi"]["environment"] == "${{ inputs.environment }}"


def test_e2e_runs_nightly_and_on_demand_on_a_cgroup_v1_runner_and_always_cleans_up():
    e2e = load("e2e.yml")
    assert "schedule" in e2e["on"] and "workflow_dispatch" in e2e["on"]
    job = e2e["jobs"]["kind"]
    assert "cgroup-v1" in job["runs-on"]
    steps = [s.get("run") for s in job["steps"]]
    assert steps.index("make up") < steps.index("make e2e-checks")
    # Each cleanup command is its own always() step: a failed destroy (or up) cannot skip deleting the cluster.
    destroy, delete = job["steps"][-2:]
    assert (destroy["run"], destroy["if"]) == ("make destroy", "always()")
    assert (delete["run"], delete["if"]) == ("make delete-cluster", "always()")


def test_the_promotion_loop_runs_hourly_per_stack_with_history_and_its_secrets():
    workflow = load("promote.yml")
    assert workflow["on"]["schedule"] and "workflow_dispatch" in workflow["on"]
    job = workflow["jobs"]["promote"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # bake time comes from the history of the stack file
    loop = next(s for s in job["steps"] if "tools.promotion_loop" in str(s.get("run", "")))
    assert loop["env"]["CANARY_WEBHOOK_URL"] == "${{ secrets.CANARY_WEBHOOK_URL }}"
    assert '--stack "${{ matrix.stack }}"' in loop["run"]


def test_drift_is_checked_nightly_both_ways_and_each_check_fails_on_its_own():
    job = load("drift.yml")["jobs"]["drift"]
    assert "schedule" in load("drift.yml")["on"] and job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    runs = {step.get("name"): step for step in job["steps"]}
    preview = runs["A refreshed preview plans nothing"]["run"]
    assert "--refresh" in preview and "--expect-no-changes" in preview and "--policy-pack policy" in preview
    routes = runs["The live routes are the stack file's"]
    assert "tools.drift" in routes["run"] and routes["if"] == "always()"


@pytest.mark.parametrize("name, writes", [("preview.yml", {"pull-requests"}), ("deploy.yml", set()), ("e2e.yml", set()),
                                          ("promote.yml", {"contents", "pull-requests"}), ("drift.yml", set())])
def test_workflows_grant_no_more_than_they_need(name, writes):
    permissions = load(name)["permissions"]
    assert permissions.get("contents") == ("write" if "contents" in writes else "read")
    assert {scope for scope, level in permissions.items() if level == "write"} == writes
    assert "permissions" not in load("pulumi-stack.yml")  # the shared job inherits its caller's
