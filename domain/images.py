"""Every image the program itself runs, by repository and tag, and the stack file's digests that pin them.

A digest (`images.digests`, repository -> sha256:...) turns `repository:tag` into `repository:tag@sha256:...`: the
kubelet then pulls exactly that image and the tag stays for the reader. The charts' own images are the charts' (their
values pin tags).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from domain.catalogue import SEED_IMAGES, ServiceSpec


class ImageChoice(Protocol):
    """What a stack file says of the images (its `images` section): where from, which tags, which digests."""

    registry: str
    tag: str
    seed_tag: str
    digests: Mapping[str, str]


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


def pinned(images: ImageChoice, image: str) -> str:
    digest = images.digests.get(repository_of(image))
    return f"{image}@{digest}" if digest else image


def service_image(images: ImageChoice, spec: ServiceSpec, tier: str) -> str:
    return pinned(images, f"{images.registry}/{spec.image_for(tier)}:{images.tag}")


def seed_image(images: ImageChoice, service: str) -> str:
    return pinned(images, f"{images.registry}/{SEED_IMAGES[service]}:{images.seed_tag}")


def mongo_image(images: ImageChoice, version: str) -> str:
    return pinned(images, f"{MONGO_REPOSITORY}:{version}")


def tracing_image(images: ImageChoice, istio_minor: str, backend: str) -> str:
    return pinned(images, TRACING_IMAGES[istio_minor][backend])
