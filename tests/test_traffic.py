"""Traffic rules: canary weights from the stack file, subsets backed by pods, resilience, faults, gateway, egress."""

import pytest
import yaml

from tools.stack_run import DELETE, ROOT, run_stack

HOST = "{}.bee-travels.svc.cluster.local"


def stack_services(stack):
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["bee-travels-mesh:services"]


def virtual_service(run, name):
    return run.named("VirtualService", name).inputs["spec"]


def weighted_route(spec):
    return spec["http"][-1]["route"]


def weights_of(spec):
    return {entry["destination"]["subset"]: entry.get("weight", 100) for entry in weighted_route(spec)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_virtual_service_splits_traffic_as_the_stack_file_says(stack, request):
    run = request.getfixturevalue(stack)
    for name, service in stack_services(stack).items():
        expected = service.get("weights") or {next(iter(service["versions"])): 100}
        weights = weights_of(virtual_service(run, name))
        assert weights == expected, name
        assert sum(weights.values()) == 100


def test_moving_a_canary_is_one_number_in_the_stack_file():
    run = run_stack("prod", {"services.hotel.weights.v1": 50, "services.hotel.weights.v2": 50})
    assert weights_of(virtual_service(run, "hotel")) == {"v1": 50, "v2": 50}
    assert run.outputs["canaryWeights"]["hotel"] == {"v1": 50, "v2": 50}
    finished = run_stack("prod", {"services.hotel.versions": {"v2": {"tier": "mongodb"}}, "services.hotel.weights": {"v2": 100},
                                  "services.hotel.matchRoutes": []})
    assert weights_of(virtual_service(finished, "hotel")) == {"v2": 100}
    assert "hotel-v1" not in {d.k8s_name for d in finished.of_type("Deployment")}


def test_every_route_targets_a_subset_with_pods_and_every_subset_has_pods(any_stack):
    pods = {(d.inputs["spec"]["template"]["metadata"]["labels"]["app"], d.inputs["spec"]["template"]["metadata"]["labels"]["version"])
            for d in any_stack.within("MeshService").of_type("Deployment")}
    for rule in any_stack.within("MeshService").of_type("DestinationRule"):
        service = rule.k8s_name
        assert rule.inputs["spec"]["host"] == HOST.format(service)
        subsets = {s["name"]: s["labels"] for s in rule.inputs["spec"]["subsets"]}
        for subset, labels in subsets.items():
            assert labels == {"version": subset} and (service, subset) in pods, f"{service}/{subset} has no pods"
        for route in virtual_service(any_stack, service)["http"]:
            for entry in route["route"]:
                assert entry["destination"]["host"] == HOST.format(service)
                assert entry["destination"]["subset"] in subsets


def test_header_route_comes_before_the_weighted_split(dev):
    http = virtual_service(dev, "hotel")["http"]
    assert http[0]["match"] == [{"headers": {"x-bee-canary": {"exact": "true"}}}]
    assert [entry["destination"]["subset"] for entry in http[0]["route"]] == ["v2"]
    assert "match" not in http[-1] and http[-1]["name"] == "weighted"


def test_cookie_route_matches_one_cookie_among_others():
    import re

    run = run_stack("dev", {"services.hotel.matchRoutes": [{"cookie": "user", "value": "tester", "version": "v2"}]})
    pattern = virtual_service(run, "hotel")["http"][0]["match"][0]["headers"]["cookie"]["regex"]
    assert re.match(pattern, "session=abc; user=tester; theme=dark")
    assert re.match(pattern, "user=tester")
    assert not re.match(pattern, "user=testers")
    escaped = run_stack("dev", {"services.hotel.matchRoutes": [{"cookie": "user", "value": "a.b", "version": "v2"}]})
    assert not re.match(virtual_service(escaped, "hotel")["http"][0]["match"][0]["headers"]["cookie"]["regex"], "user=aXb")


def test_resilience_reaches_every_route_and_rule(prod):
    for name in stack_services("prod"):
        for route in virtual_service(prod, name)["http"]:
            assert route["timeout"] == "10s"
            assert route["retries"] == {"attempts": 2, "perTryTimeout": "3s", "retryOn": "5xx,reset,connect-failure,refused-stream"}
        policy = prod.named("DestinationRule", name).inputs["spec"]["trafficPolicy"]
        assert policy["loadBalancer"] == {"simple": "LEAST_CONN"}
        assert policy["connectionPool"]["http"]["http1MaxPendingRequests"] == 100
        assert policy["outlierDetection"] == {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 50}
        assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}


def test_a_service_override_replaces_only_its_own_sections():
    run = run_stack("dev", {"services.hotel.resilience": {"timeout": "4s", "loadBalancer": "ROUND_ROBIN",
                                                          "retries": {"attempts": 1, "perTryTimeout": "1s"}}})
    hotel = virtual_service(run, "hotel")["http"][-1]
    assert (hotel["timeout"], hotel["retries"]["attempts"]) == ("4s", 1)
    assert run.named("DestinationRule", "hotel").inputs["spec"]["trafficPolicy"]["loadBalancer"] == {"simple": "ROUND_ROBIN"}
    assert virtual_service(run, "carrental")["http"][-1]["timeout"] == "10s"
    assert run.named("DestinationRule", "hotel").inputs["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 5


def test_mesh_mtls_off_drops_istio_mutual():
    run = run_stack("dev", {"security.mtlsMode": "DISABLE", "security.authorization": False})
    assert run.error is None, run.error
    assert all("tls" not in r.inputs["spec"]["trafficPolicy"] for r in run.of_type("DestinationRule"))


def test_fault_injection_only_where_the_stack_enables_it(dev, prod):
    faults = {r.k8s_name: [route.get("fault") for route in r.inputs["spec"]["http"]] for r in dev.of_type("VirtualService")}
    assert faults.pop("hotel") == [{"delay": {"fixedDelay": "2s", "percentage": {"value": 10}}}] * 2
    assert all(fault == [None] * len(fault) for fault in faults.values())
    assert all("fault" not in route for r in prod.of_type("VirtualService") for route in r.inputs["spec"]["http"])


def test_production_takes_a_fault_only_when_forced():
    run = run_stack("prod", {"services.carrental.fault": {"abort": {"httpStatus": 503, "percent": 1}, "forceInProduction": True}})
    assert run.error is None, run.error
    assert virtual_service(run, "carrental")["http"][-1]["fault"] == {"abort": {"httpStatus": 503, "percentage": {"value": 1}}}


def test_dev_gateway_serves_http_to_the_ui(dev):
    gateway = dev.named("Gateway", "bee-travels-gateway").inputs["spec"]
    assert gateway["selector"] == dev.outputs["gatewaySelector"]
    assert gateway["servers"] == [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]
    ui = virtual_service(dev, "bee-ui")
    assert ui["gateways"] == ["bee-travels/bee-travels-gateway"] and ui["hosts"] == ["*"]


def test_prod_gateway_serves_https_and_redirects_http(prod):
    servers = {s["port"]["name"]: s for s in prod.named("Gateway", "bee-travels-gateway").inputs["spec"]["servers"]}
    assert servers["http"]["tls"] == {"httpsRedirect": True}
    assert servers["https"]["tls"] == {"mode": "SIMPLE", "credentialName": "bee-travels-tls"}
    assert servers["https"]["hosts"] == ["beetravels.example.com"]
    assert virtual_service(prod, "bee-ui")["hosts"] == ["beetravels.example.com"]


def test_self_signed_tls_for_non_production_stacks():
    run = run_stack("dev", {"gateway.tls.mode": "self-signed", "gateway.hosts": ["bee.localtest.me"]})
    assert run.error is None, run.error
    secret = run.named("Secret", "bee-travels-self-signed-tls")
    assert secret.metadata["namespace"] == "istio-system" and secret.inputs["type"] == "kubernetes.io/tls"
    (certificate,) = run.of_type("SelfSignedCert")
    assert certificate.inputs["dnsNames"] == ["bee.localtest.me"]
    https = run.named("Gateway", "bee-travels-gateway").inputs["spec"]["servers"][1]
    assert https["tls"]["credentialName"] == "bee-travels-self-signed-tls"


def test_service_entries_exist_exactly_for_external_dependencies_in_use(dev):
    assert [r.inputs["spec"]["hosts"] for r in dev.of_type("ServiceEntry")] == [["api.exchangeratesapi.io"]]
    run = run_stack("dev", {"services.hotel.versions.v3": {"tier": "cloud"}, "services.hotel.weights.v3": 0,
                            "cloudDatabase": {"host": "bee-db.example.com", "port": 31000}},
                    secrets={"cloudDatabaseUrl": "mongodb://u:p@bee-db.example.com:31000"})
    entries = {r.inputs["spec"]["hosts"][0]: r.inputs["spec"] for r in run.of_type("ServiceEntry")}
    assert set(entries) == {"api.exchangeratesapi.io", "bee-db.example.com"}
    assert entries["bee-db.example.com"]["ports"] == [{"number": 31000, "name": "tls-31000", "protocol": "TLS"}]
    assert entries["bee-db.example.com"]["location"] == "MESH_EXTERNAL"
    without_currency = run_stack("dev", {"services.currencyexchange": DELETE})
    assert "bee-ui calls currencyexchange, which this stack does not deploy" in str(without_currency.error)


def test_istio_resources_wait_for_the_crds_and_istiod(any_stack):
    releases = {r.inputs["name"]: r for r in any_stack.of_type("kubernetes:helm.sh/v3:Release")}
    for kind in ("Gateway", "VirtualService", "DestinationRule", "ServiceEntry"):
        for resource in any_stack.of_type(kind):
            assert any_stack.depends_on(resource, releases["istio-base"]), resource.name
            assert any_stack.depends_on(resource, releases["istiod"]), resource.name
            assert resource.manifest()["apiVersion"] in ("networking.istio.io/v1beta1",)


# ---- mirroring, sticky canaries, expiring match routes ---------------------------------------------

def _refused(run, key):
    assert run.error is not None and run.resources == [], "the stack must be refused before anything is registered"
    line = next((line for line in str(run.error).splitlines() if f"bee-travels-mesh:{key}:" in line), None)
    assert line is not None, str(run.error)
    return line


def test_a_mirror_copies_a_share_of_the_weighted_split_to_a_version_that_writes_nothing():
    run = run_stack("dev", {"services.currencyexchange.versions.v2": {"tier": "json"},
                            "services.currencyexchange.weights": {"v1": 100, "v2": 0},
                            "services.currencyexchange.mirror": {"version": "v2", "percent": 25}})
    assert run.error is None, run.error
    spec = virtual_service(run, "currencyexchange")
    weighted = spec["http"][-1]
    assert weighted["mirror"] == {"host": "currencyexchange.bee-travels.svc.cluster.local", "subset": "v2", "port": {"number": 80}}
    assert weighted["mirrorPercentage"] == {"value": 25}
    # The route waits for the mirrored version's pods too: a mirror to pods that do not exist yet would only fail.
    assert run.depends_on(run.named("VirtualService", "currencyexchange"), run.named("Deployment", "currencyexchange-v2"))


def test_mirroring_into_a_version_that_writes_data_is_refused_unless_marked_safe():
    line = _refused(run_stack("dev", {"services.hotel.mirror": {"version": "v2"}}), "services.hotel.mirror.safeToMirror")
    assert "mongodb tier" in line and "write a second time" in line
    safe = run_stack("dev", {"services.hotel.mirror": {"version": "v2", "safeToMirror": True}})
    assert safe.error is None, safe.error
    assert safe.named("VirtualService", "hotel").metadata["annotations"]["bee-travels.io/mirror-writes-accepted"] == "true"


@pytest.mark.parametrize(("mirror", "key", "fragment"), [
    ({"version": "v9"}, "services.hotel.mirror.version", "does not deploy"),
    ({"version": "v1", "percent": 0}, "services.hotel.mirror.percent", "greater than 0"),
])
def test_a_mirror_to_nothing_is_refused(mirror, key, fragment):
    assert fragment in _refused(run_stack("dev", {"services.hotel.mirror": mirror}), key)


def test_a_sticky_canary_sets_its_cookie_on_the_canarys_answers_and_routes_on_it():
    run = run_stack("dev", {"services.bee-ui.versions.v2": {"tier": "json"}, "services.bee-ui.weights": {"v1": 90, "v2": 10},
                            "services.bee-ui.sticky": {"version": "v2", "lifetime": "2h"}})
    assert run.error is None, run.error
    http = virtual_service(run, "bee-ui")["http"]
    sticky = next(route for route in http if route["name"] == "sticky-v2")
    assert http.index(sticky) == len(http) - 2  # after the stack's own match routes, before the split
    assert sticky["route"][0]["destination"]["subset"] == "v2"
    import re
    pattern = sticky["match"][0]["headers"]["cookie"]["regex"]
    assert re.match(pattern, "theme=dark; bee-canary=v2") and not re.match(pattern, "bee-canary=v1")
    legs = {leg["destination"]["subset"]: leg for leg in http[-1]["route"]}
    assert legs["v2"]["headers"] == {"response": {"add": {"set-cookie": "bee-canary=v2; Max-Age=7200; Path=/; HttpOnly; SameSite=Lax"}}}
    assert "headers" not in legs["v1"]


def test_a_sticky_canary_that_no_one_can_reach_is_refused():
    line = _refused(run_stack("dev", {"services.hotel.sticky": {"version": "v2"}, "services.hotel.weights": {"v1": 100, "v2": 0}}),
                    "services.hotel.sticky.version")
    assert "no share of the weighted split" in line


def test_a_match_route_past_its_expiry_refuses_the_stack_until_removed_or_extended():
    route = {"header": "x-bee-canary", "value": "true", "version": "v2"}
    line = _refused(run_stack("dev", {"services.hotel.matchRoutes": [{**route, "expires": "2020-01-31"}]}),
                    "services.hotel.matchRoutes[0].expires")
    assert "2020-01-31 has passed" in line and "remove this x-bee-canary route or move its date" in line
    assert run_stack("dev", {"services.hotel.matchRoutes": [{**route, "expires": "2999-12-31"}]}).error is None
    assert "YYYY-MM-DD" in _refused(run_stack("dev", {"services.hotel.matchRoutes": [{**route, "expires": "next week"}]}),
                                    "services.hotel.matchRoutes.0.expires")
