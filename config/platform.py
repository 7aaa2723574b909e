"""Platform and app stacks: one stack installs Istio and the add-ons, app stacks deploy their own namespaces on it.

An update saves the stack's whole state after every step, so one stack's update grows with the square of its size
(docs/performance.md). Split, each stack saves only its own. The platform's stack file lists its app stacks
(`appStacks`) and each app stack's file names its platform (`platformStack`); both sides read the other's file, so
a pull request shows the whole link and a wrong one stops before anything is registered.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.deployed import DeployedFacts
from config.rules import Problem
from config.settings import Settings
from config.stack_config import RawStackConfig, StackConfigError, format_problems, load_settings
from config.stack_files import default_stack_file, load_yaml

# What an app stack takes from its platform's stack file: the cluster, the mesh it joins and where its add-ons run.
PLATFORM_KEYS = ("kubernetesVersion", "istio", "helm", "observability")


@dataclass(frozen=True)
class AppStack:
    """An app stack as its platform sees it: its name and its settings."""

    name: str
    settings: Settings


def _own_keys(path: Path) -> set[str]:
    """The project keys a stack file sets itself (not the project's defaults)."""
    if not path.exists():
        return set()
    config = (load_yaml(path) or {}).get("config") or {}
    return {key.split(":", 1)[1] for key in config if ":" in key and not key.startswith(("kubernetes:", "pulumi:"))}


def with_platform(raw: RawStackConfig, stack: str, project_dir: Path, platform_raw: RawStackConfig | None = None) -> RawStackConfig:
    """An app stack's config with its platform's keys in, or StackConfigError naming what to fix; any other stack's
    as it is. `platform_raw`: the platform's config, when the caller has read it already."""
    platform = raw.values.get("platformStack")
    if not platform:
        return raw
    here = default_stack_file(stack, project_dir)
    platform_file = default_stack_file(platform, project_dir)
    problems = [Problem(key, f"is the platform's to decide: {platform_file.name} sets it for every app stack on {platform}; remove it here")
                for key in PLATFORM_KEYS if key in _own_keys(here)]
    if "appStacks" in _own_keys(here):
        problems.append(Problem("appStacks", f"an app stack has no app stacks of its own; list them in {platform_file.name}"))
    if platform == stack:
        problems.append(Problem("platformStack", "names this stack itself; name the stack that installs Istio, or remove the key"))
    elif not platform_file.exists():
        problems.append(Problem("platformStack", f"names {platform}, but there is no {platform_file.name} beside {here.name}; "
                                                 "name a stack of this project"))
    else:
        platform_raw = platform_raw or RawStackConfig.from_stack_file(platform, platform_file)
        if platform_raw.values.get("platformStack"):
            problems.append(Problem("platformStack", f"names {platform}, itself an app stack on {platform_raw.values['platformStack']}; "
                                                     "name the stack that installs Istio"))
        elif stack not in json.loads(platform_raw.values.get("appStacks") or "[]"):
            problems.append(Problem("platformStack", f"names {platform}, whose stack file does not list {stack} under appStacks; add it "
                                                     f"there and update {platform} first, so its fence lets this stack's namespace "
                                                     "reach istiod and its Prometheus holds this stack's services to their service levels"))
        else:
            values = {**raw.values, **{key: platform_raw.values[key] for key in PLATFORM_KEYS if key in platform_raw.values}}
            raw = RawStackConfig(values, raw.secret_keys)
    if problems:
        raise StackConfigError(format_problems(problems, here.name))
    return raw


def hosts_overlap(first: str, second: str) -> bool:
    """Whether two Gateway hosts can name the same request (`*` and `*.example.com` are patterns)."""
    return fnmatch.fnmatchcase(first, second) or fnmatch.fnmatchcase(second, first)


def app_stacks_of(settings: Settings, stack: str, project_dir: Path) -> tuple[AppStack, ...]:
    """The app stacks a platform stack lists, each read and validated from its own stack file, or StackConfigError."""
    problems: list[Problem] = []
    found: list[AppStack] = []
    own = default_stack_file(stack, project_dir)
    platform_raw = RawStackConfig.from_stack_file(stack, own) if settings.app_stacks else None
    for name in dict.fromkeys(settings.app_stacks):
        path = default_stack_file(name, project_dir)
        if name == stack:
            problems.append(Problem("appStacks", "lists this stack itself; list the stacks that name this one as their platformStack"))
            continue
        if not path.exists():
            problems.append(Problem("appStacks", f"lists {name}, but there is no {path.name} beside this stack's file; add that "
                                                 f"stack's file or remove {name}"))
            continue
        raw = RawStackConfig.from_stack_file(name, path)
        if raw.values.get("platformStack") != stack:
            problems.append(Problem("appStacks", f"lists {name}, whose stack file does not name {stack} as its platformStack; set "
                                                 f"platformStack: {stack} in {path.name}, or remove {name} here"))
            continue
        try:
            found.append(AppStack(name, load_settings(with_platform(raw, name, project_dir, platform_raw), path.name)))
        except StackConfigError as error:
            problems.append(Problem("appStacks", f"lists {name}, whose stack file is not valid; fix it first:\n    {error}"))
    problems += _clashes(settings, stack, found)
    if problems:
        raise StackConfigError(format_problems(problems, own.name))
    return tuple(found)


def _clashes(settings: Settings, stack: str, apps: list[AppStack]) -> list[Problem]:
    """Two stacks in one namespace would own the same objects; two Gateways on one host split its requests."""
    stacks = [(stack, settings), *((app.name, app.settings) for app in apps)]
    problems = []
    for (first, one), (second, other) in itertools.combinations(stacks, 2):
        if one.app_namespace == other.app_namespace:
            problems.append(Problem("appStacks", f"{first} and {second} both deploy to namespace {one.app_namespace}; give each "
                                                 "app stack an appNamespace of its own"))
        shared = sorted({f"{a} and {b}" if a != b else a for a in one.gateway.hosts for b in other.gateway.hosts if hosts_overlap(a, b)})
        if shared:
            problems.append(Problem("appStacks", f"{first} and {second} serve the same Gateway hosts ({', '.join(shared)}): the "
                                                 "ingress gateway would split their requests; give each stack hosts of its own"))
    return problems


def platform_problems(settings: Settings, stack: str, outputs: Mapping[str, Any]) -> list[Problem]:
    """What the platform's last update says against this app stack joining it: not deployed, this stack not yet
    admitted (its fence and Prometheus would not know the namespace), or another Istio than its stack file now names."""
    platform = settings.platform_stack
    if not outputs.get("istioVersion"):
        return [Problem("platformStack", f"names {platform}, which has not been deployed; run `pulumi up --stack {platform}` first")]
    admitted = outputs.get("appStacks") or {}
    if admitted.get(stack) != settings.app_namespace:
        return [Problem("platformStack", f"names {platform}, whose last update admitted {json.dumps(admitted, sort_keys=True)}, "
                                         f"not {stack} in namespace {settings.app_namespace}; run `pulumi up --stack {platform}` "
                                         "first, so its fence and Prometheus take this stack in")]
    if outputs["istioVersion"] != settings.istio.version or (outputs.get("istioRevision") or "") != settings.istio.revision:
        return [Problem("platformStack", f"names {platform}, which runs Istio {outputs['istioVersion']} (revision "
                                         f"'{outputs.get('istioRevision') or ''}') while its stack file now says "
                                         f"{settings.istio.version} ('{settings.istio.revision}'); run `pulumi up --stack {platform}` "
                                         "first, so this stack's sidecars are injected by the Istio it is built for")]
    return []


def dropped_app_stack_problems(settings: Settings, deployed: DeployedFacts | None,
                               outputs_of: Callable[[str], Mapping[str, Any]]) -> list[Problem]:
    """An app stack still deployed may not be dropped from appStacks: the fence would cut its sidecars off istiod."""
    admitted = (deployed.app_stacks or {}) if deployed else {}
    return [Problem("appStacks", f"drops {name}, which is still deployed in namespace {namespace}: the fence would cut its "
                                 f"sidecars off istiod. Run `pulumi destroy --stack {name}` first, or keep it listed")
            for name, namespace in sorted(admitted.items())
            if name not in settings.app_stacks and outputs_of(name).get("appNamespace")]


def require_platform(settings: Settings, stack: str, deployed: DeployedFacts | None,
                     outputs_of: Callable[[str], Mapping[str, Any]]) -> None:
    """Checks against what is deployed: an app stack goes on only onto a platform that admitted it (the platform's
    outputs, read through the engine as a StackReference reads them), and a platform keeps every app stack still on it."""
    if settings.is_app_stack:
        problems = platform_problems(settings, stack, outputs_of(settings.platform_stack))
    else:
        problems = dropped_app_stack_problems(settings, deployed, outputs_of)
    if problems:
        raise StackConfigError(format_problems(problems, default_stack_file(stack).name))
