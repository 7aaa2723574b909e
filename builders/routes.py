"""Each service's DestinationRule and VirtualService specs (subsets, resilience, canary weights, match, sticky and
mirrored routes, faults), and the app's Gateway and egress ServiceEntry specs: pure data from the settings."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from domain.catalogue import CATALOGUE, ExternalHost
from domain.units import parse_duration

if TYPE_CHECKING:
    from config.settings import CloudDatabaseSettings, Fault, GatewaySettings, GatewayTls, MatchRoute, Resilience, ServiceSettings

GATEWAY_NAME = "bee-travels-gateway"
# On a VirtualService that mirrors to a version keeping data (mongodb, cloud): the stack file said it is safe.
MIRROR_WRITES_ACCEPTED = "bee-travels.io/mirror-writes-accepted"


def host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def traffic_policy(resilience: Resilience, mtls: bool) -> dict[str, Any]:
    pool, outlier = resilience.connection_pool, resilience.outlier_detection
    policy: dict[str, Any] = {
        "loadBalancer": {"simple": resilience.load_balancer},
        "connectionPool": {
            "tcp": {"maxConnections": pool.max_connections, "connectTimeout": pool.connect_timeout},
            "http": {
                "http1MaxPendingRequests": pool.http1_max_pending_requests,
                "http2MaxRequests": pool.http2_max_requests,
                "maxRequestsPerConnection": pool.max_requests_per_connection,
            },
        },
        "outlierDetection": {
            # consecutive5xxErrors: the name both Istio 1.6 and current Istio read (consecutiveErrors is deprecated).
            "consecutive5xxErrors": outlier.consecutive_errors,
            "interval": outlier.interval,
            "baseEjectionTime": outlier.base_ejection_time,
            "maxEjectionPercent": outlier.max_ejection_percent,
        },
    }
    if mtls:
        policy["tls"] = {"mode": "ISTIO_MUTUAL"}
    return policy


def destination_rule_spec(service: str, settings: ServiceSettings, resilience: Resilience, mtls: bool, namespace: str) -> dict[str, Any]:
    return {
        "host": host(service, namespace),
        "trafficPolicy": traffic_policy(resilience, mtls),
        "subsets": [{"name": version, "labels": {"version": version}} for version in settings.versions],
    }


def _match(route: MatchRoute) -> dict[str, Any]:
    if route.header is not None:
        return {"headers": {route.header: {"exact": route.value}}}
    return _cookie_match(route.cookie, route.value)


def _cookie_match(cookie: str, value: str) -> dict[str, Any]:
    # A cookie is one `name=value` pair among others in the Cookie header.
    pair = re.escape(f"{cookie}={value}")
    return {"headers": {"cookie": {"regex": f"^(.*?;\\s*)?({pair})(;.*)?$"}}}


def _destination(service: str, version: str, namespace: str) -> dict[str, Any]:
    return {"host": host(service, namespace), "subset": version, "port": {"number": 80}}


def _fault(fault: Fault) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if fault.delay is not None:
        spec["delay"] = {"fixedDelay": fault.delay.fixed_delay, "percentage": {"value": fault.delay.percent}}
    if fault.abort is not None:
        spec["abort"] = {"httpStatus": fault.abort.http_status, "percentage": {"value": fault.abort.percent}}
    return spec


def _sticky_route(service: str, settings: ServiceSettings, namespace: str) -> dict[str, Any] | None:
    sticky = settings.sticky
    if sticky is None:
        return None
    return {"name": f"sticky-{sticky.version}", "match": [_cookie_match(sticky.cookie, sticky.version)],
            "route": [{"destination": _destination(service, sticky.version, namespace)}]}


def _sticky_cookie(settings: ServiceSettings) -> dict[str, Any]:
    """Set on the canary's answers in the weighted split: the browser sends it back, and the sticky route matches it."""
    sticky = settings.sticky
    cookie = f"{sticky.cookie}={sticky.version}; Max-Age={int(parse_duration(sticky.lifetime))}; Path=/; HttpOnly; SameSite=Lax"
    return {"response": {"add": {"set-cookie": cookie}}}


def _mirror(service: str, settings: ServiceSettings, namespace: str) -> dict[str, Any]:
    mirror = settings.mirror
    if mirror is None:
        return {}
    return {"mirror": {"host": host(service, namespace), "subset": mirror.version, "port": {"number": 80}},
            "mirrorPercentage": {"value": mirror.percent}}


def http_routes(service: str, settings: ServiceSettings, resilience: Resilience, namespace: str) -> list[dict[str, Any]]:
    """Header/cookie routes first (first match wins), then the sticky canary's cookie, then the weighted split."""
    common: dict[str, Any] = {"timeout": resilience.timeout}
    retries = resilience.retries
    common["retries"] = ({"attempts": retries.attempts, "perTryTimeout": retries.per_try_timeout, "retryOn": retries.retry_on}
                         if retries.attempts else {"attempts": 0})
    if settings.fault is not None:
        common["fault"] = _fault(settings.fault)
    routes = [
        {"name": f"{route.header or route.cookie}-to-{route.version}", "match": [_match(route)],
         "route": [{"destination": _destination(service, route.version, namespace)}], **common}
        for route in settings.match_routes
    ]
    sticky = _sticky_route(service, settings, namespace)
    if sticky is not None:
        routes.append({**sticky, **common})
    weights = settings.effective_weights()
    weighted = [{"destination": _destination(service, version, namespace), "weight": weight} for version, weight in weights.items()]
    if settings.sticky is not None:
        for leg in weighted:
            if leg["destination"]["subset"] == settings.sticky.version:
                leg["headers"] = _sticky_cookie(settings)
    if len(weighted) == 1:
        weighted[0].pop("weight")  # a single destination takes all traffic; Istio reads no weight as 100
    # The mirror copies only the weighted split: requests a match route sends on purpose stay where they were sent.
    routes.append({"name": "weighted", "route": weighted, **common, **_mirror(service, settings, namespace)})
    return routes


def virtual_service_spec(service: str, settings: ServiceSettings, resilience: Resilience, namespace: str,
                         gateway: GatewaySettings | None = None, gateway_ref: str | None = None) -> dict[str, Any]:
    if gateway is not None:
        # The front end is reached through the ingress gateway by its public host names.
        return {"hosts": list(gateway.hosts), "gateways": [gateway_ref],
                "http": http_routes(service, settings, resilience, namespace)}
    return {"hosts": [host(service, namespace)], "http": http_routes(service, settings, resilience, namespace)}


def served_credential(tls: GatewayTls, self_signed_secret: str | None) -> str | None:
    """The TLS Secret the Gateway serves: the generated one, the named one, or none while TLS is off."""
    return {"self-signed": self_signed_secret, "secret": tls.credential_name}.get(tls.mode)


def gateway_spec(gateway: GatewaySettings, selector: dict[str, str], credential_name: str | None) -> dict[str, Any]:
    http_server: dict[str, Any] = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": list(gateway.hosts)}
    if credential_name is None:
        return {"selector": selector, "servers": [http_server]}
    if gateway.https_redirect:
        http_server["tls"] = {"httpsRedirect": True}
    https_server = {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": list(gateway.hosts),
                    "tls": {"mode": "SIMPLE", "credentialName": credential_name}}
    return {"selector": selector, "servers": [http_server, https_server]}


def service_entry_spec(external: ExternalHost) -> dict[str, Any]:
    return {
        "hosts": [external.host],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": external.port, "name": f"{external.protocol.lower()}-{external.port}", "protocol": external.protocol}],
    }


def external_hosts_by_identity(services: dict[str, ServiceSettings], cloud: CloudDatabaseSettings) -> dict[tuple[str, str], tuple[ExternalHost, ...]]:
    """What each deployed service calls outside the mesh, per data tier of its versions: the cloud database only
    from cloud-tier versions. With REGISTRY_ONLY egress these are the only ways out."""
    found: dict[tuple[str, str], tuple[ExternalHost, ...]] = {}
    for name, service in services.items():
        for tier in service.tiers:
            hosts = list(CATALOGUE[name].external_hosts)
            if cloud.host and tier == "cloud":
                hosts.append(ExternalHost(cloud.host, cloud.port, "TLS"))
            if hosts:
                found[(name, tier)] = tuple(hosts)
    return found


def external_hosts(by_identity: dict[tuple[str, str], tuple[ExternalHost, ...]]) -> tuple[ExternalHost, ...]:
    return tuple(dict.fromkeys(host for hosts in by_identity.values() for host in hosts))
