"""Changes to a running stack that an update cannot make safely are refused against what the last update deployed."""

from __future__ import annotations

import pytest

from config.stack_config import StackConfigError
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import run_stack


def _deployed(stack: str, overrides: dict | None = None) -> dict:
    """The outputs a successful `pulumi up` of this stack leaves, as the next run reads them back."""
    first = run_stack(stack, overrides)
    assert first.error is None, first.error
    return first.outputs


def _refusal(run, stack: str, key: str) -> str:
    assert isinstance(run.error, StackConfigError), f"expected the change to be refused, got {run.error!r}"
    assert run.resources == [], "a refused change must not register anything"
    message = str(run.error)
    assert message.startswith(f"Pulumi.{stack}.yaml has 1 configuration problem")
    line = next((line for line in message.splitlines() if f"bee-travels-mesh:{key}:" in line), None)
    assert line is not None, message
    return line


def test_a_deployed_stack_records_what_the_next_run_compares():
    outputs = _deployed("prod")
    assert (outputs["istioVersion"], outputs["istioRevision"], outputs["mongodbMembers"]) == ("1.6.14", "", 3)
    json_only = {f"services.{name}.{key}": value for name in ("destination", "hotel", "carrental")
                 for key, value in (("versions", {"v1": {"tier": "json"}}), ("weights", {"v1": 100}), ("matchRoutes", []))}
    assert _deployed("dev", {"mongodb.enabled": False, **json_only})["mongodbMembers"] == 0


def test_a_stack_never_deployed_accepts_any_istio_release_and_revision():
    assert run_stack("prod", {**CURRENT_ISTIO, "istio.revision": "1-30"}, last_outputs={}).error is None


def test_switching_a_running_stack_between_istio_minors_is_refused_with_the_migration_path():
    line = _refusal(run_stack("prod", CURRENT_ISTIO, last_outputs=_deployed("prod")), "prod", "istio.version")
    assert "runs Istio 1.6.14" in line and 'keep istio.version: "1.6.14"' in line.lower()
    assert "new stack for a new cluster" in line and "CRDs" in line
    # A patch release within the minor is an ordinary update.
    patch_behind = {**_deployed("prod"), "istioVersion": "1.6.13"}
    assert run_stack("prod", last_outputs=patch_behind).error is None


@pytest.mark.parametrize(("before", "after"), [("", "1-6"), ("1-6", ""), ("1-6", "1-6-14")])
def test_changing_the_revision_of_a_running_mesh_is_refused_with_the_steps(before, after):
    deployed = _deployed("prod", {"istio.revision": before})
    line = _refusal(run_stack("prod", {"istio.revision": after}, last_outputs=deployed), "prod", "istio.revision")
    assert f'keep istio.revision: "{before}"' in line and "create a new stack" in line
    assert run_stack("prod", {"istio.revision": before}, last_outputs=deployed).error is None


def test_turning_a_standalone_mongodb_into_a_replica_set_or_back_is_refused():
    standalone = _deployed("prod", {"mongodb.replicas": 1, "production": False})
    line = _refusal(run_stack("prod", {"production": False}, last_outputs=standalone), "prod", "mongodb.replicas")
    assert "changes 1 -> 3" in line and "Keep mongodb.replicas: 1" in line and "mongodump" in line
    line = _refusal(run_stack("dev", {"mongodb.replicas": 1}, last_outputs=_deployed("dev", {"mongodb.replicas": 3})),
                    "dev", "mongodb.replicas")
    assert "changes 3 -> 1" in line


def test_a_replica_set_may_grow_and_shrink_between_odd_member_counts():
    three = _deployed("prod")
    assert run_stack("prod", {"mongodb.replicas": 5}, last_outputs=three).error is None
    assert run_stack("prod", {"mongodb.replicas": 3}, last_outputs=_deployed("prod", {"mongodb.replicas": 5})).error is None


# ---- autoscaling turned on and off -----------------------------------------------------------------

def _scaling(run, name: str):
    deployment = run.named("Deployment", name)
    autoscalers = [r for r in run.of_type("HorizontalPodAutoscaler") if r.inputs["spec"]["scaleTargetRef"]["name"] == name]
    limits = [(a.inputs["spec"]["minReplicas"], a.inputs["spec"]["maxReplicas"]) for a in autoscalers]
    return deployment.inputs["spec"].get("replicas"), deployment.ignore_changes, limits


def test_turning_autoscaling_on_keeps_the_live_count_instead_of_dropping_to_one():
    fixed = _deployed("prod")
    run = run_stack("prod", {"services.hotel.autoscaling.enabled": True}, last_outputs=fixed)
    # Declaring no count would make server-side apply drop the field the stack owned: the server defaults it to 1.
    replicas, ignored, limits = _scaling(run, "hotel-v1")
    assert replicas == 2 and ignored == ["spec.replicas"] and limits == [(2, 5)]
    assert run.outputs["autoscaledVersions"] == ["bee-ui/v1", "hotel/v1", "hotel/v2"]


def test_turning_autoscaling_off_pins_the_autoscaler_for_one_update_then_removes_it():
    autoscaled = _deployed("prod", {"services.hotel.autoscaling.enabled": True, "services.hotel.replicas": 3})
    handing_over = run_stack("prod", {"services.hotel.replicas": 3}, last_outputs=autoscaled)
    assert handing_over.error is None, handing_over.error
    # The autoscaler, pinned at the fixed count, moves the live count there itself; deleted now, it would only go
    # at the end of the update, after scaling the Deployment straight back.
    assert _scaling(handing_over, "hotel-v1") == (3, ["spec.replicas"], [(3, 3)])
    assert any("hotel v1: autoscaling is off" in line and "next `pulumi up` removes it" in line for line in handing_over.logs)
    assert "hotel/v1" not in handing_over.outputs["autoscaledVersions"]
    done = run_stack("prod", {"services.hotel.replicas": 3}, last_outputs=handing_over.outputs)
    replicas, ignored, limits = _scaling(done, "hotel-v1")
    assert (replicas, ignored, limits) == (3, [], [])
    # The count the autoscaler's manager held is taken back by server-side apply, not refused as a conflict.
    assert done.named("Deployment", "hotel-v1").metadata["annotations"]["pulumi.com/patchForce"] == "true"


def test_a_count_changed_while_the_autoscaler_is_pinned_is_handed_over_by_it_too():
    autoscaled = _deployed("prod", {"services.hotel.autoscaling.enabled": True})
    pinned_at_two = run_stack("prod", last_outputs=autoscaled)
    assert _scaling(pinned_at_two, "hotel-v1")[2] == [(2, 2)]
    assert pinned_at_two.outputs["pinnedAutoscalers"] == {"hotel/v1": 2, "hotel/v2": 2}
    # Removed now, the autoscaler pinned at 2 would scale the new count of 3 back before it is deleted: it is re-pinned.
    pinned_at_three = run_stack("prod", {"services.hotel.replicas": 3}, last_outputs=pinned_at_two.outputs)
    assert _scaling(pinned_at_three, "hotel-v1")[2] == [(3, 3)]
    done = run_stack("prod", {"services.hotel.replicas": 3}, last_outputs=pinned_at_three.outputs)
    assert _scaling(done, "hotel-v1") == (3, [], []) and done.outputs["pinnedAutoscalers"] == {}


# ---- the live cluster's version --------------------------------------------------------------------

def test_a_kubernetes_version_the_cluster_does_not_run_is_refused_with_the_live_one():
    from config.live_cluster import LiveCluster, cluster_problems
    from config.settings import Settings

    settings = Settings.model_validate({"kubernetesVersion": "1.32", "istio": {"version": "1.30.3"}})
    (problem,) = cluster_problems(settings, LiveCluster(server="https://127.0.0.1:16443", version="1.33.13"))
    assert problem.path == "kubernetesVersion" and 'runs Kubernetes 1.33.13; set kubernetesVersion: "1.33"' in problem.message
    assert cluster_problems(settings, LiveCluster(server="https://127.0.0.1:16443", version="1.32.4")) == []
    assert cluster_problems(settings, None) == []


def test_without_a_kubeconfig_or_while_rendering_the_version_is_unknown_and_nothing_is_asked(tmp_path):
    from config.live_cluster import live_cluster

    assert live_cluster({}, {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}) is None
    assert live_cluster({"rendering": "true"}, {"KUBECONFIG": str(tmp_path / "none")}) is None
