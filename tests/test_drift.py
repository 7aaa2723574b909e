"""The drift check's comparison: the routes the stack file asks for against what a cluster holds."""

from __future__ import annotations

import copy
import os

import yaml

from tools import drift
from tools.drift import differences, expected_routes, route_summary
from tools.stack_files import load_stack_settings
from tools.stack_run import ROOT, run_stack


def _live_from(run) -> dict:
    return {vs.k8s_name: route_summary(vs.inputs["spec"]["http"]) for vs in run.of_type("VirtualService")}


def _written_routes(section: dict) -> dict[str, dict[str, int]]:
    """Route name -> subset -> weight, read off one service's section of a stack file as a reviewer reads it."""
    versions = list(section["versions"])
    routes = {f"{route.get('header') or route.get('cookie')}-to-{route['version']}": {route["version"]: 100}
              for route in section.get("matchRoutes", [])}
    return {**routes, "weighted": section.get("weights") or {versions[0]: 100}}


def test_the_check_expects_the_weights_and_match_routes_the_stack_file_writes(istio_chart_cache):
    """What drift compares the cluster with is the stack file's own text: each weight, each match route, and a single
    version taking everything; read from the YAML here, not from the builder the check itself uses."""
    for stack in ("dev", "prod", "dev-current"):
        stack_file = ROOT / f"Pulumi.{stack}.yaml"
        written = yaml.safe_load(stack_file.read_text())["config"]["bee-travels-mesh:services"]
        expected = expected_routes(load_stack_settings(stack, stack_file))
        assert expected == {name: _written_routes(section) for name, section in written.items()}, stack


def test_the_declared_virtual_services_carry_the_routes_the_check_expects(istio_chart_cache):
    """The program's VirtualServices, read the way the check reads live ones, hold exactly those routes."""
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


def test_drift_reads_the_cluster_the_stacks_provider_talks_to(tmp_path, monkeypatch, capsys):
    """The stack file's kubernetes:kubeconfig and kubernetes:context pick the cluster, as for `pulumi up`: the nightly
    check never compares the stack with whatever cluster kubectl's own context points at."""
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    stack_file = tmp_path / "Pulumi.prod.yaml"
    kubeconfig = tmp_path / "prod-kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    stack_file.write_text(text + f"  kubernetes:kubeconfig: {kubeconfig}\n  kubernetes:context: prod-cluster\n")
    calls = tmp_path / "kubectl-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho \'{{"items": []}}\'\n')
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert drift.main(["--stack", "prod", "--stack-file", str(stack_file)]) == drift.EXIT_DRIFT
    assert calls.read_text().split() == ["--kubeconfig", str(kubeconfig), "--context", "prod-cluster", "get",
                                         "virtualservices.networking.istio.io", "-n", "bee-travels", "-o", "json"]
    assert "hotel: no live VirtualService" in capsys.readouterr().out
