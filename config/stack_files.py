"""Stack files as `pulumi up` hands them to the program: project defaults overlaid by `Pulumi.<stack>.yaml`.

The program reads them too, for the stacks it is linked with (an app stack's platform, a platform's app stacks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from config.settings import PROJECT

# The folder this copy of the project is in, symlinks kept: a copy that links config/ in reads its own stack files.
ROOT = Path(__file__).absolute().parents[1]
# libyaml's parser when PyYAML has it: the pure-Python one costs ~13 ms of every run on the stack files.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_YAML_LOADER)


def load_stack_values(stack: str, stack_file: Path | None = None) -> tuple[dict[str, Any], set[str]]:
    """Project defaults overlaid by the stack file: key (no project prefix for ours) -> value, and secure keys.

    The project file is the one beside the stack file (this repository's without one)."""
    path = stack_file or default_stack_file(stack)
    project_file = path.parent / "Pulumi.yaml"
    project = load_yaml(project_file if project_file.exists() else ROOT / "Pulumi.yaml")
    values: dict[str, Any] = {}
    for key, declared in (project.get("config") or {}).items():
        if isinstance(declared, dict) and ("default" in declared or "value" in declared):
            values[key] = declared.get("value", declared.get("default"))
        elif not isinstance(declared, dict):
            values[key] = declared
    secure: set[str] = set()
    for full_key, value in ((load_yaml(path) or {}).get("config") or {}).items():
        key = full_key.removeprefix(f"{PROJECT}:")
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(key)
        values[key] = value
    return values, secure


def full_key(key: str) -> str:
    """A config key as a stack file writes it: ours with the project's prefix, a provider's (`kubernetes:...`) as is."""
    return key if ":" in key else f"{PROJECT}:{key}"


def stack_file_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A stack file's `config:` block from key -> value (our keys without the project prefix)."""
    return {full_key(key): value for key, value in values.items()}


def encode_config(values: Mapping[str, Any], secure: Iterable[str], secrets: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        full = full_key(key)
        if key in secure or key in secrets:
            value = secrets.get(key, f"secret-value-of-{key}")
            secret_keys.append(full)
        # The CLI hands structured values over as JSON with object keys sorted (the real-engine tests showed it),
        # whatever order the stack file has them in; so does this.
        config[full] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return config, secret_keys


def default_stack_file(stack: str, project: Path = ROOT) -> Path:
    """Where a stack's file lives in a project folder: the one place the name `Pulumi.<stack>.yaml` is made."""
    return project / f"Pulumi.{stack}.yaml"


