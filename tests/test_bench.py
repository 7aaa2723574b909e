"""The benchmark stays runnable and measures what it says: synthetic stacks have the real stacks' shape, the floors
register what they claim, and the report states each target as met or missed. Nothing here is timed."""

import functools
import json

import pytest

from bench import program_scaling as bench
from builders import access as security
from domain import catalogue
from tools.stack_run import run_stack


def footprint(run, service):
    """What a service registers, by kind and by name with the service's own name taken out."""
    spec = catalogue.CATALOGUE[service]
    hosts = {external.host for external in spec.external_hosts}
    mine = [r for r in run.kubernetes_objects()
            if r.k8s_name in (service, f"allow-{service}", f"seed-{service}")
            or r.metadata.get("labels", {}).get("app") == service
            or (r.kind == "ServiceEntry" and hosts & set(r.inputs["spec"]["hosts"]))]
    # An external host's ServiceEntry is named after the host, which a copy has its own of.
    return sorted((r.kind, "" if r.kind == "ServiceEntry" else r.k8s_name.replace(service, "<service>")) for r in mine)


def spec_of(run, kind, service):
    """A service's spec with its own host names (service.namespace.svc...) made generic."""
    return json.loads(json.dumps(run.named(kind, service).inputs["spec"]).replace(f'"{service}.', '"<service>.'))


def allowed(run, app):
    policy = run.named("AuthorizationPolicy", f"allow-{app}")
    return [principal for rule in policy.inputs["spec"]["rules"] for source in rule["from"] for principal in source["source"]["principals"]]


def test_each_synthetic_service_registers_what_the_real_service_it_copies_does(dev):
    real = list(catalogue.CATALOGUE)
    real_footprints = {name: footprint(dev, name) for name in real if name != catalogue.FRONTEND}
    with bench.synthetic_catalogue(len(real)) as overrides:
        run = run_stack("dev", overrides)
        assert run.error is None, run.error
        for name in real:
            copy = bench.synthetic_name(name, 0)
            assert f"services.{copy}" in overrides
            if name != catalogue.FRONTEND:  # the real front end is the gateway's; its copy is an internal one
                assert footprint(run, copy) == real_footprints[name], copy
            # Weighted splits, match routes, faults and subsets as the stack file gives the service copied.
            for kind in ("DestinationRule", "VirtualService"):
                if name != catalogue.FRONTEND or kind == "DestinationRule":
                    assert spec_of(run, kind, copy) == spec_of(dev, kind, name), (kind, copy)
    assert {r.kind for r in run.kubernetes_objects()} >= {"AuthorizationPolicy", "Sidecar", "Job", "ServiceEntry"}


def test_synthetic_services_have_callers_mongodb_seeding_and_weighted_canaries(dev):
    with bench.synthetic_catalogue(2 * len(catalogue.CATALOGUE)) as overrides:
        run = run_stack("dev", overrides)
    assert run.error is None, run.error
    principal = functools.partial(security.principal, "bee-travels")
    for group in (0, 1):
        frontend = bench.synthetic_name(catalogue.FRONTEND, group)
        # The real front end calls each group's front end, which calls its own group's backends.
        assert allowed(run, frontend) == [principal(catalogue.FRONTEND)]
        for backend in catalogue.CATALOGUE[catalogue.FRONTEND].calls:
            assert allowed(run, bench.synthetic_name(backend, group)) == [principal(frontend)]
        for seeded in catalogue.SEED_IMAGES:
            copy = bench.synthetic_name(seeded, group)
            assert run.named("Job", f"seed-{copy}")
            tiers = {d.metadata["labels"]["data-tier"] for d in run.of_type("Deployment") if d.metadata["labels"]["app"] == copy}
            assert tiers == {"json", "mongodb"}
            (weighted,) = [route for route in run.named("VirtualService", copy).inputs["spec"]["http"] if route["name"] == "weighted"]
            assert len(weighted["route"]) == 2 and sum(d["weight"] for d in weighted["route"]) == 100
            # Only the copy's mongodb-tier versions reach the database, under their own identity.
            assert principal(f"{copy}-mongodb") in allowed(run, "mongodb") and principal(copy) not in allowed(run, "mongodb")
    def routed(stack_run):  # VirtualServices with a header or cookie route ahead of the split
        return [vs for vs in stack_run.of_type("VirtualService") if len(vs.inputs["spec"]["http"]) > 1]

    assert len(routed(dev)) > 0 and len(routed(run)) == 3 * len(routed(dev))


def test_synthetic_stacks_grow_by_the_same_set_per_group_and_restore_the_catalogue(dev):
    before, seeds = dict(catalogue.CATALOGUE), dict(catalogue.SEED_IMAGES)
    size = len(before)
    counts = []
    for groups in (1, 2):
        with bench.synthetic_catalogue(groups * size) as overrides:
            run = run_stack("dev", overrides)
            assert run.error is None, run.error
            counts.append(len(run.resources))
    assert counts[1] - counts[0] == counts[0] - len(dev.resources) > size
    assert catalogue.CATALOGUE == before and catalogue.SEED_IMAGES == seeds


def test_the_bare_floor_registers_one_plain_resource_per_payload(istio_chart_cache):
    run = run_stack("dev", program=bench.plain_program([{"spec": {"n": i}} for i in range(4)]))
    assert [r.type for r in run.resources] == ["bench:index:Plain"] * 4
    # The SDK registers from worker threads, so the recorded order is not the program's: compare the payloads as a set.
    assert sorted(r.inputs["spec"]["n"] for r in run.resources) == list(range(4))


def test_the_sdk_floor_registers_the_same_resources_through_the_same_classes(prod):
    floor = run_stack("prod", program=bench.sdk_program(prod.resources))
    assert floor.error is None

    def identities(resources):
        return sorted((r.type, json.dumps(r.manifest().get("metadata", {}), sort_keys=True)) for r in resources)

    assert identities(floor.resources) == identities(r for r in prod.resources if r.custom)
    assert not any("beetravels:" in (r.parent or "") or r.depends_on for r in floor.resources)


def measurement(label, services, seconds, bare, sdk, resources=100):
    return bench.Measurement(label, services, resources, bench.Timing(seconds, seconds / 4, 1),
                             bench.Timing(bare, bare / 4, 0), bench.Timing(sdk, 0.0, 0), dependencies=5 * resources)


def test_report_leads_with_the_bare_floor_then_the_sdk_floor():
    row = measurement("20 services", 20, 1.2, bare=1.0, sdk=0.8)
    assert "| 20 services | 20 | 100 | 1.20 | 12.0 | 1.00 | +20% | 0.80 | +50% |" in bench.table([row])
    assert "| 20 services | 100 | 5.0 | 12.00 | 3.00 | 9.00 | 1 | 10.00 | 2.50 | 7.50 | 0 |" in bench.bend_table([row])


def test_targets_are_stated_as_met_or_missed_against_the_bare_floor():
    results = [measurement("dev", 5, 0.5, bare=0.4, sdk=0.45),
               measurement("20 services", 20, 1.0, bare=0.9, sdk=0.95),
               measurement("200 services", 200, 13.0, bare=9.0, sdk=12.0, resources=1000)]
    lines = bench.targets(results, cold=1.5, suite=70.0)
    assert "< 2 s: **met**" in lines[0] and "1.50 s" in lines[0]
    assert "**missed** (+11% to +44%, worst 200 services" in lines[1]
    assert "**missed** (13.0x for 10.0x the resources)" in lines[2]
    assert "< 60 s" in lines[3] and "**missed** (70.0 s)" in lines[3]


def test_profile_attribution_covers_the_whole_profile_without_double_counting():
    root = str(bench.ROOT)
    stats = {
        (f"{root}/builders/workloads.py", 1, "_deploy_version"): (1, 1, 0.5, 0.9, {}),
        (f"{root}/config/stack_config.py", 1, "load_settings"): (1, 1, 0.1, 0.3, {}),
        ("/x/site-packages/pulumi/runtime/resource.py", 1, "_get_stack_trace"): (1, 1, 0.2, 0.4, {}),
        ("/x/site-packages/pulumi_kubernetes/apps/v1/Deployment.py", 1, "__init__"): (1, 1, 0.25, 1.0, {}),
        ("/x/site-packages/pulumi/runtime/rpc.py", 1, "something_else"): (1, 1, 0.35, 0.35, {}),
    }
    parts = bench.attribute(stats)
    assert set(parts) == set(bench.PROFILE_ROWS)
    assert sum(parts.values()) == pytest.approx(1.4)  # the sum of own times
    assert parts["our components and __main__ (own time)"] == pytest.approx(0.5)
    assert parts["settings: read and validated (pydantic, rules)"] == pytest.approx(0.3)
