"""Rate limits from the stack file, per Istio version.

Istio 1.30: Envoy's HTTP local rate limit (whole workload, or per path prefix) and its network local rate limit
(new connections). Istio 1.6 (Envoy 1.14, API v2): the connection limit only; a request limit is refused with the
reason and the alternatives. Every generated Envoy object is checked against its Envoy API: v3 by tests/envoy_checkers/envoy_check
(go-control-plane 1.37.0), v2 by tests/envoy_checkers/envoy_check_v2 (go-control-plane v0.9.9).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builders.rate_limits import TYPE_URL, UNREACHED
from domain.envoy import ENVOY_APIS
from harness import schema_validation as sv
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import run_stack, unwrap

CHECKERS = Path(__file__).resolve().parent / "envoy_checkers"
LIMITED = {**CURRENT_ISTIO,
           "services.hotel.rateLimit": {"requests": 50, "burst": 100},
           "services.hotel.connectionRateLimit": {"connections": 20, "per": "500ms"},
           "services.bee-ui.rateLimit": {"requests": 600, "per": "minute", "status": 503, "paths": ["/hotels", "/cars"]},
           "istio.ingressGateway.rateLimit": {"requests": 1000},
           "istio.ingressGateway.connectionRateLimit": {"connections": 500, "burst": 1000}}
GATEWAY_PATHS = {**CURRENT_ISTIO, "istio.ingressGateway.rateLimit": {"requests": 5, "per": "second", "paths": ["/api/v1/hotels"]}}
# Istio 1.6: the committed prod stack limits the gateway's connections; add a service's.
CONNECTIONS_1_6 = {"services.hotel.connectionRateLimit": {"connections": 30, "per": "minute", "burst": 60}}


def _build(checker: str) -> Path:
    """A checker built from its folder and tests/envoy_checkers/envoy_check_common, cached by their sources."""
    assert shutil.which("go"), f"Go is needed to build tools/{checker} (make test's toolchain needs it too)"
    sources = sorted(path for folder in (checker, "envoy_check_common") for path in (CHECKERS / folder).iterdir()
                     if path.name in ("go.mod", "go.sum") or path.suffix == ".go")
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:12]
    binary = Path.home() / ".cache" / "bee-travels-toolchain" / f"{checker.replace('_', '-')}-{digest}" / checker
    if not binary.is_file():
        built = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=CHECKERS / checker, capture_output=True, text=True,
                               check=False, env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"})
        assert built.returncode == 0, built.stderr[-3000:]
    return binary


@pytest.fixture(scope="module")
def envoy_check() -> Path:
    return _build("envoy_check")


@pytest.fixture(scope="module")
def envoy_check_v2() -> Path:
    return _build("envoy_check_v2")


def _check(checker: Path, objects: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run([str(checker)], input=json.dumps(objects), capture_output=True, text=True, check=False)


def _filters(run):
    return {f.k8s_name: f for f in run.of_type("EnvoyFilter")}


def _patches(envoy_filter) -> dict[str, dict]:
    return {patch["applyTo"]: patch for patch in envoy_filter.inputs["spec"]["configPatches"]}


def _typed_config(envoy_filter, apply_to: str) -> dict:
    return _patches(envoy_filter)[apply_to]["patch"]["value"]["typed_config"]


def _envoy_objects(run, minor: str) -> list[dict]:
    """Each patch's value as the message istiod parses it into (a listener filter, an HTTP filter), with its type."""
    types = ENVOY_APIS[minor].patch_types
    return [{"@type": TYPE_URL + types[patch["applyTo"]], **patch["patch"]["value"]}
            for envoy_filter in run.of_type("EnvoyFilter") for patch in envoy_filter.inputs["spec"]["configPatches"]]


def _run(stack: str, overrides=None):
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def limited(istio_chart_cache):
    return _run("prod", LIMITED)


@pytest.fixture(scope="module")
def gateway_paths(istio_chart_cache):
    return _run("prod", GATEWAY_PATHS)


@pytest.fixture(scope="module")
def on_1_6(istio_chart_cache):
    return _run("prod", CONNECTIONS_1_6)


@pytest.fixture(scope="module")
def committed(istio_chart_cache):
    return {stack: _run(stack) for stack in ("prod", "dev", "dev-current")}


# ---- Istio 1.30 ----------------------------------------------------------------------------------

def test_a_service_request_limit_sits_on_its_pods_inbound_side_ahead_of_the_router_and_is_enforced(limited):
    hotel = _filters(limited)["hotel-rate-limit"]
    assert hotel.inputs["apiVersion"] == "networking.istio.io/v1alpha3" and hotel.metadata["namespace"] == "bee-travels"
    assert hotel.inputs["spec"]["workloadSelector"] == {"labels": {"app": "hotel"}}
    patch = _patches(hotel)["HTTP_FILTER"]
    assert patch["match"]["context"] == "SIDECAR_INBOUND" and patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"] == {
        "name": "envoy.filters.network.http_connection_manager", "subFilter": {"name": "envoy.filters.http.router"}}
    config = _typed_config(hotel, "HTTP_FILTER")
    assert config["@type"] == "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    assert config["token_bucket"] == {"max_tokens": 100, "tokens_per_fill": 50, "fill_interval": "1s"}
    # Both default to 0% in Envoy: unset, the filter would count and limit nothing.
    for key in ("filter_enabled", "filter_enforced"):
        assert config[key]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    assert config["status"] == {"code": "TooManyRequests"} and "descriptors" not in config


def test_a_connection_limit_sits_ahead_of_the_http_connection_manager_in_the_same_filter(limited):
    hotel = _filters(limited)["hotel-rate-limit"]
    assert list(_patches(hotel)) == ["NETWORK_FILTER", "HTTP_FILTER"]
    patch = _patches(hotel)["NETWORK_FILTER"]
    assert patch["match"] == {"context": "SIDECAR_INBOUND",
                              "listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}}
    assert patch["patch"]["operation"] == "INSERT_BEFORE" and patch["patch"]["value"]["name"] == "envoy.filters.network.local_ratelimit"
    assert _typed_config(hotel, "NETWORK_FILTER") == {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "hotel_connection_rate_limit",
        "token_bucket": {"max_tokens": 20, "tokens_per_fill": 20, "fill_interval": "0.500s"}}


def test_paths_give_each_prefix_its_own_bucket_and_leave_other_paths_unlimited(limited):
    config = _typed_config(_filters(limited)["bee-ui-rate-limit"], "HTTP_FILTER")
    bucket = {"max_tokens": 600, "tokens_per_fill": 600, "fill_interval": "60s"}
    assert config["status"] == {"code": "ServiceUnavailable"}
    assert config["descriptors"] == [{"entries": [{"key": "path_prefix", "value": path}], "token_bucket": bucket}
                                     for path in ("/hotels", "/cars")]
    # The filter makes the descriptors itself from :path, so no route of the VirtualService needs to carry them.
    assert config["rate_limits"][0] == {"actions": [{"header_value_match": {
        "descriptor_key": "path_prefix", "descriptor_value": "/hotels",
        "headers": [{"name": ":path", "string_match": {"prefix": "/hotels"}}]}}]}
    # Other paths take the filter's own bucket, which nothing drains; a limited path does not drain it either.
    assert config["token_bucket"] == {"max_tokens": UNREACHED, "tokens_per_fill": UNREACHED, "fill_interval": "60s"}
    assert config["always_consume_default_token_bucket"] is False


def test_the_gateway_limits_cover_what_comes_through_the_ingress_gateway(limited, gateway_paths):
    gateway = _filters(limited)["ingress-gateway-rate-limit"]
    assert gateway.metadata["namespace"] == "istio-system"
    assert gateway.inputs["spec"]["workloadSelector"] == {"labels": {"istio": "ingressgateway"}}
    assert {patch["match"]["context"] for patch in _patches(gateway).values()} == {"GATEWAY"}
    assert _typed_config(gateway, "NETWORK_FILTER")["token_bucket"] == {"max_tokens": 1000, "tokens_per_fill": 500, "fill_interval": "1s"}
    config = _typed_config(_filters(gateway_paths)["ingress-gateway-rate-limit"], "HTTP_FILTER")
    assert [d["entries"] for d in config["descriptors"]] == [[{"key": "path_prefix", "value": "/api/v1/hotels"}]]


def test_every_istio_1_30_envoy_object_is_well_formed_for_envoys_v3_api(limited, gateway_paths, committed, envoy_check):
    objects = [o for run in (limited, gateway_paths, committed["dev-current"]) for o in _envoy_objects(run, "1.30")]
    assert len(objects) == 8  # limited 5, the gateway paths 2 (prod limits connections too), dev-current 1
    checked = _check(envoy_check, objects)
    assert checked.returncode == 0, checked.stdout
    # The checker refuses what Envoy would: an unknown field, a broken rule (also inside a nested typed_config),
    # and a v2 type, which a v3 Envoy does not have.
    network = next(o for o in objects if o["@type"].endswith("listener.v3.Filter"))
    inner = network["typed_config"]
    broken = [{**network, "nme": "x"}, {**network, "typed_config": {**inner, "stat_prefix": ""}},
              {**network, "typed_config": {**inner, "@type": TYPE_URL + ENVOY_APIS["1.6"].connection_limit}}]
    refused = _check(envoy_check, broken)
    assert refused.returncode == 1 and len(refused.stdout.strip().splitlines()) == 3, refused.stdout


def test_the_envoy_filters_are_valid_istio_1_30_objects(limited, gateway_paths):
    for envoy_filter in [*limited.of_type("EnvoyFilter"), *gateway_paths.of_type("EnvoyFilter")]:
        assert sv.validate_istio_object(unwrap(envoy_filter.manifest()), "1.30") == [], envoy_filter.k8s_name


# ---- Istio 1.6 -----------------------------------------------------------------------------------

def test_istio_1_6_gets_the_v2_connection_limit_matched_on_its_own_filter_names(on_1_6):
    hotel = _filters(on_1_6)["hotel-rate-limit"]
    (patch,) = hotel.inputs["spec"]["configPatches"]
    # istiod 1.6 names the manager envoy.http_connection_manager and matches names verbatim.
    assert patch["applyTo"] == "NETWORK_FILTER" and patch["match"] == {
        "context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {"name": "envoy.http_connection_manager"}}}}
    assert patch["patch"] == {"operation": "INSERT_BEFORE", "value": {
        "name": "envoy.filters.network.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.filter.network.local_rate_limit.v2alpha.LocalRateLimit",
            "stat_prefix": "hotel_connection_rate_limit",
            "token_bucket": {"max_tokens": 60, "tokens_per_fill": 30, "fill_interval": "60s"}}}}


def test_every_istio_1_6_envoy_object_is_well_formed_for_envoys_v2_api(on_1_6, committed, envoy_check_v2):
    objects = [o for run in (on_1_6, committed["dev"]) for o in _envoy_objects(run, "1.6")]
    assert len(objects) == 3 and all("v3" not in json.dumps(o) for o in objects)
    checked = _check(envoy_check_v2, objects)
    assert checked.returncode == 0, checked.stdout
    inner = objects[0]["typed_config"]
    broken = [{**objects[0], "typed_config": {**inner, "token_bucket": {**inner["token_bucket"], "max_tokens": 0}}},
              {**objects[0], "typed_config": {**inner, "tokenBucket_": {}}},
              {**objects[0], "typed_config": {**inner, "@type": TYPE_URL + ENVOY_APIS["1.30"].connection_limit}},
              {**objects[0], "@type": TYPE_URL + ENVOY_APIS["1.30"].patch_types["NETWORK_FILTER"]}]
    refused = _check(envoy_check_v2, broken)
    assert refused.returncode == 1 and len(refused.stdout.strip().splitlines()) == 4, refused.stdout


def test_the_envoy_filters_are_valid_istio_1_6_objects(on_1_6):
    for envoy_filter in on_1_6.of_type("EnvoyFilter"):
        assert sv.validate_istio_object(unwrap(envoy_filter.manifest()), "1.6") == [], envoy_filter.k8s_name


@pytest.mark.parametrize(("key", "alternative"), [("services.hotel.rateLimit", "services.hotel.connectionRateLimit"),
                                                  ("istio.ingressGateway.rateLimit", "istio.ingressGateway.connectionRateLimit")])
def test_istio_1_6_refuses_a_request_limit_naming_the_connection_limit_and_what_a_global_limit_needs(key, alternative, istio_chart_cache):
    run = run_stack("prod", {key: {"requests": 10, "paths": ["/hotels"]}})
    assert run.error is not None and run.resources == []
    line = next(line for line in str(run.error).splitlines() if f"bee-travels-mesh:{key}:" in line)
    assert "Envoy (1.14) has no HTTP local rate limit" in line and f"set {alternative} (" in line
    assert "envoy.service.ratelimit.v2.RateLimitService" in line and "istio.version: 1.30.3" in line


# ---- the committed stacks ------------------------------------------------------------------------

def test_prod_limits_new_connections_at_the_gateway_and_dev_at_carrental(committed):
    gateway = _filters(committed["prod"])["ingress-gateway-rate-limit"]
    assert list(_patches(gateway)) == ["NETWORK_FILTER"]
    assert _typed_config(gateway, "NETWORK_FILTER")["@type"].endswith("v2alpha.LocalRateLimit")
    assert set(_filters(committed["dev"])) == {"carrental-rate-limit"}
    # dev-current is dev on Istio 1.30: the same limit, written in the v3 API.
    dev, current = (_typed_config(_filters(committed[s])["carrental-rate-limit"], "NETWORK_FILTER") for s in ("dev", "dev-current"))
    assert dev["token_bucket"] == current["token_bucket"] and current["@type"].endswith("local_ratelimit.v3.LocalRateLimit")


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "limit", "fragment"), [
    ("services.hotel.rateLimit", {"requests": 0}, "rateLimit.requests: Input should be greater than or equal to 1"),
    ("services.hotel.rateLimit", {"requests": 5, "per": "day"}, "rateLimit.per: 'day' is not a unit of time; use second, minute, hour"),
    ("services.hotel.rateLimit", {"requests": 5, "per": "20ms"}, "rateLimit.per: 20ms is below Envoy's smallest fill interval of 50ms"),
    ("istio.ingressGateway.connectionRateLimit", {"connections": 5, "per": "10ms"}, "connectionRateLimit.per: 10ms is below Envoy's smallest"),
    ("istio.ingressGateway.connectionRateLimit", {"connections": 0}, "connectionRateLimit.connections: Input should be greater than or equal to 1"),
    ("services.hotel.connectionRateLimit", {"connections": 5, "per": "50.5ms"}, "not a whole number of milliseconds"),
    ("services.hotel.connectionRateLimit", {"connections": 5, "paths": ["/a"]}, "connectionRateLimit.paths: unknown key"),
    ("services.hotel.rateLimit", {"requests": 5, "status": 200}, "rateLimit.status: Input should be greater than or equal to 400"),
    ("services.hotel.rateLimit", {"requests": 5, "paths": ["hotels"]}, "'hotels' is not a path prefix; write it as the request path starts"),
    ("services.hotel.rateLimit", {"requests": 5, "paths": ["/a", "/a"]}, "paths lists /a more than once"),
])
def test_a_malformed_limit_is_refused_by_stack_file_and_key_before_anything_is_registered(key, limit, fragment, istio_chart_cache):
    run = run_stack("prod", {**CURRENT_ISTIO, key: limit})
    assert run.error is not None and run.resources == []
    error = str(run.error)
    assert "Pulumi.prod.yaml has" in error and f"bee-travels-mesh:{key.rsplit('.', 1)[0]}." in error
    assert fragment in error, error
