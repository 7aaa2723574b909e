"""Envoy's HTTP local rate limit as an EnvoyFilter: for a service's inbound side, or for the ingress gateway."""

from __future__ import annotations

from typing import Any

from config.settings import RateLimit

LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
# Envoy's own status names for the HTTP codes it takes (envoy.type.v3.StatusCode); the stack's settings allow 4xx/5xx.
STATUS_NAMES = {400: "BadRequest", 403: "Forbidden", 408: "RequestTimeout", 429: "TooManyRequests",
                500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
ALL_REQUESTS = {"numerator": 100, "denominator": "HUNDRED"}


def local_rate_limit_config(limit: RateLimit, stat_prefix: str) -> dict[str, Any]:
    """The filter's typed config. Both filter_enabled and filter_enforced default to 0%: set, or nothing is limited."""
    return {
        "@type": LOCAL_RATE_LIMIT_TYPE,
        "stat_prefix": stat_prefix,
        "token_bucket": {"max_tokens": limit.bucket, "tokens_per_fill": limit.requests,
                         "fill_interval": f"{limit.fill_interval_seconds}s"},
        "filter_enabled": {"runtime_key": f"{stat_prefix}_enabled", "default_value": ALL_REQUESTS},
        "filter_enforced": {"runtime_key": f"{stat_prefix}_enforced", "default_value": ALL_REQUESTS},
        "status": {"code": STATUS_NAMES.get(limit.status, limit.status)},
        "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                     "header": {"key": "x-local-rate-limit", "value": "true"}}],
    }


def rate_limit_filter_spec(selector: dict[str, str], context: str, limit: RateLimit, stat_prefix: str) -> dict[str, Any]:
    """An EnvoyFilter inserting the limit ahead of the router in the HTTP connection manager of `context`'s listeners
    (SIDECAR_INBOUND: what a service's pods take in; GATEWAY: everything through the ingress gateway)."""
    return {
        "workloadSelector": {"labels": selector},
        "configPatches": [{
            "applyTo": "HTTP_FILTER",
            "match": {"context": context, "listener": {"filterChain": {"filter": {
                "name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.router"}}}}},
            "patch": {"operation": "INSERT_BEFORE",
                      "value": {"name": LOCAL_RATE_LIMIT, "typed_config": local_rate_limit_config(limit, stat_prefix)}},
        }],
    }
