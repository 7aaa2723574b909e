"""Reading the stack's config into Settings, and reporting every problem in it at once."""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pydantic import BaseModel, ValidationError

from config.deployed import DeployedFacts, change_problems
from config.live_cluster import LiveCluster, cluster_problems
from config.rules import Problem, SecretSetting, check_settings
from config.settings import PROJECT, SECRET_KEYS, Settings
from config.stack_files import encode_config, load_stack_values


class StackConfigError(pulumi.RunError):
    """The stack file is wrong; raised before any resource is registered, so nothing is half-applied."""


@dataclass(frozen=True)
class RawStackConfig:
    """The project's config as the engine hands it over: key (without project prefix) -> raw text."""

    values: Mapping[str, str]
    secret_keys: frozenset[str]

    @classmethod
    def from_pulumi(cls, project: str = PROJECT) -> RawStackConfig:
        everything = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
        prefix = f"{project}:"
        secret_keys = set(pulumi.runtime.get_config_secret_keys_env())
        values = {}
        for full_key, value in everything.items():
            if full_key.startswith(prefix):
                key = full_key[len(prefix):]
                values[key] = value
                if pulumi.runtime.is_config_secret(full_key):
                    secret_keys.add(full_key)
        return cls(values, frozenset(key[len(prefix):] for key in secret_keys if key.startswith(prefix)))

    @classmethod
    def from_stack_file(cls, stack: str, path: Path) -> RawStackConfig:
        """The config `pulumi up` would hand the program of that stack (secret values left out)."""
        values, secure = load_stack_values(stack, path)
        config, secret_keys = encode_config(values, secure, {})
        prefix = f"{PROJECT}:"
        return cls({key.removeprefix(prefix): value for key, value in config.items() if key.startswith(prefix)},
                   frozenset(key.removeprefix(prefix) for key in secret_keys if key.startswith(prefix)))

    def secret_setting(self, key: str) -> SecretSetting:
        return SecretSetting(present=key in self.values, is_secret=key in self.secret_keys)


def kubernetes_provider_config() -> dict[str, str | None]:
    """Where the Kubernetes provider finds its cluster; no cluster at all when it renders YAML instead."""
    everything = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    if everything.get("kubernetes:renderYamlToDirectory"):
        return {"kubeconfig": None, "context": None, "cluster": None, "rendering": "true"}
    return {key: everything.get(f"kubernetes:{key}") for key in ("kubeconfig", "context", "cluster")}


@dataclass(frozen=True)
class StackSecrets:
    """Secret config values, only ever as Pulumi secret Outputs."""

    cloud_database_url: pulumi.Output[str] | None
    cloud_database_cert: pulumi.Output[str] | None


def stack_file_name() -> str:
    return f"Pulumi.{pulumi.get_stack()}.yaml"


def project_dir() -> Path:
    """The project's folder, where the stack files are (the engine says; a run without it is in that folder)."""
    return Path(pulumi.runtime.get_root_directory() or Path.cwd())


def load_settings(raw: RawStackConfig, stack_file: str, deployed: DeployedFacts | None = None,
                  live: LiveCluster | None = None) -> Settings:
    """The validated settings, or StackConfigError listing every problem with its key and fix.

    `deployed` is what the stack's last update left running, `live` the cluster it deploys to, where known: changes
    an update cannot make, and a kubernetesVersion the cluster does not run, are problems too.
    """
    data, problems = _decode(raw)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        problems += [_problem_from_pydantic(item) for item in error.errors()]
    if not problems:
        # Rules that span sections only make sense once every section parsed.
        problems = check_settings(settings, {key: raw.secret_setting(key) for key in SECRET_KEYS})
    if not problems:
        problems = change_problems(settings, deployed) + cluster_problems(settings, live)
    if problems:
        raise StackConfigError(format_problems(problems, stack_file))
    return settings


def read_secrets(raw: RawStackConfig, config: pulumi.Config) -> StackSecrets:
    def secret(key: str) -> pulumi.Output[str] | None:
        return config.get_secret(key) if key in raw.values else None

    return StackSecrets(cloud_database_url=secret("cloudDatabaseUrl"), cloud_database_cert=secret("cloudDatabaseCert"))


def format_problems(problems: Iterable[Problem], stack_file: str) -> str:
    problems = sorted(set(problems), key=lambda problem: problem.path)
    lines = [f"{stack_file} has {len(problems)} configuration problem{'s' if len(problems) != 1 else ''}; nothing was changed:"]
    lines += [f"  - {PROJECT}:{problem.path}: {problem.message}" for problem in problems]
    lines.append(f"Fix the keys above in {stack_file} (or with `pulumi config set --path <key> <value>`), then run again.")
    return "\n".join(lines)


# ---- decoding the raw text ---------------------------------------------------------------------

def _field_keys() -> dict[str, str]:
    return {field.alias or name: name for name, field in Settings.model_fields.items()}


def _decode(raw: RawStackConfig) -> tuple[dict[str, Any], list[Problem]]:
    """Top-level config values arrive as text: JSON for objects, lists, numbers and booleans."""
    known = _field_keys()
    data: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, text in raw.values.items():
        if key in SECRET_KEYS:
            continue
        if key not in known:
            problems.append(Problem(key, f"unknown key{_suggestion(key, [*known, *SECRET_KEYS])}"))
            continue
        if key in raw.secret_keys:
            problems.append(Problem(key, "is stored as a secret but holds no secret data; set it in plain text (`pulumi config set --path ...` without --secret) so it can be validated and shown in previews"))
            continue
        data[key] = text if _is_text_field(known[key]) else _json(key, text, problems)
    return data, problems


def _is_text_field(name: str) -> bool:
    return Settings.model_fields[name].annotation is str


def _json(key: str, text: str, problems: list[Problem]) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        problems.append(Problem(key, f"expected a structured value (a YAML mapping, list, number or boolean), got text {text!r}"))
        return None


# ---- turning pydantic errors into problems users can act on ------------------------------------

def config_path(location: Iterable[str]) -> str:
    """A key path as `pulumi config set --path` takes it: a key with dots or slashes (an image repository) in brackets."""
    path = ""
    for part in location:
        path += f'["{part}"]' if re.search(r"[./\[\]\s]", part) else f".{part}" if path else part
    return path


def _problem_from_pydantic(error: Mapping[str, Any]) -> Problem:
    location = tuple(str(part) for part in error["loc"])
    path = config_path(location)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        return Problem(path, f"unknown key{_suggestion(location[-1], allowed)}; valid keys here: {', '.join(sorted(allowed))}")
    if error["type"] == "missing":
        return Problem(path, "is missing; this section needs it (see the configuration reference in docs/configuration.md)")
    message = str(error["msg"]).removeprefix("Value error, ")
    return Problem(path or "(top level)", message)


def _suggestion(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed_keys(location: tuple[str, ...]) -> list[str]:
    """The keys a section accepts, found by walking the model along the error's location."""
    annotation: Any = Settings
    for part in location:
        annotation = _step(annotation, part)
    model = _model_in(annotation)
    return [field.alias or name for name, field in model.model_fields.items()] if model else []


def _step(annotation: Any, part: str) -> Any:
    model = _model_in(annotation)
    if model is not None:
        by_alias = {field.alias or name: field for name, field in model.model_fields.items()}
        field = by_alias.get(part) or model.model_fields.get(part)
        return field.annotation if field else None
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, list) and args:
        return args[-1]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, list):
        return None
    for arg in typing.get_args(annotation):  # Optional[Model]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
