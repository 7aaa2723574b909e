"""What this stack's last `pulumi up` deployed, and the changes of it that an update cannot make safely.

The facts are the stack's own outputs, read back through the engine before any resource is registered, so a
refused change stops the run with nothing applied. A stack that was never deployed has none, and nothing is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from config.rules import Problem
from config.settings import Settings

# The engine's own function for reading a stack's outputs (the one StackReference uses).
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
# The file backend (gocloud's fileblob) replaces a checkpoint atomically but rewrites its `.attrs` sidecar in place,
# so a read while the engine saves the update's first checkpoint can find the sidecar empty and fail with
# "failed to load checkpoint: EOF". The engine saves that checkpoint as the program starts, so the read is retried.
CHECKPOINT_READ_RACE = "failed to load checkpoint"
CHECKPOINT_READ_ATTEMPTS = 8
CHECKPOINT_READ_PAUSE = 0.25
# What the engine answers for a stack never created (`pulumi stack init`): it has no outputs, as one never deployed.
UNKNOWN_STACK = "unknown stack"


@dataclass(frozen=True)
class DeployedFacts:
    istio_version: str
    istio_revision: str
    # 0: no MongoDB; 1: a standalone server; 3, 5, 7: a replica set.
    mongodb_members: int | None
    # "service/version" of every version the last update ran under a HorizontalPodAutoscaler of its own settings.
    autoscaled: frozenset[str] | None = None
    # "service/version" -> replicas, for the autoscalers the last update left pinned at a fixed count.
    pinned: dict[str, int] | None = None
    # The app stacks it admitted, by name -> namespace (config/platform.py).
    app_stacks: dict[str, str] | None = None

    @property
    def istio_minor(self) -> str:
        return ".".join(self.istio_version.split(".")[:2])

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> DeployedFacts | None:
        if not outputs.get("istioVersion"):
            return None
        members, autoscaled, pinned, apps = (outputs.get(key) for key in ("mongodbMembers", "autoscaledVersions", "pinnedAutoscalers", "appStacks"))
        return cls(istio_version=str(outputs["istioVersion"]), istio_revision=str(outputs.get("istioRevision") or ""),
                   mongodb_members=int(members) if members is not None else None,
                   autoscaled=frozenset(autoscaled) if isinstance(autoscaled, list) else None,
                   pinned={key: int(count) for key, count in pinned.items()} if isinstance(pinned, dict) else None,
                   app_stacks={str(key): str(value) for key, value in apps.items()} if isinstance(apps, dict) else None)


def facts_of(settings: Settings, deployed: DeployedFacts | None) -> dict[str, Any]:
    """The outputs the next run compares against (istioVersion and istioRevision are exported with the mesh)."""
    handing_over = autoscalers_handing_over(settings, deployed)
    return {"mongodbMembers": settings.mongodb.replicas if settings.services_using("mongodb") else 0,
            "autoscaledVersions": sorted(autoscaled_versions(settings)),
            "pinnedAutoscalers": {f"{name}/{version}": settings.services[name].replicas_of(version)
                                  for name, versions in sorted(handing_over.items()) for version in sorted(versions)}}


def autoscaled_versions(settings: Settings) -> set[str]:
    return {f"{name}/{version}" for name, service in settings.services.items() if service.autoscaling.enabled
            for version in service.versions}


def autoscalers_handing_over(settings: Settings, deployed: DeployedFacts | None) -> dict[str, frozenset[str]]:
    """Per service, the versions whose autoscaler this update keeps, pinned at the version's fixed replica count.

    The provider deletes a removed autoscaler only at the end of the update, after the Deployment's new count is
    applied, and until then the autoscaler scales the Deployment back (to its range, or, with scale-down
    stabilisation remembering its last five minutes, to where it was). So an autoscaler whose version is no longer
    autoscaled is pinned first, and moves the count itself; it is removed by the first update that leaves the count
    where it was pinned, when the two agree.
    """
    if deployed is None or deployed.autoscaled is None:
        return {}
    now_autoscaled = autoscaled_versions(settings)
    pinned = deployed.pinned or {}
    handing_over: dict[str, set[str]] = {}
    for key in sorted((deployed.autoscaled | set(pinned)) - now_autoscaled):
        name, version = key.split("/", 1)
        if name not in settings.services or version not in settings.services[name].versions:
            continue
        if key in pinned and pinned[key] == settings.services[name].replicas_of(version):
            continue  # pinned at this very count last time: it can go now
        handing_over.setdefault(name, set()).add(version)
    return {name: frozenset(versions) for name, versions in handing_over.items()}


def stack_outputs(stack: str, invoke: Callable[..., Any] = pulumi.runtime.invoke,
                  pause: float = CHECKPOINT_READ_PAUSE) -> Mapping[str, Any]:
    """A stack of this project's outputs as its last update left them; none for a stack never deployed."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"
    for attempt in range(1, CHECKPOINT_READ_ATTEMPTS + 1):
        try:
            result = invoke(READ_STACK_OUTPUTS, {"name": name})
            break
        except Exception as error:  # the SDK raises a bare Exception for a failed invoke
            if UNKNOWN_STACK in str(error):
                return {}
            if CHECKPOINT_READ_RACE not in str(error) or attempt == CHECKPOINT_READ_ATTEMPTS:
                raise
            time.sleep(pause)
    return (result.value or {}).get("outputs") or {}


def last_deployed(invoke: Callable[..., Any] = pulumi.runtime.invoke, pause: float = CHECKPOINT_READ_PAUSE) -> DeployedFacts | None:
    """This stack's facts as its last update left them, or None for a stack never deployed."""
    return DeployedFacts.from_outputs(stack_outputs(pulumi.get_stack(), invoke, pause))


def change_problems(settings: Settings, deployed: DeployedFacts | None) -> list[Problem]:
    return [] if deployed is None else [*_istio_minor(settings, deployed), *_revision(settings, deployed),
                                        *_mongodb_topology(settings, deployed)]


def _istio_minor(settings: Settings, deployed: DeployedFacts) -> Iterator[Problem]:
    if settings.istio.minor != deployed.istio_minor:
        yield Problem("istio.version", (
            f"is {settings.istio.version}, but this stack runs Istio {deployed.istio_version}; an existing stack cannot "
            f"switch between Istio {deployed.istio_minor} and {settings.istio.minor}: Helm does not adopt the CRDs the "
            "other release installed, and no Kubernetes version is supported by both. Keep "
            f"istio.version: \"{deployed.istio_version}\" here; to move, create a new stack for a new cluster "
            f"(`pulumi stack init <name>`, copy this file, set istio.version and kubernetesVersion), move traffic "
            "to it, then `pulumi destroy` this one"))


def _revision(settings: Settings, deployed: DeployedFacts) -> Iterator[Problem]:
    if settings.istio.revision != deployed.istio_revision:
        was, now = deployed.istio_revision or "(none)", settings.istio.revision or "(none)"
        yield Problem("istio.revision", (
            f"changes {was} -> {now} on a running mesh; the update would create the new istiod and delete the old one "
            "at once, while every running sidecar still gets its config and certificates from the old one and the "
            "validating webhook names the old Service, so the mesh would stop taking config. This stack does not run "
            f"two control planes side by side; keep istio.revision: \"{deployed.istio_revision}\". To change the "
            "revision, create a new stack on a new cluster with it, move traffic there, then `pulumi destroy` this one"))


def _mongodb_topology(settings: Settings, deployed: DeployedFacts) -> Iterator[Problem]:
    members = settings.mongodb.replicas if settings.services_using("mongodb") else 0
    was = deployed.mongodb_members
    if not was or not members or (was > 1) == (members > 1):
        return
    yield Problem("mongodb.replicas", (
        f"changes {was} -> {members}: this stack's MongoDB runs as a "
        f"{'replica set' if was > 1 else 'standalone server'}, and an update cannot turn one into the other with the "
        f"data in place (the members' flags, key file and connection string all change). Keep mongodb.replicas: {was}; "
        "to change, dump the data (mongodump), create the database anew in a new stack and restore it there. "
        "Between 3, 5 and 7 members an update adds or removes members in place"))
