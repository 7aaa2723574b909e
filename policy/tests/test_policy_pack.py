"""The policy pack's rules, called without the CLI: the real dev and prod stacks pass, a crafted bad stack fails each rule.

Resources come from the real program under the mock engine (tools/stack_run.py) and are handed to the
validators the way the engine hands them to the pack: type token, plain camelCase inputs, options.
Bad stacks are the real ones with one object changed, since stack-file validation already refuses most
bad settings before anything is registered; the pack is the guard for what gets past it.
"""

from __future__ import annotations

import copy
import runpy
from collections.abc import Callable
from pathlib import Path

import mesh_policies
import pulumi_policy
import pytest
import yaml
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from tools.stack_run import Registered, StackRun, run_stack, unwrap

PACK_DIR = Path(mesh_policies.__file__).parent


def _options(resource: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(resource.protect, resource.ignore_changes, resource.delete_before_replace, [],
                                 PolicyCustomTimeouts(0, 0, 0), [], resource.parent)


def evaluate(resources: list[Registered], config: dict[str, dict] | None = None) -> list[tuple[str, str]]:
    """(policy, message) for every violation the pack reports on these resources."""
    violations: list[tuple[str, str]] = []
    custom = [r for r in resources if r.custom]
    for policy in mesh_policies.POLICIES:
        policy_config = (config or {}).get(policy.name, {})

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            violations.append((name, message))

        if isinstance(policy, ResourceValidationPolicy):
            for resource in custom:
                policy.validate(ResourceValidationArgs(resource.type, unwrap(resource.inputs), resource.urn, resource.name,
                                                       _options(resource), None, policy_config), report)
        else:
            stack = [PolicyResource(r.type, unwrap(r.inputs), r.urn, r.name, _options(r), None, None, [], {}) for r in custom]
            policy.validate(StackValidationArgs(stack, policy_config), report)
    return violations


def changed(run: StackRun, pick: Callable[[Registered], bool], change: Callable[[Registered], None]) -> list[Registered]:
    """The run's resources with `change` applied to a copy of the first one `pick` selects."""
    resources = [copy.deepcopy(r) for r in run.resources]
    target = next(r for r in resources if pick(r))
    change(target)
    return resources


def kind(name: str, object_name: str | None = None) -> Callable[[Registered], bool]:
    return lambda r: r.kind == name and (object_name is None or r.k8s_name == object_name or r.name == object_name)


def first_container(resource: Registered) -> dict:
    spec = mesh_policies.pod_spec(resource.type, resource.inputs)
    return spec["containers"][0]


def policies_hit(violations: list[tuple[str, str]]) -> set[str]:
    return {name for name, _ in violations}


# ---- the real stacks pass ------------------------------------------------------------------------

def test_dev_prod_and_current_istio_pass_every_policy(any_stack):
    assert evaluate(any_stack.resources) == []


def test_the_pack_entry_point_registers_every_rule_as_mandatory(monkeypatch):
    captured = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="__main__")
    assert captured["policies"] is mesh_policies.POLICIES
    assert captured["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    assert sorted(p.name for p in captured["policies"]) == sorted([
        "prod-strict-mtls", "virtualservice-weights-sum-100", "container-requests-and-limits", "pinned-images",
        "no-privileged-or-root", "data-protected-in-prod", "no-loadbalancer-except-gateway", "secrets-from-pulumi-secrets",
        "runtime-default-seccomp", "no-unneeded-api-token", "no-mirrored-writes", "production-images-by-digest"])


def test_pack_manifest_names_python_runtime_and_its_requirements():
    manifest = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert "pulumi-policy" in (PACK_DIR / "requirements.txt").read_text()


# ---- prod-strict-mtls ----------------------------------------------------------------------------

def _set_mode(mode: str) -> Callable[[Registered], None]:
    def change(resource: Registered) -> None:
        resource.inputs["spec"]["mtls"]["mode"] = mode
    return change


def test_prod_with_a_permissive_peer_authentication_is_rejected(prod):
    violations = evaluate(changed(prod, kind("PeerAuthentication"), _set_mode("PERMISSIVE")))
    assert policies_hit(violations) == {"prod-strict-mtls"}
    assert any("PERMISSIVE" in message for _, message in violations)


def test_prod_without_a_mesh_wide_strict_default_is_rejected(prod):
    resources = [r for r in prod.resources
                 if not (r.kind == "PeerAuthentication" and r.metadata.get("namespace") == "istio-system")]
    assert len(resources) == len(prod.resources) - 1
    violations = evaluate(resources)
    assert [name for name, _ in violations] == ["prod-strict-mtls"]
    assert "mesh-wide" in violations[0][1]


def test_prod_destination_rule_without_istio_mutual_is_rejected(prod):
    def disable_tls(resource: Registered) -> None:
        resource.inputs["spec"]["trafficPolicy"]["tls"] = {"mode": "DISABLE"}

    violations = evaluate(changed(prod, kind("DestinationRule", "hotel"), disable_tls))
    assert policies_hit(violations) == {"prod-strict-mtls"}
    assert "ISTIO_MUTUAL" in violations[0][1]


def test_permissive_mtls_is_allowed_on_dev_unless_dev_is_declared_production(istio_chart_cache):
    permissive_dev = run_stack("dev", {"security.mtlsMode": "PERMISSIVE"})
    assert permissive_dev.error is None
    assert evaluate(permissive_dev.resources) == []
    as_production = evaluate(permissive_dev.resources, {"prod-strict-mtls": {"productionStacks": ["dev", "prod"]}})
    assert policies_hit(as_production) == {"prod-strict-mtls"}


# ---- virtualservice-weights-sum-100 --------------------------------------------------------------

def _split_route(run: StackRun) -> Registered:
    return next(r for r in run.of_type("VirtualService")
                if any(len(route.get("route", [])) > 1 for route in r.inputs["spec"].get("http", [])))


def _reweigh(weights: list[int | None]) -> Callable[[Registered], None]:
    def change(resource: Registered) -> None:
        route = next(route for route in resource.inputs["spec"]["http"] if len(route["route"]) > 1)
        for destination, weight in zip(route["route"], weights, strict=False):
            if weight is None:
                destination.pop("weight", None)
            else:
                destination["weight"] = weight
    return change


@pytest.mark.parametrize("weights", [[90, 20], [50, 49], [100, None]])
def test_split_whose_weights_do_not_sum_to_100_is_rejected(dev, weights):
    split = _split_route(dev)
    violations = evaluate(changed(dev, lambda r: r.urn == split.urn, _reweigh(weights)))
    assert policies_hit(violations) == {"virtualservice-weights-sum-100"}


def test_a_moved_canary_that_still_sums_to_100_passes(dev):
    split = _split_route(dev)
    assert evaluate(changed(dev, lambda r: r.urn == split.urn, _reweigh([0, 100]))) == []


# ---- container-requests-and-limits ---------------------------------------------------------------

@pytest.mark.parametrize("section", ["requests", "limits"])
def test_container_without_requests_or_limits_is_rejected(dev, section):
    violations = evaluate(changed(dev, kind("Deployment"), lambda r: first_container(r)["resources"].pop(section)))
    assert policies_hit(violations) == {"container-requests-and-limits"}
    assert f"{section}.cpu" in violations[0][1]


def test_init_containers_need_requests_and_limits_too(prod):
    def strip_init(resource: Registered) -> None:
        spec = mesh_policies.pod_spec(resource.type, resource.inputs)
        spec.setdefault("initContainers", []).append({"name": "wait", "image": "docker.io/library/busybox:1.36@sha256:" + "b" * 64,
                                                      "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}})

    violations = evaluate(changed(prod, kind("StatefulSet"), strip_init))
    assert policies_hit(violations) == {"container-requests-and-limits"}
    assert "init container wait" in violations[0][1]


# ---- pinned-images -------------------------------------------------------------------------------

@pytest.mark.parametrize("image", ["beetravels/hotel-v1", "beetravels/hotel-v1:latest", "localhost:5000/hotel-v1"])
def test_untagged_or_latest_image_is_rejected(dev, image):
    violations = evaluate(changed(dev, kind("Deployment"), lambda r: first_container(r).update(image=image)))
    assert policies_hit(violations) == {"pinned-images"}


def test_digest_pinned_and_registry_port_images_pass():
    assert mesh_policies.image_problem("localhost:5000/hotel-v1:v1.0.1") is None
    assert mesh_policies.image_problem("beetravels/hotel-v1@sha256:" + "a" * 64) is None


def test_helm_release_on_latest_istio_tag_is_rejected(dev):
    violations = evaluate(changed(dev, kind("Release", "istio-istiod"), lambda r: r.inputs["values"]["global"].update(tag="latest")))
    assert policies_hit(violations) == {"pinned-images"}


# ---- no-privileged-or-root -----------------------------------------------------------------------

@pytest.mark.parametrize("context, expected", [
    ({"runAsUser": 0}, "uid 0"),
    ({"runAsNonRoot": True, "runAsUser": 1000, "privileged": True}, "privileged"),
    ({"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": True}, "privilege escalation"),
    ({}, "may run as root"),
])
def test_privileged_or_root_container_is_rejected(dev, context, expected):
    def change(resource: Registered) -> None:
        mesh_policies.pod_spec(resource.type, resource.inputs).pop("securityContext", None)
        first_container(resource)["securityContext"] = context

    violations = evaluate(changed(dev, kind("Deployment"), change))
    assert policies_hit(violations) == {"no-privileged-or-root"}
    assert expected in violations[0][1]


def test_pod_level_non_root_covers_its_containers(prod):
    statefulset = copy.deepcopy(prod.of_type("StatefulSet")[0])
    pod = mesh_policies.pod_spec(statefulset.type, statefulset.inputs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "runAsNonRoot" not in first_container(statefulset).get("securityContext", {})
    assert "no-privileged-or-root" not in policies_hit(evaluate([statefulset]))
    pod["securityContext"].pop("runAsNonRoot")
    pod["securityContext"].pop("runAsUser")
    assert "no-privileged-or-root" in policies_hit(evaluate([statefulset]))


# ---- data-protected-in-prod ----------------------------------------------------------------------

def _unprotect(resource: Registered) -> None:
    resource.protect = False


def test_unprotected_mongodb_in_prod_is_rejected(prod):
    violations = evaluate(changed(prod, kind("StatefulSet"), _unprotect))
    assert policies_hit(violations) == {"data-protected-in-prod"}
    assert "protect" in violations[0][1]


def test_unprotected_mongodb_on_dev_is_allowed(dev):
    assert not dev.of_type("StatefulSet")[0].protect
    assert evaluate(dev.resources) == []


# ---- no-loadbalancer-except-gateway --------------------------------------------------------------

def test_app_service_of_type_load_balancer_is_rejected(dev):
    violations = evaluate(changed(dev, kind("Service", "bee-ui"), lambda r: r.inputs["spec"].update(type="LoadBalancer")))
    assert policies_hit(violations) == {"no-loadbalancer-except-gateway"}


def test_gateway_release_may_use_a_load_balancer_but_no_other_release(prod):
    gateway = prod.named("Release", "istio-ingress-gateway")
    assert gateway.inputs["values"]["gateways"]["istio-ingressgateway"]["type"] == "LoadBalancer"
    exposed_istiod = changed(prod, kind("Release", "istio-istiod"),
                             lambda r: r.inputs["values"].update(service={"type": "LoadBalancer"}))
    assert policies_hit(evaluate(exposed_istiod)) == {"no-loadbalancer-except-gateway"}


# ---- secrets-from-pulumi-secrets -----------------------------------------------------------------

def _set_env(name: str, value: str) -> Callable[[Registered], None]:
    def change(resource: Registered) -> None:
        first_container(resource).setdefault("env", []).append({"name": name, "value": value})
    return change


@pytest.mark.parametrize("name, value", [
    ("MONGO_CONNECTION_URL", "mongodb://db/beetravels"),
    ("DATABASE_PASSWORD", "hunter2"),
    ("UPSTREAM", "https://user:hunter2@api.example.com/"),
])
def test_literal_credentials_in_env_are_rejected(dev, name, value):
    violations = evaluate(changed(dev, kind("Deployment"), _set_env(name, value)))
    assert policies_hit(violations) == {"secrets-from-pulumi-secrets"}
    assert value not in violations[0][1]


def test_connection_url_from_a_secret_reference_passes(dev):
    references = [env for r in dev.of_type("Deployment") for container in [first_container(r)]
                  for env in container.get("env", []) if env["name"] == "MONGO_CONNECTION_URL"]
    assert references and all("secretKeyRef" in env["valueFrom"] for env in references)


def test_credentials_in_helm_values_or_config_maps_are_rejected(dev):
    with_password = changed(dev, kind("Release", "istio-istiod"),
                            lambda r: r.inputs["values"].update(grafana={"adminPassword": "admin"}))
    assert policies_hit(evaluate(with_password)) == {"secrets-from-pulumi-secrets"}
    config_map = copy.deepcopy(dev.of_type("Secret")[0])
    config_map.type, config_map.inputs = "kubernetes:core/v1:ConfigMap", {
        "metadata": {"name": "settings", "namespace": "bee-travels"}, "data": {"DB_PASSWORD": "admin"}}
    assert policies_hit(evaluate([config_map])) == {"secrets-from-pulumi-secrets"}


def test_references_to_secrets_in_helm_values_pass(dev):
    with_reference = changed(dev, kind("Release", "istio-istiod"),
                             lambda r: r.inputs["values"].update(grafana={"admin": {"existingSecret": "grafana-admin",
                                                                                   "passwordKey": "admin-password"}}))
    assert evaluate(with_reference) == []


@pytest.mark.parametrize("chart", ["gateway", "/charts/gateway-1.30.3", "/charts/gateway-1.30.3.tgz", "charts/gateways/istio-ingress"])
def test_the_gateway_chart_is_recognised_however_helm_is_given_it(chart):
    """helm.chartsDir hands Helm a pulled archive or folder; the gateway may still use its LoadBalancer."""
    run = run_stack("prod", {"istio.version": "1.30.3", "kubernetesVersion": "1.33"})
    gateway = changed(run, kind("Release", "istio-ingress-gateway"), lambda r: r.inputs.update(chart=chart))
    assert policies_hit(evaluate(gateway)) == set()
    other = changed(run, kind("Release", "istio-ingress-gateway"), lambda r: r.inputs.update(chart="/charts/gatekeeper-1.30.3.tgz"))
    assert policies_hit(evaluate(other)) == {"no-loadbalancer-except-gateway"}


# ---- seccomp and API tokens ------------------------------------------------------------------------

def _template(resource: Registered) -> dict:
    return resource.inputs["spec"]["template"]


def test_a_pod_without_a_seccomp_profile_is_rejected_on_either_kubernetes(dev, current):
    # Kubernetes 1.18 (dev) has only the pod annotation; 1.33 (current Istio) the securityContext field.
    without_annotation = changed(dev, kind("Deployment", "hotel-v1"), lambda r: _template(r)["metadata"].pop("annotations"))
    without_field = changed(current, kind("Deployment", "hotel-v1"),
                            lambda r: _template(r)["spec"]["securityContext"].pop("seccompProfile"))
    for resources in (without_annotation, without_field):
        violations = evaluate(resources)
        assert policies_hit(violations) == {"runtime-default-seccomp"}
        assert "hotel-v1" in violations[0][1] and "RuntimeDefault" in violations[0][1]


def test_a_container_level_profile_on_every_container_satisfies_seccomp(current):
    def per_container(resource: Registered) -> None:
        spec = _template(resource)["spec"]
        spec["securityContext"].pop("seccompProfile")
        for container in spec["containers"]:
            container["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    assert evaluate(changed(current, kind("Deployment", "hotel-v1"), per_container)) == []


def test_a_pod_mounting_an_api_token_nothing_uses_is_rejected(prod):
    mounted = changed(prod, kind("Deployment", "hotel-v1"), lambda r: _template(r)["spec"].update(automountServiceAccountToken=True))
    violations = evaluate(mounted)
    assert policies_hit(violations) == {"no-unneeded-api-token"} and "hotel-v1" in violations[0][1]
    defaulted = changed(prod, kind("Job"), lambda r: _template(r)["spec"].pop("automountServiceAccountToken"))
    assert policies_hit(evaluate(defaulted)) == {"no-unneeded-api-token"}


def test_under_first_party_jwt_the_token_is_mounted_on_purpose_and_must_say_so(dev):
    # dev runs Istio 1.6 with first-party-jwt: its sidecars authenticate with the pod's token.
    assert all(_template(d)["spec"]["automountServiceAccountToken"] is True for d in dev.within("MeshService").of_type("Deployment"))
    implicit = changed(dev, kind("Deployment", "hotel-v1"), lambda r: _template(r)["spec"].pop("automountServiceAccountToken"))
    assert policies_hit(evaluate(implicit)) == {"no-unneeded-api-token"}


# ---- mirroring -------------------------------------------------------------------------------------

def _mirror_to(run: StackRun, service: str, version: str) -> list[Registered]:
    def add_mirror(resource: Registered) -> None:
        weighted = next(route for route in resource.inputs["spec"]["http"] if route["name"] == "weighted")
        weighted["mirror"] = {"host": f"{service}.bee-travels.svc.cluster.local", "subset": version}
    return changed(run, kind("VirtualService", service), add_mirror)


def test_mirroring_into_a_version_that_writes_data_is_rejected(dev):
    violations = evaluate(_mirror_to(dev, "hotel", "v2"))  # dev's hotel v2 keeps its data in MongoDB
    assert policies_hit(violations) == {"no-mirrored-writes"} and "mongodb tier" in violations[0][1]
    assert evaluate(_mirror_to(dev, "hotel", "v1")) == []  # v1 reads bundled JSON


def test_a_mirror_the_stack_file_marks_safe_passes(istio_chart_cache):
    run = run_stack("dev", {"services.hotel.mirror": {"version": "v2", "percent": 10, "safeToMirror": True},
                            "services.hotel.weights": {"v1": 100, "v2": 0}, "services.hotel.matchRoutes": []})
    assert run.error is None, run.error
    assert evaluate(run.resources) == []


# ---- production-images-by-digest ---------------------------------------------------------------------

NO_WAIVERS = {"production-images-by-digest": {"unpinnedRepositories": []}}


def _digests_for(stack: str, istio: str | None = None) -> dict[str, str]:
    from tools.scan import digests_for_every_image

    return digests_for_every_image(stack, istio)


def test_a_production_stack_running_an_image_by_tag_fails_exactly_that_rule(prod):
    violations = evaluate(prod.resources, NO_WAIVERS)
    assert policies_hit(violations) == {"production-images-by-digest"}
    hotel = [message for _, message in violations if message.startswith("Deployment bee-travels/hotel-v1 ")]
    assert hotel == ['Deployment bee-travels/hotel-v1 container hotel runs docker.io/beetravels/hotel-v1:node-v1.0.2 by tag in a production '
                     'stack; pin it by digest in the stack file: images.digests["docker.io/beetravels/hotel-v1"]: sha256:<digest>.']


def test_a_production_stack_with_every_image_pinned_by_digest_passes_without_waivers(prod, istio_chart_cache):
    digests = _digests_for("prod")
    pinned = run_stack("prod", {"images.digests": digests})
    assert pinned.error is None, pinned.error
    hotel = next(r for r in pinned.of_type("Deployment") if r.k8s_name == "hotel-v1")
    assert first_container(hotel)["image"] == f"docker.io/beetravels/hotel-v1:node-v1.0.2@{digests['docker.io/beetravels/hotel-v1']}"
    assert evaluate(pinned.resources, NO_WAIVERS) == []


def test_tags_are_allowed_outside_production(dev):
    assert "production-images-by-digest" not in policies_hit(evaluate(dev.resources, NO_WAIVERS))


def test_the_waivers_name_exactly_the_images_prod_still_runs_by_tag():
    # A waiver for an image prod no longer runs, or pins, is stale; an image prod runs by tag must be waived here.
    runs = {**_digests_for("prod"), **_digests_for("prod", "1.30.3")}
    assert sorted(mesh_policies.UNPINNED_REPOSITORIES_WAIVED) == sorted(runs)


@pytest.mark.parametrize(("name", "sensitive"), [
    ("pilotCertProvider", False),  # Istio 1.6's global.yaml: who issues istiod's certificate (istiod), not a certificate
    ("credentialName", False), ("existingSecret", False), ("tlsCert", True), ("adminPassword", True), ("accessToken", True),
])
def test_a_name_that_names_who_provides_a_credential_is_not_one(name, sensitive):
    assert mesh_policies.is_sensitive_name(name) is sensitive


# ---- an app stack on a platform stack (config/platform.py) ----------------------------------------------------------

from test_platform_stacks import edit, project, run_app  # noqa: E402, F401 - a platform and two app stacks, as a fixture


def _production(stack: str) -> dict[str, dict]:
    return {name: {"productionStacks": [stack]} for name in ("prod-strict-mtls", "production-images-by-digest", "data-protected-in-prod")}


def test_an_app_stack_passes_every_policy_and_its_istio_1_6_token_use_is_read_from_its_namespace(project):  # noqa: F811
    run = run_app(project)
    assert evaluate(run.resources) == []
    # Its platform's sidecars use the pod's token; without the namespace saying so, every mounted token is refused.
    unsaid = changed(run, kind("Namespace"), lambda r: r.inputs["metadata"].pop("annotations"))
    assert policies_hit(evaluate(unsaid)) == {"no-unneeded-api-token"}


def test_a_production_app_stack_is_held_to_strict_mtls_in_its_namespace_not_to_a_mesh_wide_default(project):  # noqa: F811
    edit(project, "team-a", lambda values: values["security"].update(mtlsMode="STRICT"))
    run = run_app(project)
    assert "prod-strict-mtls" not in policies_hit(evaluate(run.resources, _production("team-a")))
    permissive = changed(run, kind("PeerAuthentication"), _set_mode("PERMISSIVE"))
    violations = [message for name, message in evaluate(permissive, _production("team-a")) if name == "prod-strict-mtls"]
    assert len(violations) == 1 and "PERMISSIVE" in violations[0]
