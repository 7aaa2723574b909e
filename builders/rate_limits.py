"""Envoy's local rate limits as EnvoyFilters, for a service's inbound side or for the ingress gateway.

Two limits, one EnvoyFilter per workload:
- connections (`envoy.filters.network.local_ratelimit`, Istio 1.6 and 1.30): a network filter ahead of the HTTP
  connection manager; a new connection takes a token or is closed.
- requests (`envoy.filters.http.local_ratelimit`, Istio 1.30 only): an HTTP filter ahead of the router, on every
  request or, with `paths`, on each listed path prefix with its own bucket.
The two Istio generations differ in data only: Envoy's filter names and type URLs (v2 on 1.6, v3 on 1.30).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from domain.envoy import ENVOY_APIS, EnvoyApi

if TYPE_CHECKING:
    from config.settings import ConnectionRateLimit, RateLimit, TokenBucket


NETWORK_LOCAL_RATE_LIMIT = "envoy.filters.network.local_ratelimit"
HTTP_LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
TYPE_URL = "type.googleapis.com/"


# Envoy's own status names for the HTTP codes it takes (envoy.type.v3.StatusCode); the stack's settings allow 4xx/5xx.
STATUS_NAMES = {400: "BadRequest", 403: "Forbidden", 408: "RequestTimeout", 429: "TooManyRequests",
                500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
ALL_REQUESTS = {"numerator": 100, "denominator": "HUNDRED"}
# With `paths`, the filter's own bucket takes every request on other paths. Envoy needs one all the same (a path's
# fill interval must be a multiple of it: it divides by it), so it gets one nothing reaches: 2e9 a fill, which
# still adds to a full bucket within uint32.
UNREACHED = 2_000_000_000
PATH_KEY = "path_prefix"


class Limited(Protocol):
    """A section that may set both limits: a service's settings, or the ingress gateway's."""

    rate_limit: RateLimit | None
    connection_rate_limit: ConnectionRateLimit | None


@dataclass(frozen=True)
class Limits:
    """A workload's limits, and the Envoy API they are written in."""

    api: EnvoyApi
    requests: RateLimit | None = None
    connections: ConnectionRateLimit | None = None


def limits_of(istio_minor: str, section: Limited) -> Limits:
    return Limits(ENVOY_APIS[istio_minor], section.rate_limit, section.connection_rate_limit)


def _duration(milliseconds: int) -> str:
    seconds, rest = divmod(milliseconds, 1000)
    return f"{seconds}.{rest:03d}s" if rest else f"{seconds}s"


def token_bucket(limit: TokenBucket, tokens: int | None = None) -> dict[str, Any]:
    tokens_per_fill = tokens or limit.tokens_per_fill
    return {"max_tokens": tokens or limit.bucket, "tokens_per_fill": tokens_per_fill,
            "fill_interval": _duration(limit.fill_interval_ms)}


def connection_limit_config(api: EnvoyApi, limit: ConnectionRateLimit, stat_prefix: str) -> dict[str, Any]:
    """Enabled unless runtime says otherwise (runtime_enabled unset), unlike the HTTP filter."""
    return {"@type": TYPE_URL + api.connection_limit, "stat_prefix": stat_prefix, "token_bucket": token_bucket(limit)}


def _path_descriptors(limit: RateLimit) -> dict[str, Any]:
    """A descriptor per path prefix, made by the filter's own rate_limits actions from the request's :path: this needs
    no route of its own (Envoy 1.33+ reads `rate_limits` in the filter config), so it works on a sidecar's inbound
    side as at the gateway, whichever VirtualService route a request takes."""
    return {
        "token_bucket": token_bucket(limit, UNREACHED),
        "always_consume_default_token_bucket": False,
        "rate_limits": [{"actions": [{"header_value_match": {
            "descriptor_key": PATH_KEY, "descriptor_value": path,
            "headers": [{"name": ":path", "string_match": {"prefix": path}}]}}]} for path in limit.paths],
        "descriptors": [{"entries": [{"key": PATH_KEY, "value": path}], "token_bucket": token_bucket(limit)}
                        for path in limit.paths],
    }


def request_limit_config(api: EnvoyApi, limit: RateLimit, stat_prefix: str) -> dict[str, Any]:
    """The HTTP filter's typed config. filter_enabled and filter_enforced default to 0%: set, or nothing is limited."""
    assert api.request_limit is not None, "refused by config.rules before anything is built"
    return {
        "@type": TYPE_URL + api.request_limit,
        "stat_prefix": stat_prefix,
        "token_bucket": token_bucket(limit),
        "filter_enabled": {"runtime_key": f"{stat_prefix}_enabled", "default_value": ALL_REQUESTS},
        "filter_enforced": {"runtime_key": f"{stat_prefix}_enforced", "default_value": ALL_REQUESTS},
        "status": {"code": STATUS_NAMES.get(limit.status, limit.status)},
        "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                     "header": {"key": "x-local-rate-limit", "value": "true"}}],
        **(_path_descriptors(limit) if limit.paths else {}),
    }


def _patch(apply_to: str, context: str, filter_match: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    return {"applyTo": apply_to, "match": {"context": context, "listener": {"filterChain": {"filter": filter_match}}},
            "patch": {"operation": "INSERT_BEFORE", "value": value}}


def _patches(limits: Limits, context: str, stat_prefix: str) -> list[dict[str, Any]]:
    api, patches = limits.api, []
    if limits.connections is not None:
        config = connection_limit_config(api, limits.connections, f"{stat_prefix}_connection_rate_limit")
        patches.append(_patch("NETWORK_FILTER", context, {"name": api.http_connection_manager},
                              {"name": NETWORK_LOCAL_RATE_LIMIT, "typed_config": config}))
    if limits.requests is not None:
        config = request_limit_config(api, limits.requests, f"{stat_prefix}_rate_limit")
        patches.append(_patch("HTTP_FILTER", context,
                              {"name": api.http_connection_manager, "subFilter": {"name": api.router}},
                              {"name": HTTP_LOCAL_RATE_LIMIT, "typed_config": config}))
    return patches


def rate_limit_filter_spec(selector: dict[str, str], context: str, limits: Limits, stat_prefix: str) -> dict[str, Any] | None:
    """The EnvoyFilter for `context`'s listeners (SIDECAR_INBOUND: what a service's pods take in; GATEWAY: everything
    through the ingress gateway): the connection limit ahead of the HTTP connection manager, the request limit ahead
    of its router. None when neither is set."""
    patches = _patches(limits, context, stat_prefix)
    return {"workloadSelector": {"labels": selector}, "configPatches": patches} if patches else None
