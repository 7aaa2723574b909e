"""One component per service: what it owns, the order a canary needs, and that existing stacks keep their resources."""

import json

import pytest

from tools.stack_run import ROOT, run_stack

# The URNs dev and prod had before services got a component each (recorded from the code of that time).
BEFORE = json.loads((ROOT / "tests" / "data" / "urns-before-mesh-service.json").read_text())


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_resource_of_an_existing_stack_keeps_its_urn_or_an_alias_to_it(stack, istio_chart_cache):
    run = run_stack(stack)
    assert run.error is None, run.error
    before = set(BEFORE[stack])
    kept = {r.urn for r in run.resources}
    # The SDK adds aliases of its own for renamed Kubernetes API versions; ours are the moves, which keep the type.
    moves = {r.urn: [alias for alias in r.aliases if alias.split("::")[2].rsplit("$", 1)[-1] == r.type] for r in run.resources}
    carried = {alias for aliases in moves.values() for alias in aliases}
    physical = {urn for urn in before if not urn.split("::")[2].rsplit("$", 1)[-1].startswith("beetravels:")}
    assert physical - kept - carried == set(), "these would be deleted and created anew"
    # Only the former parent components go away; they hold no cluster object.
    assert {urn.split("::")[2].rsplit("$", 1)[-1] for urn in before - kept - carried} <= {"beetravels:app:BeeTravels"}
    assert carried <= before, f"aliases that name no former resource: {sorted(carried - before)[:5]}"
    for resource in run.resources:
        for alias in moves[resource.urn]:
            assert alias.rsplit("::", 1)[1] == resource.name, "a move may change the parent only"
    assert len(carried) == len(physical - kept), "every moved resource has exactly its one former URN"


def test_each_service_owns_what_exists_because_of_it(dev):
    hotel = dev.within("MeshService", "hotel")
    kinds = sorted({r.kind for r in hotel.resources if r.custom})
    assert kinds == ["AuthorizationPolicy", "Deployment", "DestinationRule", "NetworkPolicy", "Service", "ServiceAccount",
                     "Sidecar", "VirtualService"]
    assert {r.k8s_name for r in hotel.of_type("Deployment")} == {"hotel-v1", "hotel-v2"}
    assert {r.k8s_name for r in hotel.of_type("ServiceAccount")} == {"hotel", "hotel-mongodb"}
    names = {r.k8s_name for r in hotel.resources if r.custom}
    assert all(name.startswith(("hotel", "allow-hotel")) for name in names), names


def _named(run, kind, name):
    return next(r for r in run.of_type(kind) if r.k8s_name == name)


def test_a_route_waits_for_its_subsets_and_for_the_pods_of_every_version_it_sends_traffic_to(dev):
    virtual_service, subsets = _named(dev, "VirtualService", "hotel"), _named(dev, "DestinationRule", "hotel")
    assert dev.depends_on(virtual_service, subsets)
    for version in ("v1", "v2"):  # v2 is weighted and the header route's target
        assert dev.depends_on(virtual_service, _named(dev, "Deployment", f"hotel-{version}"))
    # A mongodb-tier version is ready only after its data is seeded, so its route waits for the seeding Job too.
    seed_job = next(r for r in dev.of_type("Job") if "hotel" in r.k8s_name)
    assert dev.depends_on(_named(dev, "Deployment", "hotel-v2"), seed_job)


def test_a_version_added_at_weight_zero_is_deployed_without_holding_back_the_route(istio_chart_cache):
    """Step 1 of a canary adds v2 at weight 0: the route must not wait for pods it sends nothing to."""
    run = run_stack("dev", {"services.currencyexchange.versions.v2": {"tier": "json"},
                            "services.currencyexchange.weights": {"v1": 100, "v2": 0}})
    assert run.error is None, run.error
    virtual_service = _named(run, "VirtualService", "currencyexchange")
    assert run.depends_on(virtual_service, _named(run, "Deployment", "currencyexchange-v1"))
    assert not run.depends_on(virtual_service, _named(run, "Deployment", "currencyexchange-v2"))
    assert run.depends_on(virtual_service, _named(run, "DestinationRule", "currencyexchange"))


SKIP_AWAIT = "pulumi.com/skipAwait"
WORKLOADS = {"Deployment", "StatefulSet"}


def test_no_service_is_awaited_but_every_workload_it_fronts_is_and_whoever_uses_it_waits_for_that_workload(any_stack):
    """Services skip the provider's endpoint wait (10 s each, docs/performance.md): safe only because the pods behind
    each Service are awaited on their own workload, and whatever the program starts after a Service also waits for one
    of those workloads. Nothing else skips its wait."""
    objects = {r.urn: r for r in any_stack.kubernetes_objects()}
    services = [r for r in objects.values() if r.manifest()["kind"] == "Service"]
    assert services
    for service in services:
        manifest = service.manifest()
        assert manifest["metadata"]["annotations"][SKIP_AWAIT] == "true", service.name
        selector = manifest["spec"]["selector"].items()
        fronted = [r for r in objects.values() if r.manifest()["kind"] in WORKLOADS
                   and selector <= r.manifest()["spec"]["template"]["metadata"]["labels"].items()]
        assert fronted, f"{service.name} fronts no workload the program awaits"
        assert all(SKIP_AWAIT not in (r.manifest()["metadata"].get("annotations") or {}) for r in fronted)
        users = [r for r in any_stack.resources if r.custom and r is not service and service.urn in r.depends_on]
        for user in users:
            assert any(user is workload or any_stack.depends_on(user, workload) for workload in fronted), \
                f"{user.name} waits for {service.name} but not for the pods behind it"
    unawaited = [r.name for r in objects.values() if r.manifest()["kind"] != "Service"
                 and SKIP_AWAIT in (r.manifest()["metadata"].get("annotations") or {})]
    assert unawaited == []
