"""Istio's namespace fenced: the NetworkPolicies, read the way a CNI enforces them, admit exactly the connections
istiod, the gateway, the sidecars and the add-ons are configured to make, and nothing else.

The expected connections come from what the stack configures, not from the fence's builder: the add-ons' Helm values
(Grafana's and Kiali's Prometheus and tracing URLs, the mesh config's Zipkin address), the Services the stack runs,
and the ports the pinned charts serve on (read from the charts; the real-cluster tiers check the pod labels against
what the real charts render).
"""

from __future__ import annotations

import itertools
from urllib.parse import urlparse

import pytest
import yaml

from builders.kube import NAMESPACE_LABEL
from harness.real_charts import real_charts
from harness.stacks import CURRENT_ISTIO
from tools import scan
from tools.stack_run import run_stack

ISTIO, APP = "istio-system", "bee-travels"
OUTSIDE = ("outside", ())  # the API server, the internet: reached by address
# The pods in Istio's namespace, as the pinned charts label them under our values (see the module docstring).
CHART_PODS = {
    "1.6": {"prometheus": {"app": "prometheus", "component": "server", "release": "prometheus"},
            "grafana": {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "grafana", "app": "grafana"},
            "kiali": {"app": "kiali", "app.kubernetes.io/name": "kiali", "app.kubernetes.io/instance": "kiali"}},
    "1.30": {"prometheus": {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server",
                            "app.kubernetes.io/instance": "prometheus"},
             "grafana": {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "grafana", "app": "grafana"},
             "kiali": {"app": "kiali", "app.kubernetes.io/name": "kiali", "app.kubernetes.io/instance": "kiali"}},
}
ISTIOD = {"app": "istiod", "istio": "pilot"}
GATEWAY = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
# Ports the pinned charts and releases serve on (istiod 1.6.14 templates/service.yaml and 1.30.3's; the gateway's
# Envoy statistics; a sidecar agent's merged metrics; Kiali's metrics, which its pods annotate for scraping).
XDS, MONITORING, WEBHOOK, ENVOY_STATS, MERGED_STATS, KIALI_METRICS = 15012, 15014, 15017, 15090, 15020, 9090
GATEWAY_LISTENERS = (8080, 8443, 15021)
API = (443, 6443)


def _matches(selector: dict, labels: dict) -> bool:
    return selector.get("matchLabels", {}).items() <= dict(labels).items()


def _peer_matches(peer: dict, namespace: str, labels, own_namespace: str) -> bool:
    if namespace == "outside":
        return "ipBlock" in peer
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and not _matches(peer["namespaceSelector"], {NAMESPACE_LABEL: namespace}):
        return False
    if "namespaceSelector" not in peer and namespace != own_namespace:
        return False
    return _matches(peer.get("podSelector", {}), labels)


def _allows(policies: list[dict], namespace: str, labels, direction: str, peer: tuple[str, tuple], port: int) -> bool:
    """Whether the policies of a fenced namespace let this pod's traffic through in one direction."""
    kind, side = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [p for p in policies if p["namespace"] == namespace and kind in p["spec"]["policyTypes"]
                 and _matches(p["spec"]["podSelector"], labels)]
    if not selecting:
        return True
    return any((side not in rule or any(_peer_matches(x, peer[0], peer[1], namespace) for x in rule[side]))
               and ("ports" not in rule or any(p["port"] == port for p in rule["ports"]))
               for policy in selecting for rule in policy["spec"].get(direction, []))


def admitted(policies: list[dict], source: tuple[str, tuple], destination: tuple[str, tuple], port: int) -> bool:
    (source_ns, source_labels), (dest_ns, dest_labels) = source, destination
    out = source_ns == "outside" or _allows(policies, source_ns, source_labels, "egress", destination, port)
    into = dest_ns == "outside" or _allows(policies, dest_ns, dest_labels, "ingress", source, port)
    return out and into


def workloads(run) -> dict[str, tuple[str, tuple]]:
    """Every workload a connection may start or end at: Istio's, the add-ons' the stack runs, a sidecar, outside."""
    releases = {r.inputs["name"] for r in run.of_type("Release")}
    line = "1.6" if _is_1_6(run) else "1.30"
    found = {"istiod": (ISTIO, tuple(ISTIOD.items())), "gateway": (ISTIO, tuple(GATEWAY.items())),
             "frontend": (APP, (("app", "bee-ui"), ("version", "v1"))), "sidecar": (APP, (("app", "hotel"), ("version", "v1"))),
             "outside": OUTSIDE}
    for addon, labels in CHART_PODS[line].items():
        if addon in releases:
            found[addon] = (ISTIO, tuple(labels.items()))
    if any(d.k8s_name == "tracing" for d in run.of_type("Deployment")):
        (tracing,) = [d for d in run.of_type("Deployment") if d.k8s_name == "tracing"]
        found["tracing"] = (ISTIO, tuple(tracing.inputs["spec"]["template"]["metadata"]["labels"].items()))
    return found


def _url_port(url: str, run) -> tuple[str, int]:
    """The workload and pod port a URL of the add-ons' values reaches, through the Service it names."""
    parsed = urlparse(url)
    service = parsed.hostname.split(".")[0]
    ours = {s.k8s_name: s for s in run.of_type("Service") if s.metadata["namespace"] == ISTIO}
    if service in ours:
        (port,) = [p for p in ours[service].inputs["spec"]["ports"] if p["port"] == (parsed.port or 80)]
        return "tracing", port["targetPort"]
    return service, parsed.port


def expected_edges(run) -> set[tuple[str, str, int]]:
    releases = {r.inputs["name"]: r.inputs["values"] for r in run.of_type("Release")}
    found = workloads(run)
    # Every pod resolves names (the cluster's DNS is addressed like anything outside the namespace).
    edges = {(name, "outside", 53) for name, (namespace, _) in found.items() if namespace == ISTIO}
    edges |= {(proxy, "istiod", XDS) for proxy in ("gateway", "frontend", "sidecar")}
    edges |= {("outside", "istiod", WEBHOOK), ("istiod", "outside", 443), ("istiod", "outside", 6443)}
    edges |= {("outside", "gateway", port) for port in GATEWAY_LISTENERS}
    edges.add(("gateway", "frontend", _frontend_port(run)))
    if "prometheus" in found:
        edges |= {("prometheus", "istiod", MONITORING), ("prometheus", "gateway", ENVOY_STATS),
                  ("prometheus", "frontend", MERGED_STATS), ("prometheus", "sidecar", MERGED_STATS),
                  ("prometheus", "outside", 443), ("prometheus", "outside", 6443)}
        if "kiali" in found:
            edges.add(("prometheus", "kiali", KIALI_METRICS))
    if "grafana" in found:
        (datasource,) = releases["grafana"]["datasources"]["datasources.yaml"]["datasources"]
        edges.add(("grafana", *_url_port(datasource["url"], run)))
        if "dashboards" in releases["grafana"]:
            edges.add(("grafana", "outside", urlparse(next(iter(releases["grafana"]["dashboards"]["istio"].values()))["url"]).port or 443))
    if "kiali" in found:
        services = releases["kiali"]["external_services"]
        edges |= {("kiali", "outside", 443), ("kiali", "outside", 6443), ("kiali", *_url_port(services["prometheus"]["url"], run))}
        tracing = services["tracing"]
        if tracing.get("enabled"):
            edges.add(("kiali", *_url_port(tracing.get("internal_url") or tracing["in_cluster_url"], run)))
        kiali_chart = next(r for r in run.of_type("Release") if r.inputs["name"] == "kiali")
        if kiali_chart.inputs["version"].startswith("1."):  # its default url_service_version: http://istiod:15014/version
            edges.add(("kiali", "istiod", MONITORING))
    zipkin = (releases["istiod"].get("meshConfig", {}).get("defaultConfig", {}).get("tracing", {}).get("zipkin", {}).get("address"))
    if zipkin:
        edges |= {(proxy, "tracing", int(zipkin.rsplit(":", 1)[1])) for proxy in ("gateway", "frontend", "sidecar")}
    if _is_1_6(run):
        edges |= {("gateway", "outside", 443), ("gateway", "outside", 6443)}  # its agent watches its TLS Secrets
    return edges


def _frontend_port(run) -> int:
    """The port the front end's pods serve on, which the gateway's route reaches through its Service."""
    deployment = next(d for d in run.of_type("Deployment") if d.k8s_name.startswith("bee-ui-"))
    return deployment.inputs["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]


def _is_1_6(run) -> bool:
    return any(r.inputs["chart"].endswith("istio-discovery") for r in run.of_type("Release"))


def admitted_edges(run) -> set[tuple[str, str, int]]:
    policies = [{"namespace": p.metadata["namespace"], "spec": p.inputs["spec"]} for p in run.of_type("NetworkPolicy")]
    found = workloads(run)
    ports = {rule_port["port"] for p in policies for direction in ("ingress", "egress")
             for rule in p["spec"].get(direction, []) for rule_port in rule.get("ports", [])}
    involved = {name for name, (namespace, _) in found.items() if namespace == ISTIO}
    return {(source, destination, port) for source, destination in itertools.permutations(found, 2)
            if {source, destination} & involved for port in ports
            if admitted(policies, found[source], found[destination], port)}


def _app_only(edges):
    """Connections between the app's own pods and out of them are the call graph's (tests/test_security.py)."""
    return {edge for edge in edges if not ({edge[0], edge[1]} <= {"frontend", "sidecar", "outside"})}


STACKS = {
    "dev": {},
    "prod": {},
    "current": CURRENT_ISTIO,
    "prod, zipkin and no kiali": {"observability.tracing.backend": "zipkin", "observability.kiali": False},
    "current, no add-ons": {**CURRENT_ISTIO, "observability.prometheus": False, "observability.grafana": False,
                            "observability.kiali": False, "observability.tracing.enabled": False},
    "prod, the API server's addresses given": {"security.apiServerCidrs": ["172.18.0.2/32", "fd00::2/128"]},
}


@pytest.mark.parametrize("stack", STACKS)
def test_istios_namespace_admits_exactly_the_connections_its_workloads_are_configured_to_make(stack, istio_chart_cache):
    run = run_stack("dev" if stack == "dev" else "prod", STACKS[stack])
    assert run.error is None, run.error
    assert _app_only(admitted_edges(run)) == expected_edges(run)


def test_every_workload_in_istios_namespace_has_a_policy_of_its_own_besides_the_defaults(any_stack):
    policies = [p.inputs["spec"] for p in any_stack.of_type("NetworkPolicy") if p.metadata["namespace"] == ISTIO]
    named = [spec for spec in policies if spec["podSelector"]]
    for name, (namespace, labels) in workloads(any_stack).items():
        if namespace == ISTIO:
            assert any(_matches(spec["podSelector"], dict(labels)) for spec in named), name
    assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies


def test_the_fence_reads_a_wrong_port_as_refused():
    """The reader itself: a rule on another port, or from other pods, does not admit the connection."""
    policies = [{"namespace": ISTIO, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
                {"namespace": ISTIO, "spec": {"podSelector": {"matchLabels": {"app": "istiod"}}, "policyTypes": ["Ingress"],
                                              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: APP}}}],
                                                           "ports": [{"protocol": "TCP", "port": XDS}]}]}}]
    istiod, sidecar, gateway = (ISTIO, (("app", "istiod"),)), (APP, (("app", "hotel"),)), (ISTIO, (("istio", "ingressgateway"),))
    assert admitted(policies, sidecar, istiod, XDS)
    assert not admitted(policies, sidecar, istiod, MONITORING)
    assert not admitted(policies, gateway, istiod, XDS)  # denied twice: its own egress, and istiod's ingress
    assert not admitted(policies, OUTSIDE, istiod, XDS)


@pytest.mark.parametrize("overrides", [{}, CURRENT_ISTIO], ids=["prod", "current"])
def test_given_the_api_servers_addresses_the_fence_opens_nothing_else_to_them(overrides, istio_chart_cache):
    """The API ports (443/6443 out, the webhook in) lead only to the given addresses; the one rule left to anywhere
    is Grafana's download of Istio's dashboards, where the stack has it."""
    given = ["172.18.0.2/32", "fd00::2/128"]
    run = run_stack("prod", {**overrides, "security.apiServerCidrs": given})
    assert run.error is None, run.error
    by_address: dict[tuple[str, ...], set[tuple[str, str, int]]] = {}
    for policy in (p for p in run.of_type("NetworkPolicy") if p.metadata["namespace"] == ISTIO):
        for direction, side in (("ingress", "from"), ("egress", "to")):
            for rule in policy.inputs["spec"].get(direction, []):
                cidrs = tuple(sorted(peer["ipBlock"]["cidr"] for peer in rule.get(side, []) if "ipBlock" in peer))
                for port in (p["port"] for p in rule.get("ports", [])):
                    by_address.setdefault(cidrs, set()).add((policy.metadata["name"], direction, port))
    api = by_address[tuple(sorted(given))]
    assert {(name, port) for name, _, port in api} >= {("istiod", 443), ("istiod", WEBHOOK), ("prometheus", 6443), ("kiali", 443)}
    assert ("istiod", "ingress", WEBHOOK) in api
    anywhere = by_address.get(("0.0.0.0/0", "::/0"), set())
    assert anywhere <= {("grafana", "egress", 443)}, anywhere


def test_the_fence_is_off_with_the_network_policies():
    run = run_stack("prod", {"security.networkPolicies": False})
    assert run.error is None and [p for p in run.of_type("NetworkPolicy") if p.metadata["namespace"] == ISTIO] == []


# ---- the fence against the real charts ------------------------------------------------------------

def _rendered_charts(stack: str, overrides: dict) -> tuple[object, list[dict]]:
    """The program's run on the real charts, and the objects its releases render (Helm, the pinned charts) with its
    own Deployments and Services in Istio's namespace."""
    edits = real_charts().on(overrides)
    run = run_stack(stack, edits)
    assert run.error is None, run.error
    releases, kubernetes_version = scan.chart_releases(stack, edits)
    objects = [document for release in releases for document in scan.render_release(scan.helm_binary(), release, kubernetes_version)]
    objects += [{"kind": r.kind, "metadata": r.metadata, "spec": r.inputs.get("spec", {})}
                for r in run.of_type("Deployment", "Service") if r.metadata.get("namespace") == ISTIO]
    return run, objects


def _rendered_chart_pods(stack: str, overrides: dict) -> tuple[object, dict[str, tuple[dict, set[int]]]]:
    """Every pod in Istio's namespace with the ports it serves on: its containers' and its Services' target ports."""
    run, objects = _rendered_charts(stack, overrides)
    pods: dict[str, tuple[dict, set[int]]] = {}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        template = deployment["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        ports = {port["containerPort"] for container in template["spec"]["containers"] for port in container.get("ports", [])}
        ports |= {port.get("targetPort") or port["port"] for service in objects if service["kind"] == "Service"
                  and service["spec"].get("selector") and service["spec"]["selector"].items() <= labels.items()
                  for port in service["spec"]["ports"]}
        pods[deployment["metadata"]["name"]] = (labels, ports)
    return run, pods


@pytest.mark.parametrize("overrides", [{}, CURRENT_ISTIO], ids=["prod", "current"])
def test_every_rule_of_the_fence_names_pods_and_ports_the_real_charts_run(overrides):
    """Each policy selects a pod the real charts (or the stack) run, and every port it opens into or out to a pod of
    Istio's namespace is one that pod serves on: a wrong label or port would fence off a component silently."""
    run, pods = _rendered_chart_pods("prod", overrides)
    assert {"istiod", "istio-ingressgateway", "prometheus", "grafana", "kiali"} <= set(pods)
    wrong = []
    for policy in (p for p in run.of_type("NetworkPolicy") if p.metadata["namespace"] == ISTIO):
        spec, name = policy.inputs["spec"], policy.metadata["name"]
        selected = [pod for pod, (labels, _) in pods.items() if _matches(spec["podSelector"], labels)]
        if not selected:
            wrong.append(f"{name} selects no pod")
        for port in (p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])):
            wrong += [f"{name}: {pod} does not serve {port}" for pod in selected if port not in pods[pod][1]]
        for rule in spec.get("egress", []):
            peers = [peer for peer in rule.get("to", []) if "podSelector" in peer and "namespaceSelector" not in peer]
            for peer in peers:
                reached = [pod for pod, (labels, _) in pods.items() if _matches(peer["podSelector"], labels)]
                wrong += [f"{name}: egress to {peer['podSelector']} reaches no pod"] if not reached else []
                wrong += [f"{name}: {pod} does not serve {p['port']}" for p in rule.get("ports", []) for pod in reached
                          if p["port"] not in pods[pod][1]]
    assert wrong == []


@pytest.mark.parametrize("overrides", [{}, CURRENT_ISTIO], ids=["prod", "current"])
def test_the_labels_and_ports_this_module_assumes_are_those_the_real_charts_render(overrides):
    _, pods = _rendered_chart_pods("prod", overrides)
    line = "1.30" if overrides else "1.6"
    for name, labels in {**CHART_PODS[line], "istiod": ISTIOD, "istio-ingressgateway": GATEWAY}.items():
        assert labels.items() <= pods[name][0].items(), name
    assert {XDS, MONITORING, WEBHOOK} <= pods["istiod"][1]
    assert {*GATEWAY_LISTENERS, ENVOY_STATS} <= pods["istio-ingressgateway"][1]
    assert KIALI_METRICS in pods["kiali"][1]


def test_istio_1_6_proxies_leave_istiods_dns_over_tls_port_alone_which_the_fence_keeps_closed():
    """istiod 1.6.14 also serves DNS over TLS (Service port 853, pod 15053), which a 1.6 agent dials only with
    DNS_AGENT set (pilot-agent main.go at 1.6.14). The mesh config the real chart renders leaves it empty."""
    run, objects = _rendered_charts("prod", {})
    mesh = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "istio")
    proxy_metadata = yaml.safe_load(mesh["data"]["mesh"])["defaultConfig"].get("proxyMetadata", {})
    assert not proxy_metadata.get("DNS_AGENT")
    env = [variable for o in objects if o["kind"] == "Deployment" for container in o["spec"]["template"]["spec"]["containers"]
           for variable in container.get("env", []) if variable["name"] == "DNS_AGENT" and variable.get("value")]
    assert env == []
    istiod_ports = {port["port"] for p in run.of_type("NetworkPolicy") if p.metadata["name"] == "istiod"
                    for rule in p.inputs["spec"].get("ingress", []) for port in rule.get("ports", [])}
    assert istiod_ports and not istiod_ports & {853, 15053}
