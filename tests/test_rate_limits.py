"""Rate limits from the stack file: Envoy's HTTP local rate limit on Istio 1.30, refused with the reason on 1.6."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from stack_fixtures import CURRENT_ISTIO

from tools.stack_run import ROOT, run_stack

CHECKER = ROOT / "tools" / "envoy_check"
LIMITED = {**CURRENT_ISTIO, "services.hotel.rateLimit": {"requests": 50, "burst": 100},
           "services.bee-ui.rateLimit": {"requests": 600, "per": "minute", "status": 503},
           "istio.ingressGateway.rateLimit": {"requests": 1000}}


@pytest.fixture(scope="module")
def envoy_check() -> Path:
    """The checker built from tools/envoy_check (Envoy's API as go-control-plane publishes it), cached by source."""
    assert shutil.which("go"), "Go is needed to build tools/envoy_check (make test's toolchain needs it too)"
    digest = hashlib.sha256(b"".join((CHECKER / name).read_bytes() for name in ("go.mod", "go.sum", "main.go"))).hexdigest()[:12]
    binary = Path.home() / ".cache" / "bee-travels-toolchain" / f"envoy-check-{digest}" / "envoy_check"
    if not binary.is_file():
        built = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=CHECKER, capture_output=True, text=True, check=False,
                               env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"})
        assert built.returncode == 0, built.stderr[-3000:]
    return binary


def _filters(run):
    return {f.k8s_name: f for f in run.of_type("EnvoyFilter")}


def _typed_config(envoy_filter) -> dict:
    (patch,) = envoy_filter.inputs["spec"]["configPatches"]
    return patch["patch"]["value"]["typed_config"]


@pytest.fixture(scope="module")
def limited(istio_chart_cache):
    run = run_stack("prod", LIMITED)
    assert run.error is None, run.error
    return run


def test_a_service_limit_sits_on_its_pods_inbound_side_ahead_of_the_router_and_is_enforced(limited):
    hotel = _filters(limited)["hotel-rate-limit"]
    assert hotel.inputs["apiVersion"] == "networking.istio.io/v1alpha3" and hotel.metadata["namespace"] == "bee-travels"
    spec = hotel.inputs["spec"]
    assert spec["workloadSelector"] == {"labels": {"app": "hotel"}}
    (patch,) = spec["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["match"]["context"] == "SIDECAR_INBOUND"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {"name": "envoy.filters.http.router"}
    config = _typed_config(hotel)
    assert config["token_bucket"] == {"max_tokens": 100, "tokens_per_fill": 50, "fill_interval": "1s"}
    # Both default to 0% in Envoy: unset, the filter would count and limit nothing.
    for key in ("filter_enabled", "filter_enforced"):
        assert config[key]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    assert config["status"] == {"code": "TooManyRequests"}
    ui = _typed_config(_filters(limited)["bee-ui-rate-limit"])
    assert ui["token_bucket"]["fill_interval"] == "60s" and ui["status"] == {"code": "ServiceUnavailable"}


def test_the_gateway_limit_covers_every_request_through_the_ingress_gateway(limited):
    gateway = _filters(limited)["ingress-gateway-rate-limit"]
    assert gateway.metadata["namespace"] == "istio-system"
    spec = gateway.inputs["spec"]
    assert spec["workloadSelector"] == {"labels": {"istio": "ingressgateway"}}
    assert spec["configPatches"][0]["match"]["context"] == "GATEWAY"


def test_every_generated_filter_config_is_well_formed_for_envoys_v3_api(limited, envoy_check):
    configs = [_typed_config(f) for f in limited.of_type("EnvoyFilter")]
    assert len(configs) == 3
    checked = subprocess.run([str(envoy_check)], input=json.dumps(configs), capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    # Envoy refuses a fill interval under 50 ms at run time, which its API rules do not say; the smallest unit here is 1 s.
    assert min(int(c["token_bucket"]["fill_interval"].rstrip("s")) for c in configs) >= 1
    # The checker itself refuses what Envoy would: an unknown field, a broken rule, an unknown type.
    broken = [{**configs[0], "stat_prefx": "x"}, {**configs[0], "stat_prefix": ""},
              {**configs[0], "@type": "type.googleapis.com/envoy.config.filter.http.local_rate_limit.v2.LocalRateLimit"}]
    refused = subprocess.run([str(envoy_check)], input=json.dumps(broken), capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and len(refused.stdout.strip().splitlines()) == 3, refused.stdout


@pytest.mark.parametrize("key", ["services.hotel.rateLimit", "istio.ingressGateway.rateLimit"])
def test_istio_1_6_refuses_a_rate_limit_with_the_reason_and_the_alternatives(key, istio_chart_cache):
    run = run_stack("prod", {key: {"requests": 10}})
    assert run.error is not None and run.resources == []
    line = next(line for line in str(run.error).splitlines() if f"bee-travels-mesh:{key}:" in line)
    assert "Envoy (1.14) has no HTTP local rate limit" in line and "istio.version: 1.30.3" in line


@pytest.mark.parametrize(("limit", "fragment"), [({"requests": 0}, "greater than or equal to 1"),
                                                 ({"requests": 5, "per": "day"}, "'second', 'minute' or 'hour'"),
                                                 ({"requests": 5, "status": 200}, "greater than or equal to 400")])
def test_a_malformed_limit_is_refused_by_key(limit, fragment, istio_chart_cache):
    run = run_stack("prod", {**CURRENT_ISTIO, "services.hotel.rateLimit": limit})
    assert run.error is not None and fragment in str(run.error)


def test_the_envoy_filters_are_valid_istio_1_30_objects(limited):
    import schema_validation as sv

    from tools.stack_run import unwrap

    for envoy_filter in limited.of_type("EnvoyFilter"):
        assert sv.validate_istio_object(unwrap(envoy_filter.manifest()), "1.30") == [], envoy_filter.k8s_name
