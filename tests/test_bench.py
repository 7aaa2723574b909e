"""The benchmark stays runnable: synthetic stacks evaluate cleanly, grow by a fixed set per service, and clean up."""

import json

from bench import program_scaling as bench
from components import catalogue
from tools.stack_run import run_stack


def test_synthetic_services_evaluate_and_add_the_same_resources_each(dev):
    before = set(catalogue.CATALOGUE)
    counts = []
    for extra in (1, 3):
        with bench.synthetic_catalogue(extra) as overrides:
            run = run_stack("dev", overrides)
            assert run.error is None, run.error
            counts.append(len(run.resources))
            names = {r.metadata.get("labels", {}).get("app") for r in run.of_type("Deployment")}
            assert {bench.synthetic_name(i) for i in range(extra)} <= names
    assert set(catalogue.CATALOGUE) == before
    per_service = (counts[1] - counts[0]) // 2
    assert counts[0] - len(dev.resources) == per_service > 0


def test_the_floor_registers_one_plain_resource_per_payload(istio_chart_cache):
    run = run_stack("dev", program=bench.plain_program([{"spec": {"n": i}} for i in range(4)]))
    assert [r.type for r in run.resources] == ["bench:index:Plain"] * 4
    assert [r.inputs for r in run.resources] == [{"spec": {"n": i}} for i in range(4)]


def test_report_shows_overhead_against_the_floor():
    row = bench.Measurement("20 services", 20, 100, seconds=1.2, floor_seconds=1.0, plain_seconds=0.5)
    assert "| 20 services | 20 | 100 | 1.20 | 12.0 | 1.00 | +20% | 0.50 |" in bench.table([row])


def test_the_sdk_floor_registers_the_same_resources_through_the_same_classes(prod):
    floor = run_stack("prod", program=bench.sdk_program(prod.resources))
    assert floor.error is None
    def identities(resources):
        return sorted((r.type, json.dumps(r.manifest().get("metadata", {}), sort_keys=True)) for r in resources)

    assert identities(floor.resources) == identities(r for r in prod.resources if r.custom)
    assert not any("beetravels:" in (r.parent or "") or r.depends_on for r in floor.resources)
