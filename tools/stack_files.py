"""Stack files as the commands read them: project defaults overlaid by `Pulumi.<stack>.yaml`, handed to the settings
model and its rules as `pulumi up` would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from config.settings import Settings
from config.stack_config import RawStackConfig, StackConfigError, load_settings
from tools.errors import CommandError

ROOT = Path(__file__).resolve().parents[1]
# libyaml's parser when PyYAML has it: the pure-Python one costs ~13 ms of every run on the stack files.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_YAML_LOADER)


PROJECT = load_yaml(ROOT / "Pulumi.yaml")["name"]


def load_stack_values(stack: str, stack_file: Path | None = None) -> tuple[dict[str, Any], set[str]]:
    """Project defaults overlaid by the stack file: key (no project prefix for ours) -> value, and secure keys."""
    project = load_yaml(ROOT / "Pulumi.yaml")
    values: dict[str, Any] = {}
    for key, declared in (project.get("config") or {}).items():
        if isinstance(declared, dict) and ("default" in declared or "value" in declared):
            values[key] = declared.get("value", declared.get("default"))
        elif not isinstance(declared, dict):
            values[key] = declared
    path = stack_file or default_stack_file(stack)
    secure: set[str] = set()
    for full_key, value in ((load_yaml(path) or {}).get("config") or {}).items():
        key = full_key.removeprefix(f"{PROJECT}:")
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(key)
        values[key] = value
    return values, secure


def encode_config(values: Mapping[str, Any], secure: Iterable[str], secrets: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        if key in secure or key in secrets:
            value = secrets.get(key, f"secret-value-of-{key}")
            secret_keys.append(full_key)
        # The CLI hands structured values over as JSON with object keys sorted (the real-engine tests showed it),
        # whatever order the stack file has them in; so does this.
        config[full_key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return config, secret_keys


def default_stack_file(stack: str, project: Path = ROOT) -> Path:
    """Where a stack's file lives in a project folder: the one place the name `Pulumi.<stack>.yaml` is made."""
    return project / f"Pulumi.{stack}.yaml"


def load_stack_settings(stack: str, stack_file: Path, shown_as: str | None = None) -> Settings:
    """Settings as `pulumi up` would read them: project defaults overlaid by the stack file, validated."""
    try:
        values, secure = load_stack_values(stack, stack_file)
    except yaml.YAMLError as error:
        raise CommandError(f"{shown_as or stack_file.name} is not valid YAML: {error}") from error
    config, secret_keys = encode_config(values, secure, {})
    prefix = f"{PROJECT}:"
    ours = {key.removeprefix(prefix): value for key, value in config.items() if key.startswith(prefix)}
    raw = RawStackConfig(ours, frozenset(key.removeprefix(prefix) for key in secret_keys if key.startswith(prefix)))
    try:
        return load_settings(raw, shown_as or stack_file.name)
    except StackConfigError as error:
        raise CommandError(str(error)) from error
