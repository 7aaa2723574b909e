"""A widely used misconfiguration scanner (checkov) over each stack's rendered objects: every failed check is a
waiver docs/security.md documents, and prod with its images pinned by digest fails at most 2 checks per workload.
The same for the workloads of the stacks' Helm releases, rendered by Helm from the real pinned charts."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml

from harness.real_charts import real_charts
from harness.stacks import CURRENT_ISTIO
from tools import render, scan
from tools.stack_files import ROOT

STACKS = {"dev": ("dev", None), "prod": ("prod", None), "current": ("prod", CURRENT_ISTIO)}
MOST_PER_WORKLOAD = 2


def test_the_waiver_table_is_read_from_the_hardening_section_of_docs_security():
    """Needs no scanner: the page the other tests hold the scanner's findings against has the table, naming checks."""
    page = scan.WAIVER_PAGE.read_text()
    hardening = page[page.index("\n## Hardening\n"):].split("\n## ", 2)[1]
    assert scan.WAIVER_HEADING in hardening
    waived = scan.documented_waivers()
    assert waived and all(re.fullmatch(r"CKV_K8S_\d+", check) and check in hardening for check in waived)


@pytest.fixture(scope="module")
def checkov():
    binary = scan.scanner_venv() / "bin" / "checkov"
    assert binary.is_file(), f"no checkov at {binary}: `make scanner` installs it (make test does)"
    return binary


@pytest.fixture(scope="module")
def scans(checkov, istio_chart_cache) -> dict[str, tuple[list[scan.Failure], list[str]]]:
    """Each stack's failed checks and scanned workloads, as committed."""
    return {name: scan.scan(render.render_stack(stack, overrides), checkov) for name, (stack, overrides) in STACKS.items()}


@pytest.mark.parametrize("name", sorted(STACKS))
def test_every_failed_check_is_a_documented_waiver(scans, name):
    failures, workloads = scans[name]
    assert len(workloads) >= 10, workloads  # the services, MongoDB and its Jobs were all scanned
    waived = scan.documented_waivers()
    undocumented = sorted({f"{failure.check} {failure.title}" for failure in failures if failure.check not in waived})
    assert undocumented == [], f"{name}: fix these, or document each as a waiver in docs/security.md (Hardening)"


def test_the_waivers_are_all_still_needed(scans):
    """A waiver no stack needs any more is stale: the union of the stacks' failed checks is the table."""
    assert {failure.check for failures, _ in scans.values() for failure in failures} == scan.documented_waivers()


@pytest.mark.parametrize("overrides", [None, CURRENT_ISTIO], ids=["prod", "current"])
def test_prod_with_its_images_pinned_fails_at_most_two_checks_per_workload(overrides, checkov, istio_chart_cache):
    digests = scan.digests_for_every_image("prod", (overrides or {}).get("istio.version"))
    failures, workloads = scan.scan(render.render_stack("prod", {**(overrides or {}), "images.digests": digests}), checkov)
    worst = {workload: [f.check for f in found] for workload, found in scan.per_workload(failures, workloads).items()
             if len(found) > MOST_PER_WORKLOAD}
    assert worst == {}
    assert "CKV_K8S_43" not in {failure.check for failure in failures}, "every image is pinned by digest"


def test_a_container_that_drops_its_hardening_is_found(checkov, istio_chart_cache):
    files = render.render_stack("prod")
    path = "kubernetes/bee-travels/Deployment.hotel-v1.yaml"
    deployment = yaml.safe_load(files[path])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    del container["securityContext"], container["resources"]
    files[path] = render.to_yaml(deployment)
    failures, _ = scan.scan(files, checkov)
    found = {failure.check for failure in failures if failure.workload == "Deployment.bee-travels.hotel-v1"}
    # privilege escalation, capabilities, read-only root, CPU and memory requests and limits: none of them waived
    assert {"CKV_K8S_20", "CKV_K8S_28", "CKV_K8S_22", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13"} <= found
    assert not found & {"CKV_K8S_20", "CKV_K8S_22"} & scan.documented_waivers()


# ---- the charts' workloads, rendered from the real pinned charts ------------------------------------

CHART_WORKLOADS = {"istiod", "istio-ingressgateway", "prometheus", "grafana", "kiali"}


@pytest.fixture(scope="module")
def helm():
    binary = scan.helm_binary()
    assert binary.is_file(), f"no Helm at {binary}: `make scanner` builds it (make test does)"
    return binary


# Every committed stack file, and prod on current Istio: the chart table is exactly what they need.
CHART_STACKS = {**STACKS, "dev-current": ("dev-current", None)}


def test_the_chart_scan_covers_every_committed_stack_file():
    committed = {path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in ROOT.glob("Pulumi.*.yaml")}
    assert committed <= {stack for stack, _ in CHART_STACKS.values()}


def _chart_releases(name: str) -> tuple[list[scan.ChartRelease], str]:
    stack, overrides = CHART_STACKS[name]
    return scan.chart_releases(stack, real_charts().on(overrides or {}))


@pytest.fixture(scope="module")
def chart_scans(checkov, helm) -> dict[str, scan.ChartScan]:
    """Each stack's Helm releases rendered from the real pinned charts, with the values the stack gives them."""
    return {name: scan.scan_charts(*_chart_releases(name), helm, checkov) for name in CHART_STACKS}


@pytest.mark.parametrize("name", sorted(CHART_STACKS))
def test_every_chart_workload_is_rendered_and_scanned(chart_scans, name):
    names = {workload.split(".", 2)[2] for workload in chart_scans[name].workloads}
    assert names == CHART_WORKLOADS


@pytest.mark.parametrize("name", sorted(CHART_STACKS))
def test_every_failed_check_on_a_chart_workload_is_a_documented_chart_waiver(chart_scans, name):
    undocumented = chart_scans[name].undocumented(scan.documented_chart_waivers())
    assert undocumented == [], f"{name}: fix these through the chart's values, or add them to the chart table in docs/security.md"


def test_the_chart_waivers_are_all_still_needed(chart_scans):
    found: dict[tuple[str, str], set[str]] = {}
    for result in chart_scans.values():
        for key, checks in result.found().items():
            found.setdefault(key, set()).update(checks)
    assert found == scan.documented_chart_waivers()


def test_current_istios_gateway_runs_the_runtimes_default_seccomp_profile_and_keeps_low_ports(chart_scans, helm):
    """The chart drops its own pod context (the low-ports sysctl) once given one: the pod keeps both."""
    assert not [f for f in chart_scans["current"].failures if f.workload.endswith(".istio-ingressgateway") and f.check == "CKV_K8S_31"]
    releases, version = _chart_releases("current")
    gateway = next(release for release in releases if release.name == "istio-ingressgateway")
    deployment = next(document for document in scan.render_release(helm, gateway, version) if document["kind"] == "Deployment")
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in context["sysctls"]


def test_a_release_whose_values_drop_their_hardening_is_found(checkov, helm):
    """Grafana's container context and Prometheus' read-only root come from our values: without them, new failures."""
    releases, version = _chart_releases("prod")
    weakened = []
    for release in releases:
        values = copy.deepcopy(dict(release.values))
        if release.name == "grafana":
            del values["containerSecurityContext"]
        if release.name == "prometheus":
            del values["server"]["containerSecurityContext"]
        weakened.append(dataclasses.replace(release, values=values))
    undocumented = scan.scan_charts(weakened, version, helm, checkov).undocumented(scan.documented_chart_waivers())
    grafana = {line.split()[2] for line in undocumented if " Deployment.istio-system.grafana " in line}
    prometheus = {line.split()[2] for line in undocumented if " Deployment.istio-system.prometheus " in line}
    assert {"CKV_K8S_20", "CKV_K8S_28"} <= grafana  # privilege escalation, capabilities
    assert "CKV_K8S_22" in prometheus  # read-only root


def test_the_chart_table_is_read_from_the_hardening_section_and_names_each_workload_once():
    page = scan.WAIVER_PAGE.read_text()
    hardening = page[page.index("\n## Hardening\n"):].split("\n## ", 2)[1]
    assert scan.CHART_WAIVER_HEADING in hardening
    table = hardening[hardening.index(scan.CHART_WAIVER_HEADING):].split("\n\n", 1)[0].splitlines()[2:]
    waivers = scan.documented_chart_waivers()
    assert len(waivers) == len(table) and all(checks for checks in waivers.values())


def test_the_chart_scan_command_reports_each_chart_workload_and_passes_on_prod(checkov, helm, capsys):
    charts = real_charts()
    from_folder = ["--charts-dir", str(charts.helm_charts_dir)] if charts.helm_charts_dir else []  # else the repositories
    code = scan.main(["--stack", "prod", "--charts", "--istio-charts", str(charts.istio_1_6), *from_folder])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Deployment.istio-system.kiali (kiali-server@1.22.0)" in printed
    assert re.search(r"prod: \d+ failed checks on 5 workloads", printed)
