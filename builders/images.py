"""Every image the program itself runs, by repository and tag, and the stack file's digests that pin them.

A digest (`images.digests`, repository -> sha256:...) turns `repository:tag` into `repository:tag@sha256:...`: the
kubelet then pulls exactly that image and the tag stays for the reader. The charts' own images are the charts' (their
values pin tags).
"""

from __future__ import annotations

from builders.catalogue import CATALOGUE, SEED_IMAGES, ServiceSpec
from config.settings import ImageSettings, Settings

MONGO_REPOSITORY = "docker.io/library/mongo"
# The tracing backends each Istio release's add-ons ran: Jaeger 1.17 and Zipkin 2.21 with 1.6; current Istio's samples.
TRACING_IMAGES: dict[str, dict[str, str]] = {
    "1.6": {"jaeger": "docker.io/jaegertracing/all-in-one:1.17", "zipkin": "docker.io/openzipkin/zipkin-slim:2.21.0"},
    "1.30": {"jaeger": "docker.io/jaegertracing/jaeger:2.17.0", "zipkin": "docker.io/openzipkin/zipkin-slim:2.23.14"},
}


def repository_of(image: str) -> str:
    """`registry/name` of `registry/name:tag` (a registry's port is not a tag)."""
    head, _, last = image.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def pinned(images: ImageSettings, image: str) -> str:
    digest = images.digests.get(repository_of(image))
    return f"{image}@{digest}" if digest else image


def service_image(images: ImageSettings, spec: ServiceSpec, tier: str) -> str:
    return pinned(images, f"{images.registry}/{spec.image_for(tier)}:{images.tag}")


def seed_image(images: ImageSettings, service: str) -> str:
    return pinned(images, f"{images.registry}/{SEED_IMAGES[service]}:{images.seed_tag}")


def mongo_image(images: ImageSettings, version: str) -> str:
    return pinned(images, f"{MONGO_REPOSITORY}:{version}")


def tracing_image(images: ImageSettings, istio_minor: str, backend: str) -> str:
    return pinned(images, TRACING_IMAGES[istio_minor][backend])


def repositories(settings: Settings) -> list[str]:
    """The repositories of every image this stack's settings run: what `images.digests` may name."""
    images = settings.images
    found = {repository_of(service_image(images, CATALOGUE[name], tier))
             for name, service in settings.services.items() if name in CATALOGUE
             for tier in service.tiers if tier in CATALOGUE[name].images}  # other tiers are refused by their own rule
    if settings.uses_tier("mongodb"):
        found.add(MONGO_REPOSITORY)
        found |= {repository_of(seed_image(images, name)) for name in settings.services_using("mongodb") if name in SEED_IMAGES}
    tracing = settings.observability.tracing
    if tracing.enabled and settings.istio.minor in TRACING_IMAGES:
        found.add(repository_of(TRACING_IMAGES[settings.istio.minor][tracing.backend]))
    return sorted(found)
