"""Rules that span settings (weights, tiers, environments, versions); each finding names its key and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

from domain.catalogue import CATALOGUE
from domain.envoy import ENVOY_APIS
from domain.istio_releases import ISTIO_RELEASES, istio_release, kubernetes_supported
from domain.units import is_dns_label, is_dns_name, parse_duration

if TYPE_CHECKING:
    from config.settings import ServiceSettings, Settings


@dataclass(frozen=True)
class Problem:
    path: str  # as `pulumi config set --path` takes it
    message: str


@dataclass(frozen=True)
class SecretSetting:
    """What the program may know about a secret config key without holding its value."""

    present: bool
    is_secret: bool


Rule = Callable[["Settings", Mapping[str, SecretSetting]], Iterator[Problem]]


def check_settings(settings: Settings, secrets: Mapping[str, SecretSetting]) -> list[Problem]:
    return [problem for rule in RULES for problem in rule(settings, secrets)]


# ---- services, versions and weights ------------------------------------------------------------

def _known_services(settings, _secrets):
    for name in settings.services:
        if name not in CATALOGUE:
            close = difflib.get_close_matches(name, list(CATALOGUE), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            yield Problem(f"services.{name}", f"unknown service{hint}; the app has: {', '.join(CATALOGUE)}")


def _catalogued(settings) -> Iterator[tuple[str, ServiceSettings]]:
    return ((name, service) for name, service in settings.services.items() if name in CATALOGUE)


def _version_names(settings, _secrets):
    for name, service in _catalogued(settings):
        for version in service.versions:
            if not is_dns_label(version):
                yield Problem(f"services.{name}.versions.{version}", "version names become Kubernetes labels and names: use lower-case letters, digits and '-' (for example v2)")


def _tiers_supported(settings, _secrets):
    for name, service in _catalogued(settings):
        supported = CATALOGUE[name].tiers
        for version, spec in service.versions.items():
            if spec.tier not in supported:
                yield Problem(f"services.{name}.versions.{version}.tier", f"{name} has no '{spec.tier}' data tier; it supports: {', '.join(supported)}")


def _weights(settings, _secrets):
    for name, service in _catalogued(settings):
        path = f"services.{name}.weights"
        deployed = set(service.versions)
        weights = service.effective_weights()
        for version in sorted(set(weights) - deployed):
            yield Problem(f"{path}.{version}", f"weights {version}, which this stack does not deploy (deployed: {', '.join(sorted(deployed))}); add it under services.{name}.versions or remove the weight")
        if not weights:
            yield Problem(path, f"{name} deploys {len(deployed)} versions but gives no weights; give each version a percentage, adding up to 100")
            continue
        total = sum(weights.values())
        if total != 100:
            listed = ", ".join(f"{version}={weight}" for version, weight in sorted(weights.items()))
            yield Problem(path, f"weights add up to {total} ({listed}); they must add up to exactly 100")
        routed = {route.version for route in service.match_routes}
        for version in sorted(deployed - set(weights) - routed):
            yield Problem(f"{path}.{version}", f"{version} is deployed but gets no traffic: give it a weight (0 keeps it idle) or a header/cookie route under services.{name}.matchRoutes")


# Istio 1.6 runs Envoy 1.14 (istio/proxy 1ef6cb53 pins istio/envoy c4e61373, 1.14.5-dev), whose API has no HTTP
# local rate limit (envoy.filters.http.local_ratelimit came with Envoy 1.16 / Istio 1.8). It has the network local
# rate limit, which the stack offers as connectionRateLimit, and the global HTTP filter, which needs a service.
def _request_limit_refusal(path: str) -> str:
    alternative = path.removesuffix("rateLimit") + "connectionRateLimit"
    return ("cannot be enforced on Istio 1.6: its Envoy (1.14) has no HTTP local rate limit, which came with Envoy 1.16 "
            f"(Istio 1.8). What Envoy 1.14 enforces locally is a limit on new connections: set {alternative} "
            "({connections, per, burst}) instead. A limit per request would need Envoy's global rate limit filter "
            "(envoy.rate_limit) calling a separate rate-limit service that speaks the v2 gRPC API "
            "(envoy.service.ratelimit.v2.RateLimitService) with its own store such as Redis, which this stack does not "
            "run; or move to a stack on Istio 1.30 (istio.version: 1.30.3)")


def _rate_limits(settings, _secrets):
    api = ENVOY_APIS.get(settings.istio.minor)
    if api is None or api.request_limit is not None:  # an unknown version is _istio_kubernetes' to report
        return
    limited = [(f"services.{name}.rateLimit", service.rate_limit) for name, service in _catalogued(settings)]
    limited.append(("istio.ingressGateway.rateLimit", settings.istio.ingress_gateway.rate_limit))
    for path, limit in limited:
        if limit is not None:
            yield Problem(path, _request_limit_refusal(path))


def _image_digests(settings, _secrets):
    run = settings.image_repositories()
    for repository in settings.images.digests:
        if repository not in run:
            close = difflib.get_close_matches(repository, run, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            yield Problem(f'images.digests["{repository}"]', f"this stack runs no image from {repository}{hint}; "
                                                           f"it runs: {', '.join(run)}")


def _callees_deployed(settings, _secrets):
    for name, _ in _catalogued(settings):
        for callee in CATALOGUE[name].calls:
            if callee not in settings.services:
                yield Problem(f"services.{callee}", f"{name} calls {callee}, which this stack does not deploy; add services.{callee}")


def _not_deployed(service: ServiceSettings) -> str:
    return f"which this stack does not deploy (deployed: {', '.join(service.versions)})"


def _match_routes(settings, _secrets):
    today = datetime.now(UTC).date()
    for name, service in _catalogued(settings):
        for index, route in enumerate(service.match_routes):
            if route.version not in service.versions:
                yield Problem(f"services.{name}.matchRoutes[{index}].version", f"routes to {route.version}, {_not_deployed(service)}")
            if route.expires and date.fromisoformat(route.expires) < today:
                yield Problem(f"services.{name}.matchRoutes[{index}].expires", f"{route.expires} has passed (today is {today.isoformat()}, UTC): remove this {route.header or route.cookie} route or move its date")


WRITING_TIERS = ("mongodb", "cloud")


def _mirrors(settings, _secrets):
    for name, service in _catalogued(settings):
        mirror, path = service.mirror, f"services.{name}.mirror"
        if mirror is None:
            continue
        if mirror.version not in service.versions:
            yield Problem(f"{path}.version", f"mirrors to {mirror.version}, {_not_deployed(service)}")
            continue
        if service.effective_weights().get(mirror.version) == 100:
            yield Problem(f"{path}.version", f"{mirror.version} already takes all of {name}'s traffic; mirror to a version that takes less, or remove the mirror")
        tier = service.versions[mirror.version].tier
        if tier in WRITING_TIERS and not mirror.safe_to_mirror:
            yield Problem(f"{path}.safeToMirror", f"{mirror.version} keeps its data on the {tier} tier, so every mirrored request it handles would write a second time; mirror a json-tier version, or set safeToMirror: true if {mirror.version} writes nothing on the requests it gets")


def _sticky_canaries(settings, _secrets):
    for name, service in _catalogued(settings):
        sticky, path = service.sticky, f"services.{name}.sticky"
        if sticky is None:
            continue
        if sticky.version not in service.versions:
            yield Problem(f"{path}.version", f"keeps users on {sticky.version}, {_not_deployed(service)}")
        elif not service.effective_weights().get(sticky.version):
            yield Problem(f"{path}.version", f"{sticky.version} gets no share of the weighted split, so no one is ever given the cookie; give it a weight above 0 or remove sticky")
        if any(route.cookie == sticky.cookie for route in service.match_routes):
            yield Problem(f"{path}.cookie", f"cookie {sticky.cookie} is also a match route's cookie; give the sticky canary a cookie of its own")


# ---- data tiers --------------------------------------------------------------------------------

def _tier_users(settings, tier: str) -> list[str]:
    return [f"{name}.{version}" for name, service in _catalogued(settings)
            for version, spec in service.versions.items() if spec.tier == tier]


def _who_use(users: list[str]) -> str:
    return f"{', '.join(users)} {'uses' if len(users) == 1 else 'use'}"


def _mongodb_enabled(settings, _secrets):
    users = _tier_users(settings, "mongodb")
    if users and not settings.mongodb.enabled:
        yield Problem("mongodb.enabled", f"is false, but {_who_use(users)} the mongodb tier; set it to true or move those versions to another tier")


def _mongodb_members(settings, _secrets):
    replicas = settings.mongodb.replicas
    if replicas > 1 and replicas % 2 == 0:
        yield Problem("mongodb.replicas", f"is {replicas}: a replica set needs an odd number of members so a majority can "
                                          f"elect a primary after a failure; use {replicas - 1} or {replicas + 1}")
    if settings.production and settings.mongodb.enabled and _tier_users(settings, "mongodb") and replicas < 3:
        yield Problem("mongodb.replicas", f"is {replicas}: production keeps its data on a replica set of at least 3 "
                                          "members, so a node failure or drain loses neither data nor writes; set it to 3")


def _cloud_database(settings, secrets):
    # A secret key in plain text is in the stack file, and so in git, whether or not a version reads it.
    url, cert = secrets["cloudDatabaseUrl"], secrets["cloudDatabaseCert"]
    if url.present and not url.is_secret:
        yield Problem("cloudDatabaseUrl", "holds credentials but is stored in plain text; remove it and set it again with `pulumi config set --secret cloudDatabaseUrl ...`")
    if cert.present and not cert.is_secret:
        yield Problem("cloudDatabaseCert", "must be a secret; set it with `pulumi config set --secret cloudDatabaseCert -- \"$(cat ca.pem)\"`")
    users = _tier_users(settings, "cloud")
    if not users:
        return
    who = _who_use(users)
    if settings.cloud_database.host is None:
        yield Problem("cloudDatabase.host", f"is required because {who} the cloud tier; set the external MongoDB host name")
    if not url.present:
        yield Problem("cloudDatabaseUrl", f"is required because {who} the cloud tier; set it with `pulumi config set --secret cloudDatabaseUrl 'mongodb://...'`")


# ---- environment -------------------------------------------------------------------------------

def _replicas(settings, _secrets):
    if not settings.production:
        return
    minimum = "a production stack runs at least 2 replicas so that one pod can fail or be drained; set it to 2 or more"
    for name, service in _catalogued(settings):
        if service.replicas < 2:
            yield Problem(f"services.{name}.replicas", f"is {service.replicas}: {minimum}")
        for version, spec in service.versions.items():
            if spec.replicas is not None and spec.replicas < 2:
                yield Problem(f"services.{name}.versions.{version}.replicas", f"is {spec.replicas}: {minimum}")
        if service.autoscaling.enabled and service.autoscaling.min_replicas < 2:
            yield Problem(f"services.{name}.autoscaling.minReplicas", f"is {service.autoscaling.min_replicas}: {minimum}")
    gateway = settings.istio.ingress_gateway
    if gateway.replicas < 2:
        yield Problem("istio.ingressGateway.replicas", f"is {gateway.replicas}: {minimum}")


def _production_security(settings, _secrets):
    if not settings.production:
        return
    if settings.security.mtls_mode != "STRICT":
        yield Problem("security.mtlsMode", f"is {settings.security.mtls_mode}; production requires STRICT (PERMISSIVE is for migrating a dev stack only)")
    for key in ("authorization", "restrict_egress"):
        if not getattr(settings.security, key):
            alias = type(settings.security).model_fields[key].alias
            yield Problem(f"security.{alias}", "is false; production denies by default and limits egress: set it to true")
    if settings.gateway.tls.mode == "off":
        yield Problem("gateway.tls.mode", "is off; production serves HTTPS: set it to 'secret' and name the TLS Secret in gateway.tls.credentialName")
    if settings.gateway.tls.mode == "self-signed":
        yield Problem("gateway.tls.mode", "is self-signed; production needs a real certificate: set it to 'secret' and name the TLS Secret in gateway.tls.credentialName")
    if settings.istio.mesh_config.outbound_traffic_policy != "REGISTRY_ONLY":
        yield Problem("istio.meshConfig.outboundTrafficPolicy", "is ALLOW_ANY; production allows egress only to registered hosts: set it to REGISTRY_ONLY")


def _identities_for_authorization(settings, _secrets):
    # Every allow rule matches the caller's mTLS identity (source.principals); without mTLS no request has one.
    if settings.security.authorization and settings.security.mtls_mode == "DISABLE":
        yield Problem("security.mtlsMode", "is DISABLE while security.authorization is true: the allow rules match callers by "
                      "their mTLS identity, so every request would be denied. Use PERMISSIVE or STRICT, or turn authorization off")


def _gateway_tls(settings, _secrets):
    tls = settings.gateway.tls
    if tls.mode == "secret" and not tls.credential_name:
        yield Problem("gateway.tls.credentialName", "is required when gateway.tls.mode is 'secret'; name the TLS Secret in the ingress gateway's namespace")
    if tls.credential_name and tls.mode != "secret":
        yield Problem("gateway.tls.credentialName", f"is set but gateway.tls.mode is '{tls.mode}'; set the mode to 'secret' to serve it, or remove it")
    if tls.credential_name and not is_dns_name(tls.credential_name):
        yield Problem("gateway.tls.credentialName", f"{tls.credential_name!r} is not a valid Secret name")


def _faults(settings, _secrets):
    if not settings.production:
        return
    for name, service in _catalogued(settings):
        if service.fault is not None and not service.fault.force_in_production:
            yield Problem(f"services.{name}.fault", "fault injection is refused on a production stack; remove it, or set services."
                          f"{name}.fault.forceInProduction to true if you really mean to break production traffic")


def _retry_budget(settings, _secrets):
    scopes = [("resilience", settings.resilience)] + [
        (f"services.{name}.resilience", settings.resilience_of(name)) for name, _ in _catalogued(settings)
        if settings.services[name].resilience.timeout or settings.services[name].resilience.retries
    ]
    for path, resilience in scopes:
        retries = resilience.retries
        budget = (retries.attempts + 1) * parse_duration(retries.per_try_timeout)
        if retries.attempts and budget > parse_duration(resilience.timeout):
            yield Problem(f"{path}.retries", f"the first try plus {retries.attempts} retries of {retries.per_try_timeout} each need {budget:g}s, "
                          f"longer than the {resilience.timeout} timeout; lower attempts or perTryTimeout, or raise timeout")


def _retry_policies(settings, _secrets):
    release = istio_release(settings.istio.version)
    if release is None:
        return  # _istio_kubernetes names the release
    scopes = [("resilience.retries", settings.resilience.retries)] + [
        (f"services.{name}.resilience.retries", service.resilience.retries) for name, service in _catalogued(settings)
        if service.resilience.retries is not None
    ]
    for path, retries in scopes:
        unknown = [policy for policy in retries.retry_on.split(",")
                   if policy not in release.retry_on_policies and not _is_http_status(policy)]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(release.retry_on_policies), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            yield Problem(f"{path}.retryOn", f"Istio {release.minor} refuses {', '.join(unknown)}{hint}: retryOn takes HTTP status codes and "
                          f"the policies {', '.join(sorted(release.retry_on_policies))}")


def _is_http_status(policy: str) -> bool:
    return policy.isdigit() and int(policy) in {status.value for status in HTTPStatus}


# ---- mesh install ------------------------------------------------------------------------------

def _istio_kubernetes(settings, _secrets):
    release = istio_release(settings.istio.version)
    if release is None:
        yield Problem("istio.version", f"{settings.istio.version} is not a release this stack installs; use one of: {', '.join(f'{minor}.x' for minor in ISTIO_RELEASES)}")
    elif not kubernetes_supported(settings.istio.version, settings.kubernetes_minor):
        low, high = release.kubernetes_minors
        yield Problem("kubernetesVersion", f"is {settings.kubernetes_version}, but {release.why}; target Kubernetes 1.{low}-1.{high} or change istio.version")


def _node_ports(settings, _secrets):
    gateway = settings.istio.ingress_gateway
    for key, port in (("httpNodePort", gateway.http_node_port), ("httpsNodePort", gateway.https_node_port)):
        if port is None:
            continue
        if gateway.service_type != "NodePort":
            yield Problem(f"istio.ingressGateway.{key}", f"is set but serviceType is {gateway.service_type}; remove it or set serviceType to NodePort")
        elif not 30000 <= port <= 32767:
            yield Problem(f"istio.ingressGateway.{key}", f"{port} is outside the NodePort range 30000-32767")


def _image_tags(settings, _secrets):
    for key, tag in (("images.tag", settings.images.tag), ("images.seedTag", settings.images.seed_tag), ("istio.tag", settings.istio.tag)):
        if tag is not None and (tag.strip() == "" or tag == "latest"):
            yield Problem(key, f"{tag!r} is not a pinned tag; name an exact version so every rollout runs the same image")


def _observability(settings, _secrets):
    observability = settings.observability
    if observability.kiali and not observability.prometheus:
        yield Problem("observability.kiali", "Kiali reads its graph from Prometheus; set observability.prometheus to true as well")
    if observability.grafana and not observability.prometheus:
        yield Problem("observability.grafana", "the Istio dashboards read from Prometheus; set observability.prometheus to true as well")
    if observability.storage_size and not observability.prometheus:
        yield Problem("observability.storageSize", "sizes Prometheus' volume, but Prometheus is off; remove it or set observability.prometheus to true")


RULES: tuple[Rule, ...] = (
    _known_services, _version_names, _tiers_supported, _weights, _match_routes, _mirrors, _sticky_canaries, _rate_limits, _image_digests,
    _callees_deployed,
    _mongodb_enabled, _mongodb_members, _cloud_database,
    _replicas, _production_security, _identities_for_authorization, _gateway_tls, _faults, _retry_budget, _retry_policies,
    _istio_kubernetes, _node_ports, _image_tags, _observability,
)
