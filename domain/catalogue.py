"""The Bee Travels services this stack knows how to run: images, ports, health paths and call graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DataTier = Literal["json", "mongodb", "cloud"]
DATA_TIERS: tuple[str, ...] = ("json", "mongodb", "cloud")


@dataclass(frozen=True)
class Probe:
    """An HTTP GET probe on the service's own port."""

    path: str


@dataclass(frozen=True)
class ExternalHost:
    """A host outside the mesh that a service calls."""

    host: str
    port: int
    protocol: Literal["TLS", "HTTPS", "HTTP", "TCP"]


@dataclass(frozen=True)
class ServiceSpec:
    """What the app itself dictates about one service; the stack file only picks versions and sizes."""

    name: str
    port: int
    # Image repository name (under the images registry) per data tier this service supports.
    images: dict[str, str]
    # The name the service reports at /info; v3 reuses the v2 image, so SERVICE=<info_name>-<version> tells them apart.
    info_name: str | None
    liveness: Probe
    readiness: Probe
    # Path prefixes (GET) that callers in the app use; the authorization rules allow exactly these.
    api_paths: tuple[str, ...] = ()
    # Services this one calls, with the env var that carries each URL.
    calls: dict[str, str] = field(default_factory=dict)
    external_hosts: tuple[ExternalHost, ...] = ()
    fixed_env: dict[str, str] = field(default_factory=dict)
    # Working folder of the database-backed image; the cloud tier writes ./cert.pem there.
    database_workdir: str | None = None

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(self.images)

    def image_for(self, tier: str) -> str:
        return self.images[tier]


# The v1 backends always answer /ready with 200 and v2 checks its database, so /ready is the honest
# readiness signal for them. Paths and ports are those of the node-v1.0.2 images.
def _backend(name: str, port: int, info_name: str, api_prefix: str) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        port=port,
        images={"json": f"{name}-v1", "mongodb": f"{name}-v2", "cloud": f"{name}-v2"},
        info_name=info_name,
        liveness=Probe("/live"),
        readiness=Probe("/ready"),
        api_paths=(api_prefix, "/info", "/live"),
        database_workdir=f"/services/{info_name}-v2",
    )


CATALOGUE: dict[str, ServiceSpec] = {
    "bee-ui": ServiceSpec(
        name="bee-ui",
        port=9000,
        images={"json": "ui"},
        info_name=None,
        # The UI has no health endpoint; with NODE_ENV=production any unmatched GET serves index.html
        # with 200, so "/" proves the server is up without touching a backend.
        liveness=Probe("/"),
        readiness=Probe("/"),
        calls={
            "destination": "DESTINATION_URL",
            "hotel": "HOTEL_URL",
            "carrental": "CAR_URL",
            "currencyexchange": "CURRENCY_EXCHANGE_URL",
        },
        fixed_env={"NODE_ENV": "production"},
    ),
    "destination": _backend("destination", 9001, "destination", "/api/v1/destinations"),
    "hotel": _backend("hotel", 9101, "hotel", "/api/v1/hotels"),
    "carrental": _backend("carrental", 9102, "car-rental", "/api/v1/cars"),
    "currencyexchange": ServiceSpec(
        name="currencyexchange",
        port=9201,
        images={"json": "currencyexchange"},
        info_name="currency-exchange",
        liveness=Probe("/live"),
        # /ready calls api.exchangeratesapi.io, which has required an access key since 2021 that the
        # image never sends: gating readiness on it would wedge every rollout, so /live gates it.
        readiness=Probe("/live"),
        api_paths=("/api/v1/currency", "/info"),
        external_hosts=(ExternalHost("api.exchangeratesapi.io", 443, "TLS"),),
    ),
}

FRONTEND = "bee-ui"

# Seeding images: one per backend whose data lives in MongoDB.
SEED_IMAGES: dict[str, str] = {
    "destination": "data-gen-destination",
    "hotel": "data-gen-hotel",
    "carrental": "data-gen-carrental",
}
