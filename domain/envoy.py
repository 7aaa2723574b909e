"""What each Istio generation's Envoy calls things and which filters it has: the names its listeners carry, the
config types it reads, and what istiod parses an EnvoyFilter patch into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvoyApi:
    """What one Istio generation's Envoy calls things: the names its listeners carry and the types it reads."""

    http_connection_manager: str  # the network filter's name in the listeners istiod generates
    router: str  # the HTTP filter's name there
    connection_limit: str  # type of the network local rate limit's config
    request_limit: str | None  # type of the HTTP local rate limit's config; None: this Envoy has none
    # What istiod parses each patch's value into (pkg/config/xds BuildXDSObjectFromStruct), by applyTo.
    patch_types: dict[str, str]


ENVOY_APIS = {
    # Istio 1.6.14 builds against go-control-plane v0.9.5-0.20200326174812, whose well-known names were still the
    # old ones (envoy.http_connection_manager, envoy.router), and serves xDS v2 to Envoy 1.14; an EnvoyFilter's
    # filter match compares names verbatim, so the new names would match nothing there.
    "1.6": EnvoyApi(
        http_connection_manager="envoy.http_connection_manager", router="envoy.router",
        connection_limit="envoy.config.filter.network.local_rate_limit.v2alpha.LocalRateLimit", request_limit=None,
        patch_types={"NETWORK_FILTER": "envoy.api.v2.listener.Filter"}),
    "1.30": EnvoyApi(
        http_connection_manager="envoy.filters.network.http_connection_manager", router="envoy.filters.http.router",
        connection_limit="envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
        request_limit="envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        patch_types={"NETWORK_FILTER": "envoy.config.listener.v3.Filter",
                     "HTTP_FILTER": "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter"}),
}
