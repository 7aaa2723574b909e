"""Mesh security: mTLS per stack, authorization exactly for the app's call graph, egress limited per workload."""

import pytest

from domain.catalogue import CATALOGUE
from tools.stack_run import run_stack

NS = "bee-travels"
UI_CALLS = {"destination": "/api/v1/destinations*", "hotel": "/api/v1/hotels*", "carrental": "/api/v1/cars*",
            "currencyexchange": "/api/v1/currency*"}


def principal(namespace, account):
    return f"cluster.local/ns/{namespace}/sa/{account}"


def policies(run):
    return {r.k8s_name: r.inputs["spec"] for r in run.of_type("AuthorizationPolicy")}


def allowed_edges(run):
    """(caller principal, callee app) for every ALLOW rule the stack renders."""
    edges = set()
    for name, spec in policies(run).items():
        if name == "deny-by-default":
            continue
        callee = spec["selector"]["matchLabels"]["app"]
        for rule in spec["rules"]:
            for source in rule["from"]:
                for caller in source["source"].get("principals", []):
                    edges.add((caller, callee))
    return edges


def expected_edges(mongo_clients):
    edges = {(principal("istio-system", "istio-ingressgateway-service-account"), "bee-ui")}
    edges |= {(principal(NS, "bee-ui"), callee) for callee in UI_CALLS}
    edges |= {(principal(NS, client), "mongodb") for client in mongo_clients}
    return edges


def pod_spec(resource):
    return resource.inputs["spec"]["template"]["spec"]


def pod_labels(resource):
    return resource.inputs["spec"]["template"]["metadata"]["labels"]


def mongo_principals(run):
    return {caller for caller, callee in allowed_edges(run) if callee == "mongodb"}


def assert_principals_are_created(run, gateway):
    created = {principal(sa.metadata["namespace"], sa.k8s_name) for sa in run.of_type("ServiceAccount")}
    # The gateway's account comes with Istio's gateway chart, not from a ServiceAccount of the program.
    known = created | {principal("istio-system", gateway)}
    used = {caller for caller, _ in allowed_edges(run)}
    assert used and used <= known, used - known


def test_authorization_allows_exactly_the_call_graph(dev, prod):
    for run in (dev, prod):
        assert policies(run)["deny-by-default"] == {}
    mongodb_versions = ("destination-mongodb", "hotel-mongodb", "carrental-mongodb")
    assert allowed_edges(dev) == expected_edges((*mongodb_versions, "mongodb-seed"))
    # prod's MongoDB is a replica set: its members replicate to each other under their own identity.
    assert allowed_edges(prod) == expected_edges((*mongodb_versions, "mongodb-seed", "mongodb"))


def test_the_ui_may_only_read_the_paths_it_proxies(prod):
    for callee, path in UI_CALLS.items():
        (rule,) = policies(prod)[f"allow-{callee}"]["rules"][:1]
        operation = rule["to"][0]["operation"]
        assert operation["methods"] == ["GET"]
        assert path in operation["paths"]
        assert all(p in (path, "/info", "/live") for p in operation["paths"])


def test_only_mongodb_tier_versions_reach_mongo(dev, prod):
    for run in (dev, prod):
        accounts = {d.k8s_name: principal(NS, pod_spec(d)["serviceAccountName"]) for d in run.within("MeshService").of_type("Deployment")}
        tiers = {d.k8s_name: pod_labels(d)["data-tier"] for d in run.within("MeshService").of_type("Deployment")}
        on_mongodb = {accounts[name] for name, tier in tiers.items() if tier == "mongodb"}
        jobs = {principal(NS, pod_spec(job)["serviceAccountName"]) for job in run.of_type("Job")}
        # A replica set's members also reach each other; a single server is no client of itself.
        statefulset = run.named("StatefulSet", "mongodb")
        replica_set = statefulset.inputs["spec"]["replicas"] > 1
        members = {principal(NS, pod_spec(statefulset)["serviceAccountName"])} if replica_set else set()
        assert on_mongodb and mongo_principals(run) == on_mongodb | jobs | members
        # hotel-v1 reads bundled JSON: the same service, but not a database client.
        assert tiers["hotel-v1"] == "json" and accounts["hotel-v1"] not in mongo_principals(run)
        mongo = policies(run)["allow-mongodb"]["rules"]
        assert {port for rule in mongo for port in rule["to"][0]["operation"]["ports"]} == {"27017"}


def test_a_service_without_a_mongodb_version_has_no_database_identity():
    run = run_stack("dev", {"services.destination": {"versions": {"v1": {"tier": "json"}}}})
    assert allowed_edges(run) == expected_edges(("hotel-mongodb", "carrental-mongodb", "mongodb-seed"))
    assert "destination-mongodb" not in {sa.k8s_name for sa in run.of_type("ServiceAccount")}


@pytest.mark.parametrize("stack, gateway", [("dev", "istio-ingressgateway-service-account"),
                                            ("prod", "istio-ingressgateway-service-account"),
                                            ("current", "istio-ingressgateway")])
def test_every_principal_is_an_identity_the_stack_creates(stack, gateway, request):
    assert_principals_are_created(request.getfixturevalue(stack), gateway)


def test_a_backend_running_only_its_mongodb_version_has_only_that_identity():
    run = run_stack("dev", {"services.hotel": {"versions": {"v2": {"tier": "mongodb"}}}})
    assert run.error is None, run.error
    assert "hotel" not in {sa.k8s_name for sa in run.of_type("ServiceAccount")}
    assert_principals_are_created(run, "istio-ingressgateway-service-account")


def test_no_rule_admits_a_caller_without_a_mesh_identity(dev, prod):
    for run in (dev, prod):
        for spec in policies(run).values():
            for rule in spec.get("rules", []):
                assert all(set(source["source"]) == {"principals"} for source in rule["from"])
        # Prometheus scrapes the agent's merged metrics, which authorization does not gate.
        istiod = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "istiod")
        assert istiod.inputs["values"]["meshConfig"]["enablePrometheusMerge"] is True


def test_mtls_mode_is_the_stacks_everywhere(dev, prod, current):
    for run, mode in ((dev, "PERMISSIVE"), (prod, "STRICT"), (current, "STRICT")):
        peer = {(r.metadata["namespace"], r.k8s_name): r.inputs["spec"] for r in run.of_type("PeerAuthentication")}
        assert peer == {("istio-system", "default"): {"mtls": {"mode": mode}}, (NS, "default"): {"mtls": {"mode": mode}}}
        # Clients use Istio mTLS wherever servers accept it: the two never disagree.
        assert all(r.inputs["spec"]["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"} for r in run.of_type("DestinationRule"))
    assert current.named("AuthorizationPolicy", "allow-bee-ui").inputs["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        principal("istio-system", "istio-ingressgateway")]


def test_each_workload_may_reach_only_what_it_calls(dev, prod):
    sidecars = {r.k8s_name: r.inputs["spec"] for r in prod.of_type("Sidecar")}
    hosts = {name: spec["egress"][0]["hosts"] for name, spec in sidecars.items()}
    assert hosts["default"] == ["istio-system/*"]
    assert hosts["bee-ui"] == [f"./{callee}.{NS}.svc.cluster.local" for callee in UI_CALLS] + ["istio-system/*"]
    replica_set = [f"./mongo.{NS}.svc.cluster.local", f"./mongodb-headless.{NS}.svc.cluster.local", "istio-system/*"]
    assert hosts["hotel-mongodb"] == hosts["seed-jobs"] == hosts["mongodb"] == replica_set
    assert hosts["hotel"] == ["istio-system/*"]
    assert hosts["currencyexchange"] == ["./api.exchangeratesapi.io", "istio-system/*"]
    dev_hosts = {r.k8s_name: r.inputs["spec"]["egress"][0]["hosts"] for r in dev.of_type("Sidecar")}
    assert dev_hosts["hotel-mongodb"] == dev_hosts["seed-jobs"] == [f"./mongo.{NS}.svc.cluster.local", "istio-system/*"]
    assert "mongodb" not in dev_hosts  # a single server talks to no peer
    assert all(spec["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"} for spec in sidecars.values())
    assert all("outboundTrafficPolicy" not in r.inputs["spec"] for r in dev.of_type("Sidecar"))


def test_each_pod_gets_one_sidecar_and_only_mongodb_tier_pods_reach_mongo(any_stack):
    sidecars = [r.inputs["spec"] for r in any_stack.of_type("Sidecar") if "workloadSelector" in r.inputs["spec"]]
    for deployment in any_stack.within("MeshService").of_type("Deployment"):
        labels = pod_labels(deployment)
        # Istio applies one Sidecar with a matching selector per pod; two would leave the choice undefined.
        (sidecar,) = [s for s in sidecars if s["workloadSelector"]["labels"].items() <= labels.items()]
        reaches_mongo = any("mongo" in host for host in sidecar["egress"][0]["hosts"])
        assert reaches_mongo == (labels["data-tier"] == "mongodb"), deployment.k8s_name


def test_security_resources_wait_for_istiod(prod):
    istiod = next(r for r in prod.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "istiod")
    for resource in prod.of_type("PeerAuthentication", "AuthorizationPolicy", "Sidecar"):
        assert prod.depends_on(resource, istiod), resource.name


def test_authorization_can_be_turned_off_outside_production():
    run = run_stack("dev", {"security.authorization": False, "security.restrictEgress": False})
    assert run.of_type("AuthorizationPolicy", "Sidecar") == []
    assert len(run.of_type("PeerAuthentication")) == 2
    assert "security.authorization: is false" in str(run_stack("prod", {"security.authorization": False}).error)


def test_only_cloud_tier_pods_may_leave_for_the_cloud_database():
    run = run_stack("prod", {"services.hotel.versions.v3": {"tier": "cloud"}, "services.hotel.weights": {"v1": 80, "v2": 10, "v3": 10},
                             "cloudDatabase.host": "db.example.com"},
                    secrets={"cloudDatabaseUrl": "mongodb://user:pw@db.example.com:27017/beetravels?tls=true"})
    assert run.error is None, run.error
    egress = {(s.inputs["spec"]["workloadSelector"]["labels"].get("app"), s.inputs["spec"]["workloadSelector"]["labels"].get("data-tier")):
              s.inputs["spec"]["egress"][0]["hosts"] for s in run.of_type("Sidecar") if "workloadSelector" in s.inputs["spec"]}
    tiers = {pod_labels(d)["data-tier"] for d in run.within("MeshService").of_type("Deployment") if pod_labels(d)["app"] == "hotel"}
    assert tiers == {"json", "mongodb", "cloud"}
    for tier in tiers:
        assert ("./db.example.com" in egress[("hotel", tier)]) == (tier == "cloud"), tier
    assert "db-example-com" in {e.k8s_name for e in run.of_type("ServiceEntry")}


# ---- the NetworkPolicy layer -----------------------------------------------------------------------

GATEWAY = ("istio-system", "ingressgateway")  # the gateway's pods, rendered by its chart, not by the stack


def _pod_identities(run):
    """(namespace, labels, ServiceAccount) of every pod template the stack renders, plus the gateway's."""
    pods = []
    for workload in run.of_type("Deployment", "StatefulSet", "Job"):
        template = workload.inputs["spec"]["template"]
        account = template["spec"].get("serviceAccountName")
        pods.append((workload.metadata["namespace"], template["metadata"]["labels"], account))
    return pods


def _accounts_selected(run, namespace, selector, gateway_account):
    if namespace == GATEWAY[0]:
        return {gateway_account} if selector == {"istio": GATEWAY[1]} else set()
    return {account for ns, labels, account in _pod_identities(run)
            if ns == namespace and selector.items() <= labels.items()}


def network_edges(run, gateway_account):
    """(caller ServiceAccount, callee app, port) admitted by the ingress rules, and opened by the egress rules."""
    ingress, egress = set(), set()
    for policy in run.of_type("NetworkPolicy"):
        spec, namespace = policy.inputs["spec"], policy.metadata["namespace"]
        if namespace == GATEWAY[0]:
            continue  # Istio's own namespace: tests/test_istio_fence.py
        selector = spec["podSelector"].get("matchLabels", {})
        for rule in spec.get("ingress", []):
            if "app" not in selector:
                continue  # the namespace-wide rules: scraping from Istio's namespace
            for peer in rule.get("from", []):
                peer_namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name", namespace)
                for account in _accounts_selected(run, peer_namespace, peer["podSelector"]["matchLabels"], gateway_account):
                    ingress |= {(account, selector["app"], port["port"]) for port in rule["ports"]}
        for rule in spec.get("egress", []):
            for peer in rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    callee = peer["podSelector"]["matchLabels"]["app"]
                    for account in _accounts_selected(run, namespace, selector, gateway_account):
                        egress |= {(account, callee, port["port"]) for port in rule["ports"]}
    return ingress, egress


@pytest.mark.parametrize(("stack", "gateway_account"), [("dev", "istio-ingressgateway-service-account"),
                                                        ("prod", "istio-ingressgateway-service-account"),
                                                        ("current", "istio-ingressgateway")])
def test_network_policies_admit_exactly_the_edges_the_authorization_rules_allow(stack, gateway_account, request):
    run = request.getfixturevalue(stack)
    ingress, egress = network_edges(run, gateway_account)
    authorized = {(caller.rsplit("/sa/", 1)[1], callee) for caller, callee in allowed_edges(run)}
    assert {(account, app) for account, app, _ in ingress} == authorized
    # Each caller's own egress rules open the same edges (the gateway's namespace is the charts', not the stack's).
    assert egress == {edge for edge in ingress if edge[0] != gateway_account}
    ports = {name: spec.port for name, spec in CATALOGUE.items()}
    assert all(port == ports.get(app, 27017) for _, app, port in ingress), "a rule opens a port other than the callee's"


def test_everything_else_is_denied_and_only_dns_istiod_and_scraping_are_open_namespace_wide(prod, current):
    for run in (prod, current):
        shared = {p.k8s_name: p.inputs["spec"] for p in run.of_type("NetworkPolicy") if p.inputs["spec"]["podSelector"] == {}}
        assert shared["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert {port["port"] for port in shared["allow-dns"]["egress"][0]["ports"]} == {53}
        istio = shared["allow-istio"]
        assert [port["port"] for port in istio["egress"][0]["ports"]][0] == 15012
        assert [port["port"] for port in istio["ingress"][0]["ports"]] == [15020, 15090]
        assert istio["egress"][0]["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}}]
    (istio_namespace,) = [n for n in prod.of_type("Namespace") if n.k8s_name == "istio-system"]
    assert istio_namespace.metadata["labels"]["kubernetes.io/metadata.name"] == "istio-system"  # not automatic on 1.18


def test_only_app_pods_that_call_a_host_outside_the_cluster_may_leave_it_and_only_on_its_port():
    run = run_stack("prod", {"services.hotel.versions.v3": {"tier": "cloud"}, "services.hotel.weights": {"v1": 80, "v2": 10, "v3": 10},
                             "cloudDatabase.host": "db.example.com"},
                    secrets={"cloudDatabaseUrl": "mongodb://user:pw@db.example.com:27017/beetravels?tls=true"})
    assert run.error is None, run.error
    outside = {p.k8s_name: [port["port"] for rule in p.inputs["spec"]["egress"] if any("ipBlock" in peer for peer in rule.get("to", []))
                            for port in rule["ports"]]
               for p in run.of_type("NetworkPolicy") if p.inputs["spec"].get("egress") and p.metadata["namespace"] == "bee-travels"}
    entries = {e.inputs["spec"]["hosts"][0]: [port["number"] for port in e.inputs["spec"]["ports"]] for e in run.of_type("ServiceEntry")}
    assert {name: ports for name, ports in outside.items() if ports} == {
        "hotel-cloud-egress": entries["db.example.com"],
        # The currency service's exchange-rates API, its one host outside the cluster.
        "currencyexchange-egress": [port for host, ports in entries.items() if host != "db.example.com" for port in ports]}


@pytest.mark.parametrize(("tracing", "ports"), [(True, [15012, 9411]), (False, [15012])])
def test_tracing_opens_the_collector_port_in_istios_namespace(tracing, ports):
    run = run_stack("dev", {"observability.tracing.enabled": tracing})
    (istio,) = [p for p in run.of_type("NetworkPolicy") if p.k8s_name == "allow-istio"]
    assert [port["port"] for port in istio.inputs["spec"]["egress"][0]["ports"]] == ports


def test_network_policies_can_be_left_to_the_mesh():
    run = run_stack("dev", {"security.networkPolicies": False})
    assert run.error is None and run.of_type("NetworkPolicy") == []


def test_no_network_policy_declares_an_empty_rule_list(any_stack):
    # The API server drops an empty `egress: []`, so the live object would never match what was declared; an identity
    # that calls nothing gets no egress policy of its own (the namespace's deny-by-default covers it).
    for policy in any_stack.of_type("NetworkPolicy"):
        assert all(policy.inputs["spec"].get(key) != [] for key in ("ingress", "egress")), policy.k8s_name
