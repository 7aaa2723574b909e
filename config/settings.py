"""The stack's settings: one typed model, read once from stack config and checked before anything is registered."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)
from pydantic.alias_generators import to_camel

from domain.catalogue import CATALOGUE, SEED_IMAGES
from domain.images import MONGO_REPOSITORY, TRACING_IMAGES, repository_of, seed_image, service_image
from domain.units import (
    is_dns_label,
    is_dns_name,
    is_prometheus_duration,
    parse_duration,
    parse_istio_duration,
    parse_quantity,
)

PROJECT = "bee-travels-mesh"


# ---- value types -------------------------------------------------------------------------------

# The largest count a Kubernetes or Istio integer field holds (int32: replicas, connection limits, retries).
INT32_MAX = 2**31 - 1


def _quantity(value: str) -> str:
    if parse_quantity(value) < 0:
        raise ValueError(f"{value!r} is negative, which Kubernetes refuses for resources and volume sizes; use 0 or more")
    return value


def _size(value: str) -> str:
    if parse_quantity(_quantity(value)) == 0:
        raise ValueError(f"{value!r} is no space at all; a volume needs a size above zero (for example 1Gi)")
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _istio_duration(value: str) -> str:
    parse_istio_duration(value)
    return value


def _prometheus_duration(value: str) -> str:
    if not is_prometheus_duration(value):
        raise ValueError(f"{value!r} is not a Prometheus duration: a whole number and one unit of ms, s, m or h (for example 5m or 90s)")
    return value


def _positive_prometheus_duration(value: str) -> str:
    if parse_duration(_prometheus_duration(value)) == 0:
        raise ValueError(f"{value!r} is no time at all; Prometheus needs a window above zero (for example 5m)")
    return value


def _whole_seconds(value: str) -> str:
    seconds = parse_duration(value)
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"{value!r} is not a whole number of seconds (a cookie's Max-Age counts them); for example 1h or 90s")
    return value


def _dns_subdomain(value: str) -> str:
    if not is_dns_name(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253 characters)")
    return value


# Docker's reference grammar (distribution/reference): a registry host[:port], then lower-case path components.
_IMAGE_REPOSITORY = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
                               r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _image_repository(value: str) -> str:
    if not _IMAGE_REPOSITORY.match(value):
        raise ValueError(f"{value!r} is not an image repository: a registry host and lower-case path, for example docker.io/istio")
    return value


def _image_tag(value: str) -> str:
    if not _IMAGE_TAG.match(value):
        raise ValueError(f"{value!r} is not an image tag: letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'")
    return value


# RFC 6265: a cookie's name is a token, its value printable ASCII without spaces, quotes, ',', ';' or '\\'.
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$")


def _cookie_name(value: str) -> str:
    if not _COOKIE_NAME.match(value):
        raise ValueError(f"cookie {value!r}: a cookie name is letters, digits and !#$%&'*+.^_`|~- (no spaces, '=' or ';')")
    return value


def _header_value(value: str) -> str:
    if any(not character.isprintable() for character in value):
        raise ValueError(f"{value!r} holds a control character (a newline, tab or the like), which no HTTP header carries")
    if value != value.strip() or not value:
        raise ValueError(f"{value!r}: a header value to match must be non-empty, without spaces around it (HTTP drops them)")
    return value


def _access_log_path(value: str) -> str:
    if value and not re.fullmatch(r"/[A-Za-z0-9._/-]+", value):
        raise ValueError(f"{value!r} is not a file path Envoy can write to: an absolute path such as /dev/stdout, or empty for no access log")
    return value


def _web_address(value: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?", value):
        raise ValueError(f"{value!r} is not an http(s) address such as http://localhost:9090")
    return value


def _retry_on(value: str) -> str:
    policies = value.split(",")
    if any(not re.fullmatch(r"[a-z0-9-]+", policy) for policy in policies):
        raise ValueError(f"{value!r} is not a comma-separated list of Envoy retry policies (for example 5xx,reset,connect-failure), without spaces")
    return value


def _hostname(value: str) -> str:
    if not is_dns_name(value, allow_wildcard=True):
        raise ValueError(f"{value!r} is not a valid DNS name (lower-case letters, digits, '-' and '.'; '*' or '*.example.com' allowed)")
    return value


def _dns_label(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError(f"{value!r} is not a valid DNS label (lower-case letters, digits and '-', at most 63 characters)")
    return value


def _optional_dns_label(value: str) -> str:
    return value if value == "" else _dns_label(value)


def _pinned_version(value: str) -> str:
    parts = value.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"{value!r} is not a pinned MAJOR.MINOR.PATCH version (for example 4.4.29)")
    return value


def _kubernetes_version(value: str) -> str:
    parts = value.split(".")
    if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts) or parts[0] != "1":
        raise ValueError(f"{value!r} is not a Kubernetes version such as 1.18 or 1.33.1")
    return value


def _numbers_as_text(value: Any) -> Any:
    # YAML writes `cpu: 1` as an integer; Kubernetes reads it as the quantity "1".
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as error:
        raise ValueError(f"{value!r} is not an address range in CIDR form such as 172.18.0.2/32 or 10.0.0.0/24 ({error})") from None


Quantity = Annotated[str, BeforeValidator(_numbers_as_text), AfterValidator(_quantity)]
Duration = Annotated[str, AfterValidator(_duration)]
IstioDuration = Annotated[str, AfterValidator(_istio_duration)]
PrometheusDuration = Annotated[str, AfterValidator(_prometheus_duration)]
PrometheusWindow = Annotated[str, AfterValidator(_positive_prometheus_duration)]
CookieLifetime = Annotated[str, AfterValidator(_whole_seconds)]
ObjectName = Annotated[str, AfterValidator(_dns_subdomain)]
ImageRepository = Annotated[str, AfterValidator(_image_repository)]
ImageTag = Annotated[str, AfterValidator(_image_tag)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
Size = Annotated[str, BeforeValidator(_numbers_as_text), AfterValidator(_size)]
RetryOn = Annotated[str, AfterValidator(_retry_on)]
Count = Annotated[StrictInt, Field(le=INT32_MAX)]
Hostname = Annotated[str, AfterValidator(_hostname)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]


def _stack_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise ValueError(f"{value!r} is not a stack name of this project: letters, digits, '-', '_' and '.' (for example dev)")
    return value


StackName = Annotated[str, AfterValidator(_stack_name)]
OptionalStackName = Annotated[str, AfterValidator(lambda value: _stack_name(value) if value else value)]  # empty: none
Network = Annotated[str, AfterValidator(_network)]
Percent = Annotated[float, Field(ge=0, le=100)]
Weight = Annotated[StrictInt, Field(ge=0, le=100)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
DataTier = Literal["json", "mongodb", "cloud"]
MtlsMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
LoadBalancerPolicy = Literal["ROUND_ROBIN", "LEAST_CONN", "RANDOM", "PASSTHROUGH"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class Section(BaseModel):
    """Stack-file sections: camelCase keys as users write them, unknown keys rejected, values immutable."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=True
    )


# ---- sizes -------------------------------------------------------------------------------------

class ResourceAmounts(Section):
    cpu: Quantity = Field(description="CPU, as a Kubernetes quantity (100m, 0.5, 1).")
    memory: Quantity = Field(description="Memory, as a Kubernetes quantity (128Mi, 1Gi).")


class Resources(Section):
    requests: ResourceAmounts
    limits: ResourceAmounts

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"requests.{kind} ({request}) is larger than limits.{kind} ({limit}); a request must fit within its limit")
        return self


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(requests=ResourceAmounts(cpu=cpu, memory=memory), limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit))


class Autoscaling(Section):
    enabled: bool = False
    min_replicas: Count = Field(2, ge=1)
    max_replicas: Count = Field(5, ge=1)
    target_cpu_percent: StrictInt = Field(75, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        return self


# ---- mesh install ------------------------------------------------------------------------------

RATE_UNITS = {"second": 1000, "minute": 60_000, "hour": 3_600_000}  # in milliseconds
# Envoy refuses a local rate limit whose bucket refills more often than every 50 ms (LocalRateLimiterImpl throws).
MIN_FILL_INTERVAL_MS = 50


def fill_interval_ms(per: str) -> int:
    """`per` as whole milliseconds: a unit (second, minute, hour) or a duration such as 500ms or 10s."""
    if per in RATE_UNITS:
        return RATE_UNITS[per]
    try:
        milliseconds = parse_duration(per) * 1000
    except ValueError:
        raise ValueError(f"{per!r} is not a unit of time; use second, minute, hour, or a duration such as 500ms or 10s") from None
    if milliseconds != int(milliseconds):
        raise ValueError(f"{per} is not a whole number of milliseconds, which Envoy's fill interval counts in; use for example 250ms")
    if milliseconds < MIN_FILL_INTERVAL_MS:
        raise ValueError(f"{per} is below Envoy's smallest fill interval of {MIN_FILL_INTERVAL_MS}ms (it refuses to refill a "
                         f"bucket more often); use {MIN_FILL_INTERVAL_MS}ms or more, and scale the amount per interval with it")
    return int(milliseconds)


def _per(value: str) -> str:
    fill_interval_ms(value)
    return value


def _path_prefix(value: str) -> str:
    if not value.startswith("/") or any(character.isspace() for character in value):
        raise ValueError(f"{value!r} is not a path prefix; write it as the request path starts, for example /hotels")
    return value


Per = Annotated[str, AfterValidator(_per)]
PathPrefix = Annotated[str, AfterValidator(_path_prefix)]


class TokenBucket(Section):
    """Envoy's local rate limits are token buckets per proxy: `per` refills the amount, `burst` is the bucket's size."""

    per: Per = Field("second", description="Refill interval: second, minute, hour, or a duration of at least 50ms (e.g. 500ms).")
    burst: Count | None = Field(None, ge=1, description="Bucket size: admitted at once; defaults to the amount per interval.")

    @property
    def tokens_per_fill(self) -> int:
        raise NotImplementedError

    @property
    def fill_interval_ms(self) -> int:
        return fill_interval_ms(self.per)

    @property
    def bucket(self) -> int:
        return self.burst or self.tokens_per_fill


class RateLimit(TokenBucket):
    """Envoy's HTTP local rate limit (Istio 1.30): `requests` every `per`, beyond them `status`; on `paths` only, if given."""

    requests: Count = Field(ge=1, description="Requests admitted per unit of time, per proxy (each replica has its own bucket).")
    status: StrictInt = Field(429, ge=400, le=599, description="HTTP status of a refused request.")
    paths: list[PathPrefix] = Field(default_factory=list, description="Path prefixes limited, each with its own bucket; other paths are not limited. Empty: every request shares one bucket.")

    @property
    def tokens_per_fill(self) -> int:
        return self.requests

    @model_validator(mode="after")
    def _paths_once(self) -> RateLimit:
        repeated = sorted({path for path in self.paths if self.paths.count(path) > 1})
        if repeated:
            raise ValueError(f"paths lists {', '.join(repeated)} more than once; give each prefix once")
        return self


class ConnectionRateLimit(TokenBucket):
    """Envoy's network local rate limit (Istio 1.6 and 1.30): new connections admitted per `per`; beyond them, closed."""

    connections: Count = Field(ge=1, description="New connections admitted per unit of time, per proxy; one beyond them is closed at once.")

    @property
    def tokens_per_fill(self) -> int:
        return self.connections


class IngressGatewaySettings(Section):
    service_type: ServiceType = Field("LoadBalancer", description="NodePort for kind, LoadBalancer for cloud clusters.")
    http_node_port: Port | None = Field(None, description="Fixed NodePort for HTTP (30000-32767) when serviceType is NodePort.")
    https_node_port: Port | None = None
    replicas: Count = Field(1, ge=1)
    autoscaling: Autoscaling = Autoscaling()
    pod_disruption_budget: bool = False
    resources: Resources = resources("100m", "128Mi", "2000m", "1Gi")
    rate_limit: RateLimit | None = Field(None, description="Local rate limit on the requests through the ingress gateway, all or on `paths` (Istio 1.30; refused on 1.6).")
    connection_rate_limit: ConnectionRateLimit | None = Field(None, description="Local limit on new connections to the ingress gateway (Istio 1.6 and 1.30).")


class MeshConfigSettings(Section):
    access_log_file: Annotated[str, AfterValidator(_access_log_path)] = Field("/dev/stdout", description="Envoy access log path; empty turns access logs off.")
    outbound_traffic_policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class IstioSettings(Section):
    version: Annotated[str, AfterValidator(_pinned_version)] = "1.6.14"
    hub: ImageRepository = "docker.io/istio"
    tag: ImageTag | None = Field(None, description="Image tag; defaults to the version.")
    revision: Annotated[str, AfterValidator(_optional_dns_label)] = Field("", description="Install istiod under this revision and label the app namespace istio.io/rev=<revision>.")
    jwt_policy: Literal["third-party-jwt", "first-party-jwt"] = "third-party-jwt"
    charts_dir: str | None = Field(None, description="Folder holding the 1.6 charts (default: the fetch command's cache).")
    mesh_config: MeshConfigSettings = MeshConfigSettings()
    ingress_gateway: IngressGatewaySettings = IngressGatewaySettings()
    pilot_resources: Resources = resources("100m", "256Mi", "1000m", "1Gi")

    @property
    def image_tag(self) -> str:
        return self.tag or self.version

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


class HelmSettings(Section):
    """Where the Helm charts come from, and how much release history Helm keeps."""

    charts_dir: str | None = Field(None, description="Folder of the pinned charts as `helm pull --version V` leaves them (<name>-<version>.tgz, or unpacked as <name>-<version>/): every chart from a Helm repository is installed from there instead (air-gapped clusters, CI). Checked before anything is registered, naming the `helm pull` commands for what is missing.")


# ---- data stores -------------------------------------------------------------------------------

class MongoSettings(Section):
    enabled: bool = True
    version: Annotated[str, AfterValidator(_pinned_version)] = Field("4.4.29", description="Tag of the official mongo image; the app's drivers (node 3.5, pymongo 3.10) speak up to 4.4.")
    storage_size: Size = "5Gi"
    storage_class: ObjectName | None = Field(None, description="StorageClass of the data volume; the cluster default when unset.")
    resources: Resources = resources("200m", "256Mi", "1000m", "1Gi")
    replicas: StrictInt = Field(1, ge=1, le=7, description="Members: 1 runs a standalone server; 3, 5 or 7 a replica set (odd, so a majority can elect a primary).")


class CloudDatabaseSettings(Section):
    host: Hostname | None = Field(None, description="Host of the external MongoDB used by the cloud tier.")
    port: Port = 27017


def _digest(value: str) -> str:
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise ValueError(f"{value!r} is not an image digest: write sha256:<64 hex digits>, as `crane digest <image>` "
                         "or `docker buildx imagetools inspect <image>` prints it")
    return value


class ImageSettings(Section):
    registry: ImageRepository = "docker.io/beetravels"
    tag: ImageTag = Field("node-v1.0.2", description="Tag of every Bee Travels service image.")
    seed_tag: ImageTag = Field("dceed01c7b899e0c8eff1ae88912614a6e4139d6", description="Tag of the data-gen seeding images.")
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field("IfNotPresent", description="Pull policy of every image the stack runs: the services, seeders, MongoDB and tracing, and Istio's and the add-ons' images through their charts.")
    digests: dict[ImageRepository, Annotated[str, AfterValidator(_digest)]] = Field(default_factory=dict, description="Image repository (registry/name, no tag) -> its sha256 digest: that image is pulled by digest, the tag kept for the reader. The policy pack requires a digest for every image of a production stack.")


# ---- traffic -----------------------------------------------------------------------------------

class Retries(Section):
    attempts: StrictInt = Field(2, ge=0, le=10)
    per_try_timeout: IstioDuration = "2s"
    retry_on: RetryOn = "5xx,reset,connect-failure,refused-stream"


class ConnectionPool(Section):
    max_connections: Count = Field(100, ge=1)
    connect_timeout: IstioDuration = "3s"
    http1_max_pending_requests: Count = Field(100, ge=1)
    http2_max_requests: Count = Field(1000, ge=1)
    max_requests_per_connection: Count = Field(0, ge=0, description="0 keeps connections open without limit.")


class OutlierDetection(Section):
    consecutive_errors: Count = Field(5, ge=1, description="Consecutive 5xx answers that eject a pod.")
    interval: IstioDuration = "10s"
    base_ejection_time: IstioDuration = "30s"
    max_ejection_percent: StrictInt = Field(50, ge=0, le=100)


class Resilience(Section):
    timeout: IstioDuration = Field("10s", description="Whole-request timeout, retries included.")
    retries: Retries = Retries()
    load_balancer: LoadBalancerPolicy = "LEAST_CONN"
    connection_pool: ConnectionPool = ConnectionPool()
    outlier_detection: OutlierDetection = OutlierDetection()


class Override(Section):
    """A per-service section whose keys, where given, replace the stack-wide keys of the same name."""

    def over(self, base: Section) -> Section:
        given = {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}
        return base.model_copy(update=given)


class ResilienceOverride(Override):
    timeout: IstioDuration | None = None
    retries: Retries | None = None
    load_balancer: LoadBalancerPolicy | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None


class ServiceLevel(Section):
    """What healthy means for a version of a service: alerts fire past it, and a canary past it is rolled back."""

    min_success_rate_percent: Percent = Field(99.0, description="Least share of requests answered without a 5xx, in percent.")
    max_p95_latency_ms: Count = Field(1000, ge=1, description="Highest 95th-percentile request latency, in milliseconds.")
    window: PrometheusWindow = Field("5m", description="Window that rates, ratios and percentiles are computed over.")
    alert_after: PrometheusDuration = Field("5m", description="How long a breach must last before its alert fires.")


class ServiceLevelOverride(Override):
    min_success_rate_percent: Percent | None = None
    max_p95_latency_ms: Count | None = Field(None, ge=1)
    window: PrometheusWindow | None = None
    alert_after: PrometheusDuration | None = None


class FaultDelay(Section):
    fixed_delay: IstioDuration
    percent: Percent


class FaultAbort(Section):
    http_status: StrictInt = Field(ge=200, le=599)
    percent: Percent


class Fault(Section):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    force_in_production: bool = Field(False, description="Allow this fault on a production stack.")

    @model_validator(mode="after")
    def _something_to_inject(self) -> Fault:
        if self.delay is None and self.abort is None:
            raise ValueError("a fault needs a delay, an abort or both")
        return self


def _iso_date(value: str | None) -> str | None:
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD") from None
    return value


class MatchRoute(Section):
    """Requests carrying a header (or cookie) value go to one version, ahead of the weighted split."""

    version: str
    header: str | None = None
    cookie: Annotated[str, AfterValidator(_cookie_name)] | None = None
    value: HeaderValue
    expires: Annotated[str | None, AfterValidator(_iso_date)] = Field(None, description="YYYY-MM-DD (UTC) after which the stack is refused until this route is removed or its date moved: test routes do not outlive their test.")

    @model_validator(mode="after")
    def _one_key(self) -> MatchRoute:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("give exactly one of header or cookie")
        if self.header is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.header):
            raise ValueError(f"header {self.header!r}: Istio matches lower-case header names of letters, digits and '-'")
        return self


class Mirror(Section):
    """A copy of a share of the live traffic goes to a version as well; its answers are dropped."""

    version: str
    percent: Annotated[float, Field(gt=0, le=100)] = 100.0
    safe_to_mirror: bool = Field(False, description="The version writes nothing a copied request could harm (mongodb- and cloud-tier versions are refused otherwise: each mirrored request would write a second time).")


class Sticky(Section):
    """Whoever the weighted split sends to the canary keeps getting it, through a cookie set on its answers."""

    version: str
    cookie: str = "bee-canary"
    lifetime: CookieLifetime = Field("1h", description="How long the browser keeps the cookie (Max-Age).")

    @model_validator(mode="after")
    def _cookie_name(self) -> Sticky:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.cookie):
            raise ValueError(f"cookie {self.cookie!r}: use letters, digits, '_' and '-'")
        return self


class VersionSettings(Section):
    tier: DataTier = Field(description="Where this version keeps its data: json (bundled), mongodb (in-cluster) or cloud (external).")
    replicas: Count | None = Field(None, ge=1, description="Overrides the service's replicas for this version.")


class ServiceSettings(Section):
    versions: dict[str, VersionSettings] = Field(min_length=1)
    weights: dict[str, Weight] = Field(default_factory=dict, description="Percent of traffic per version; must add up to 100.")
    match_routes: list[MatchRoute] = Field(default_factory=list)
    mirror: Mirror | None = Field(None, description="Copy a share of this service's live traffic to one more version (answers dropped).")
    rate_limit: RateLimit | None = Field(None, description="Local rate limit on the requests this service's pods take in, all or on `paths` (Istio 1.30; refused on 1.6).")
    connection_rate_limit: ConnectionRateLimit | None = Field(None, description="Local limit on new connections to this service's pods (Istio 1.6 and 1.30).")
    sticky: Sticky | None = Field(None, description="Keep whoever got the canary on it, by a cookie on its answers and a route on that cookie.")
    replicas: Count = Field(1, ge=1)
    resources: Resources = resources("100m", "128Mi", "500m", "256Mi")
    autoscaling: Autoscaling = Autoscaling()
    resilience: ResilienceOverride = ResilienceOverride()
    service_level: ServiceLevelOverride = Field(ServiceLevelOverride(), description="Keys given replace the stack-wide serviceLevel for this service.")
    fault: Fault | None = None

    @property
    def tiers(self) -> tuple[str, ...]:
        """The data tiers its versions use, each once, in the order first listed."""
        return tuple(dict.fromkeys(version.tier for version in self.versions.values()))

    def uses_tier(self, tier: str) -> bool:
        return tier in self.tiers

    def effective_weights(self) -> dict[str, int]:
        """Weights as routed: a lone version takes all traffic without being named."""
        if not self.weights and len(self.versions) == 1:
            return {next(iter(self.versions)): 100}
        return dict(self.weights)

    def replicas_of(self, version: str) -> int:
        return self.versions[version].replicas or self.replicas


def _default_services() -> dict[str, ServiceSettings]:
    return {name: ServiceSettings(versions={"v1": VersionSettings(tier="json")}) for name in CATALOGUE}


class GatewayTls(Section):
    mode: Literal["off", "secret", "self-signed"] = Field("off", description="secret: serve HTTPS with an existing TLS Secret; self-signed: generate one (non-production only).")
    credential_name: ObjectName | None = Field(None, description="Name of the TLS Secret in the ingress gateway's namespace.")


class GatewaySettings(Section):
    hosts: list[Hostname] = Field(default_factory=lambda: ["*"], min_length=1)
    tls: GatewayTls = GatewayTls()
    https_redirect: bool = True

    @model_validator(mode="after")
    def _hosts_once(self) -> GatewaySettings:
        repeated = sorted({host for host in self.hosts if self.hosts.count(host) > 1})
        if repeated:
            raise ValueError(f"hosts lists {', '.join(repeated)} more than once; give each host once")
        return self


# ---- security and observability ----------------------------------------------------------------

class SecuritySettings(Section):
    mtls_mode: MtlsMode = Field("STRICT", description="DISABLE is refused while `authorization` is on, since every allow rule matches the caller's mTLS identity.")
    authorization: bool = Field(True, description="Deny by default and allow only the app's call graph.")
    restrict_egress: bool = Field(True, description="Sidecar resources limiting each workload's egress to what it calls.")
    network_policies: bool = Field(True, description="Kubernetes NetworkPolicies admitting exactly the call graph (deny by default; DNS, istiod, scraping allowed): a second layer for traffic that does not meet a sidecar. Inert on a CNI without NetworkPolicy support.")
    api_server_cidrs: list[Network] = Field(default_factory=list, description="The Kubernetes API server's addresses as CIDRs (`kubectl get endpoints kubernetes`: the endpoints, which a CNI sees after the Service's translation). With them, the only place istiod, Prometheus, Kiali and Istio 1.6's gateway may reach on 443/6443, and the only source of istiod's webhook port; empty: anywhere, since the address differs per cluster.")


class TracingSettings(Section):
    enabled: bool = False
    backend: Literal["jaeger", "zipkin"] = "jaeger"
    sampling: Percent = Field(1.0, description="Percent of requests traced.")


class ObservabilitySettings(Section):
    prometheus: bool = Field(False, description="Prometheus scraping istiod, the gateway and the sidecars, with the service-level rules.")
    grafana: bool = Field(False, description="Grafana with Prometheus as data source, Istio's dashboards and the canary dashboard.")
    kiali: bool = Field(False, description="Kiali, reading Prometheus, the tracing backend and Grafana.")
    tracing: TracingSettings = TracingSettings()
    retention: PrometheusWindow = Field("240h", description="How long Prometheus keeps samples.")
    storage_size: Size | None = Field(None, description="Volume for Prometheus' samples; unset keeps them in memory-backed scratch space, lost on restart.")


class CanarySettings(Section):
    """How `make promote` moves a canary: the weight steps, the traffic a decision needs, how far the canary may trail."""

    steps: list[Weight] = Field(default_factory=lambda: [10, 25, 50, 100], min_length=1,
                                description="Canary weights in order; each promotion moves to the next one. Ends at 100.")
    min_requests: Count = Field(100, ge=1, description="Requests the canary and the stable version must each have served in the window before any decision.")
    max_success_rate_drop_percent: Annotated[float, Field(ge=0, le=100)] = Field(1.0, description="Percentage points the canary's success rate may trail the stable version's.")
    max_latency_increase_percent: Annotated[float, Field(ge=0)] = Field(25.0, description="How much higher, in percent, the canary's p95 latency may be than the stable version's.")
    latency_tolerance_ms: Annotated[float, Field(ge=0)] = Field(10.0, description="A p95 this many milliseconds above stable's is never a regression, whatever the percentage (fast services sit in coarse histogram buckets).")
    prometheus_url: Annotated[str, AfterValidator(_web_address)] = Field("http://localhost:9090", description="Prometheus the promotion reads (`kubectl -n istio-system port-forward svc/prometheus 9090:9090` puts it here); --prometheus overrides.")
    min_step_duration: Duration = Field("0s", description="Least time a weight must have been live (since the commit that last changed it) before the promotion loop moves it again.")
    auto_rollback: bool = Field(False, description="The promotion loop applies a rollback at once (only that service's route), then opens a pull request recording it.")

    @model_validator(mode="after")
    def _steps_climb_to_100(self) -> CanarySettings:
        if any(later <= earlier for earlier, later in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"steps {self.steps} must rise strictly, for example [10, 25, 50, 100]")
        if self.steps[-1] != 100:
            raise ValueError(f"steps {self.steps} must end at 100, where the canary takes all traffic")
        return self


# ---- the whole stack ---------------------------------------------------------------------------

class Settings(Section):
    """Everything one stack file decides."""

    production: bool = Field(False, description="Marks a production stack: stricter rules apply (at least 2 replicas, STRICT mTLS, HTTPS gateway, REGISTRY_ONLY egress, no faults) and data is protected.")
    kubernetes_version: Annotated[str, AfterValidator(_kubernetes_version)] = Field("1.18", description="Kubernetes version of the target cluster; picks API versions (e.g. PDB policy/v1beta1 before 1.21) and is checked against Istio's supported range.")
    app_namespace: DnsLabel = Field("bee-travels", description="Namespace of the Bee Travels workloads (sidecar injection on).")
    platform_stack: OptionalStackName = Field("", description="Makes this an app stack on the named stack's platform (its stack file beside this one): Istio, the add-ons and the mesh-wide policy are that stack's, and so are its kubernetesVersion, istio, helm and observability keys; this stack deploys its own namespace's services, data, routes and policy.")
    app_stacks: list[StackName] = Field(default_factory=list, description="The app stacks this stack is the platform of, each naming this one as its platformStack: their namespaces pass the istio-system fence and their services' service levels are in this stack's Prometheus.")
    images: ImageSettings = Field(ImageSettings(), description="Registry and pinned tags of the Bee Travels and seeding images.")
    istio: IstioSettings = Field(IstioSettings(), description="Istio release, images, revision, mesh config and ingress gateway.")
    helm: HelmSettings = Field(HelmSettings(), description="Where the Helm charts come from: their repositories, or a local folder of pulled charts.")
    mongodb: MongoSettings = Field(MongoSettings(), description="In-cluster MongoDB for the mongodb tier: version, volume and size.")
    cloud_database: CloudDatabaseSettings = Field(CloudDatabaseSettings(), description="External MongoDB host for the cloud tier.")
    services: dict[str, ServiceSettings] = Field(default_factory=_default_services, description="Per service: deployed versions with their data tier, canary weights, match routes, replicas, resources, autoscaling, resilience overrides and faults.")
    gateway: GatewaySettings = Field(GatewaySettings(), description="Hosts and TLS of the app's Istio Gateway.")
    resilience: Resilience = Field(Resilience(), description="Stack-wide timeouts, retries, load balancing, connection pools and outlier detection.")
    security: SecuritySettings = Field(SecuritySettings(), description="mTLS mode, authorization policies and egress restriction.")
    observability: ObservabilitySettings = Field(ObservabilitySettings(), description="Prometheus, Grafana, Kiali and tracing toggles, trace sampling and Prometheus retention.")
    service_level: ServiceLevel = Field(ServiceLevel(), description="Success rate and p95 latency every service version must meet: alert thresholds and the canary's bar.")
    canary: CanarySettings = Field(CanarySettings(), description="Metric-gated promotion (`make promote`): weight steps, minimum traffic, tolerance against the stable version.")

    @property
    def is_app_stack(self) -> bool:
        """An app stack on another stack's platform: it installs no Istio and no add-ons of its own."""
        return bool(self.platform_stack)

    def services_using(self, tier: str) -> tuple[str, ...]:
        return tuple(name for name, service in self.services.items() if service.uses_tier(tier))

    def uses_tier(self, tier: str) -> bool:
        return bool(self.services_using(tier))

    def resilience_of(self, service: str) -> Resilience:
        return self.services[service].resilience.over(self.resilience)

    def service_level_of(self, service: str) -> ServiceLevel:
        return self.services[service].service_level.over(self.service_level)

    @property
    def kubernetes_minor(self) -> int:
        return int(self.kubernetes_version.split(".")[1])

    def image_repositories(self) -> list[str]:
        """The repositories of every image this stack runs: what `images.digests` may name."""
        found = {repository_of(service_image(self.images, CATALOGUE[name], tier))
                 for name, service in self.services.items() if name in CATALOGUE
                 for tier in service.tiers if tier in CATALOGUE[name].images}  # other tiers are refused by their own rule
        if self.uses_tier("mongodb"):
            found.add(MONGO_REPOSITORY)
            found |= {repository_of(seed_image(self.images, name)) for name in self.services_using("mongodb") if name in SEED_IMAGES}
        tracing = self.observability.tracing
        if tracing.enabled and self.istio.minor in TRACING_IMAGES:
            found.add(repository_of(TRACING_IMAGES[self.istio.minor][tracing.backend]))
        return sorted(found)


# Config keys that hold secrets: read only as Pulumi secrets, never stored in the model.
SECRET_KEYS: dict[str, str] = {
    "cloudDatabaseUrl": "Connection URL (with credentials) of the external MongoDB used by the cloud tier.",
    "cloudDatabaseCert": "PEM CA certificate of the external MongoDB used by the cloud tier.",
}

