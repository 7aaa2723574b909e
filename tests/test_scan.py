"""A widely used misconfiguration scanner (checkov) over each stack's rendered objects: every failed check is a
waiver docs/security.md documents, and prod with its images pinned by digest fails at most 2 checks per workload."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.stacks import CURRENT_ISTIO
from tools import render, scan

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
