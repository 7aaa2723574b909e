"""Tests for the schema_validation test helper."""


import jsonschema
import pytest

from harness import schema_validation as sv

LEGACY_K8S = "1.18"  # served by the legacy schema folder only
CURRENT_K8S = "1.33"
ISTIO_VERSIONS = ["1.6", "1.30"]


def deployment():
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ui", "namespace": "bee-travels", "labels": {"app": "ui"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "ui"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "ui", "version": "v1"}},
                "spec": {
                    "containers": [
                        {
                            "name": "ui",
                            "image": "beetravels/ui:v1",
                            "ports": [{"containerPort": 9000, "name": "http"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


def pdb(api_version):
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "ui", "namespace": "bee-travels"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "ui"}}},
    }


def hpa_v2():
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "ui", "namespace": "bee-travels"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ui"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }


def virtual_service(api_version="networking.istio.io/v1beta1"):
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {"name": "ui", "namespace": "bee-travels"},
        "spec": {
            "hosts": ["ui"],
            "gateways": ["bee-travels-gateway", "mesh"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [
                        {"destination": {"host": "ui", "subset": "v1", "port": {"number": 9000}}, "weight": 80},
                        {"destination": {"host": "ui", "subset": "v2", "port": {"number": 9000}}, "weight": 20},
                    ],
                    "retries": {"attempts": 3, "perTryTimeout": "2s"},
                }
            ],
        },
    }


@pytest.fixture
def legacy_k8s():
    sv.require_kubernetes_schemas(LEGACY_K8S)


@pytest.fixture(params=ISTIO_VERSIONS)
def istio_version(request):
    sv.require_istio_schemas(request.param)
    return request.param


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("version", [LEGACY_K8S, "1.18.20", CURRENT_K8S])
def test_valid_deployment_passes(version):
    sv.require_kubernetes_schemas(version)
    assert sv.validate_kubernetes_object(deployment(), version) == []


@pytest.mark.parametrize("version", [LEGACY_K8S, CURRENT_K8S])
def test_misspelt_fields_fail_with_path(version):
    sv.require_kubernetes_schemas(version)
    obj = deployment()
    obj["spec"]["replica"] = obj["spec"].pop("replicas")
    pod = obj["spec"]["template"]["spec"]
    pod["containres"] = pod.pop("containers")

    errors = sv.validate_kubernetes_object(obj, version)

    assert any("spec.replica:" in e and "unknown field" in e for e in errors), errors
    assert any("spec.template.spec.containres:" in e for e in errors), errors
    assert all(e.startswith("Deployment bee-travels/ui: ") for e in errors), errors


def test_wrong_type_fails_with_path():
    obj = deployment()
    obj["spec"]["replicas"] = "two"
    errors = sv.validate_kubernetes_object(obj, CURRENT_K8S)
    assert len(errors) == 1 and errors[0].startswith("Deployment bee-travels/ui: spec.replicas: "), errors


def test_int_or_string_accepts_both(legacy_k8s):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ui"},
        "spec": {"selector": {"app": "ui"}, "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 9000}]},
    }
    for version in (LEGACY_K8S, CURRENT_K8S):
        assert sv.validate_kubernetes_object(service, version) == []
    service["spec"]["ports"][0]["targetPort"] = 1.5
    assert any("spec.ports[0].targetPort" in e for e in sv.validate_kubernetes_object(service, CURRENT_K8S))


def test_nulls_count_as_unset(legacy_k8s):
    obj = deployment()
    obj["metadata"]["annotations"] = None
    assert sv.validate_kubernetes_object(obj, LEGACY_K8S) == []


def test_pdb_policy_v1beta1_served_until_1_24(legacy_k8s):
    assert sv.validate_kubernetes_object(pdb("policy/v1beta1"), LEGACY_K8S) == []
    for version in ("1.25", CURRENT_K8S):
        errors = sv.validate_kubernetes_object(pdb("policy/v1beta1"), version)
        assert errors == [
            "PodDisruptionBudget bee-travels/ui: apiVersion: "
            f"PodDisruptionBudget policy/v1beta1 is not served by Kubernetes {version}"
        ]


def test_pdb_policy_v1_arrived_in_1_21(legacy_k8s):
    errors = sv.validate_kubernetes_object(pdb("policy/v1"), LEGACY_K8S)
    assert len(errors) == 1 and "is not served by Kubernetes 1.18" in errors[0], errors
    sv.require_kubernetes_schemas("1.21")
    assert sv.validate_kubernetes_object(pdb("policy/v1"), "1.21") == []
    assert sv.validate_kubernetes_object(pdb("policy/v1"), CURRENT_K8S) == []


def test_hpa_autoscaling_v2_not_served_on_1_18(legacy_k8s):
    errors = sv.validate_kubernetes_object(hpa_v2(), LEGACY_K8S)
    assert len(errors) == 1 and "HorizontalPodAutoscaler autoscaling/v2 is not served" in errors[0], errors
    assert sv.validate_kubernetes_object(hpa_v2(), CURRENT_K8S) == []


def test_custom_resources_are_rejected():
    with pytest.raises(ValueError, match="custom resource"):
        sv.validate_kubernetes_object(virtual_service(), CURRENT_K8S)
    with pytest.raises(ValueError):
        sv.validate_kubernetes_object({**pdb("policy/v1"), "apiVersion": "gateway.networking.k8s.io/v1"}, CURRENT_K8S)


def test_unknown_kubernetes_version_raises():
    assert not sv.kubernetes_schemas_available("1.9")
    with pytest.raises(sv.SchemaUnavailable, match="1.9"):
        sv.validate_kubernetes_object(deployment(), "1.9")
    with pytest.raises(ValueError):
        sv.validate_kubernetes_object(deployment(), "latest")


def test_missing_legacy_folder_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("K8S_LEGACY_SCHEMAS", str(tmp_path))
    assert not sv.kubernetes_schemas_available("1.11")
    assert sv.kubernetes_schemas_available(CURRENT_K8S)
    with pytest.raises(sv.SchemaUnavailable) as info:
        sv.validate_kubernetes_object(deployment(), "1.11")
    assert sv.LEGACY_PIP_COMMAND in str(info.value)
    with pytest.raises(pytest.fail.Exception, match="kubernetes-validate==1.24.1"):
        sv.require_kubernetes_schemas("1.11")


# ---------------------------------------------------------------- Istio


def test_valid_virtual_service_with_weighted_routes_passes(istio_version):
    assert sv.validate_istio_object(virtual_service(), istio_version) == []


def test_misspelt_virtual_service_field_fails(istio_version):
    obj = virtual_service()
    route = obj["spec"]["http"][0]["route"][1]
    route["wieght"] = route.pop("weight")
    assert sv.validate_istio_object(obj, istio_version) == [
        "VirtualService bee-travels/ui: spec.http[0].route[1].wieght: unknown field 'wieght'"
    ]


def test_destination_rule_load_balancer_enum(istio_version):
    rule = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "ui"},
        "spec": {
            "host": "ui",
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
        },
    }
    assert sv.validate_istio_object(rule, istio_version) == []
    rule["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "FASTEST"
    errors = sv.validate_istio_object(rule, istio_version)
    assert len(errors) == 1 and "spec.trafficPolicy.loadBalancer.simple: 'FASTEST' is not one of" in errors[0]


def test_networking_v1_not_served_by_istio_1_6():
    sv.require_istio_schemas("1.6")
    assert sv.validate_istio_object(virtual_service("networking.istio.io/v1"), "1.6.14") == [
        "VirtualService bee-travels/ui: apiVersion: VirtualService networking.istio.io/v1 is not served by Istio 1.6.14"
    ]
    sv.require_istio_schemas("1.30")
    assert sv.validate_istio_object(virtual_service("networking.istio.io/v1"), "1.30.x") == []


def test_peer_authentication_strict(istio_version):
    peer = {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "bee-travels"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    assert sv.validate_istio_object(peer, istio_version) == []
    peer["spec"]["mtls"]["mode"] = "STRICTEST"
    assert len(sv.validate_istio_object(peer, istio_version)) == 1


def test_istio_object_needs_name_and_spec(istio_version):
    obj = virtual_service()
    del obj["metadata"]["name"]
    obj["sepc"] = obj.pop("spec")
    errors = sv.validate_istio_object(obj, istio_version)
    assert any(": metadata.name: required" in e for e in errors), errors
    assert any(": sepc: unknown field" in e for e in errors), errors
    assert any(": spec: required" in e for e in errors), errors


def test_telemetry_only_in_newer_istio():
    sv.require_istio_schemas()
    telemetry = {
        "apiVersion": "telemetry.istio.io/v1alpha1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {"tracing": [{"randomSamplingPercentage": 10.0}]},
    }
    assert sv.validate_istio_object(telemetry, "1.30") == []
    assert "not served by Istio 1.6.14" in sv.validate_istio_object(telemetry, "1.6")[0]


def test_unknown_istio_release_and_non_istio_objects():
    with pytest.raises(sv.SchemaUnavailable, match="1.7"):
        sv.validate_istio_object(virtual_service(), "1.7")
    with pytest.raises(ValueError):
        sv.validate_istio_object(deployment(), "1.30")


def test_openapi_translation():
    schema = sv._openapi_to_jsonschema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "priority": {"type": "integer", "nullable": True},
                "free": {"type": "object", "properties": {"a": {"type": "string"}}, "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"port": 80, "priority": None, "free": {"b": 1}, "labels": {"x": "y"}})
    assert validator.is_valid({"port": "http"})
    assert not validator.is_valid({"prot": 80})
    assert not validator.is_valid({"labels": {"x": 1}})


def test_without_the_charts_the_istio_checks_fail_saying_how_to_provide_them(monkeypatch, tmp_path):
    """The CRDs come from the base charts the real-cluster tier installs; a machine without them fails, never skips."""
    monkeypatch.setenv("BEE_TRAVELS_CHARTS", str(tmp_path / "nowhere"))
    forget = (sv._istio_crds.cache_clear, sv._istio_validator.cache_clear)
    for clear in forget:
        clear()
    try:
        with pytest.raises(pytest.fail.Exception, match="nowhere lacks charts the stacks pin.*Provide the charts"):
            sv.validate_istio_object(virtual_service(), "1.30")
    finally:
        for clear in forget:
            clear()


def test_the_istio_schemas_are_the_base_charts_crds():
    """Istio 1.6's from the release archive's crds/ folder (mixer's and the operator's too), 1.30's from the base
    chart's generated file: every kind the stacks declare is there."""
    kinds = {release: {kind for _, kind in sv._istio_crds(release)} for release in sv.ISTIO_RELEASES.values()}
    declared = {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "Sidecar", "EnvoyFilter",
                "PeerAuthentication", "AuthorizationPolicy"}
    assert declared <= kinds["1.6.14"] and declared <= kinds["1.30.3"]
    assert "Telemetry" in kinds["1.30.3"] and "Telemetry" not in kinds["1.6.14"]
