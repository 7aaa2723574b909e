"""The drift check's comparison: the routes the stack file asks for against what a cluster holds."""

from __future__ import annotations

import copy

from tools.drift import differences, expected_routes, route_summary
from tools.promote import load_stack_settings
from tools.stack_run import ROOT, run_stack


def _live_from(run) -> dict:
    return {vs.k8s_name: route_summary(vs.inputs["spec"]["http"]) for vs in run.of_type("VirtualService")}


def test_the_routes_the_program_declares_are_exactly_what_the_check_expects(istio_chart_cache):
    for stack in ("dev", "prod"):
        settings = load_stack_settings(stack, ROOT / f"Pulumi.{stack}.yaml")
        assert differences(expected_routes(settings), _live_from(run_stack(stack))) == []


def test_a_moved_weight_a_missing_route_and_a_stray_one_are_each_named(istio_chart_cache):
    settings = load_stack_settings("prod", ROOT / "Pulumi.prod.yaml")
    live = copy.deepcopy(_live_from(run_stack("prod")))
    live["hotel"]["weighted"] = {"v1": 50, "v2": 50}
    del live["carrental"]
    live["hotel"]["x-debug-to-v2"] = {"v2": 100}
    assert differences(expected_routes(settings), live) == [
        "carrental: no live VirtualService (the stack file routes it)",
        "hotel route weighted: live v1 50%, v2 50%; stack file v1 90%, v2 10%",
        "hotel route x-debug-to-v2: live v2 100%; stack file nothing",
    ]
