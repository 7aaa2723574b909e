"""Stack files as the commands read them: project defaults overlaid by `Pulumi.<stack>.yaml`, handed to the settings
model and its rules as `pulumi up` would."""

from __future__ import annotations

from pathlib import Path

import yaml

from config.platform import with_platform
from config.settings import PROJECT, Settings  # noqa: F401  (the commands' names)
from config.stack_config import RawStackConfig, StackConfigError, load_settings
from config.stack_files import ROOT, default_stack_file, encode_config, load_stack_values, load_yaml  # noqa: F401  (the commands' names)
from tools.errors import CommandError


def load_stack_settings(stack: str, stack_file: Path, shown_as: str | None = None) -> Settings:
    """Settings as `pulumi up` would read them: project defaults overlaid by the stack file, validated."""
    try:
        raw = RawStackConfig.from_stack_file(stack, stack_file)
    except yaml.YAMLError as error:
        raise CommandError(f"{shown_as or stack_file.name} is not valid YAML: {error}") from error
    try:
        return load_settings(with_platform(raw, stack, stack_file.parent), shown_as or stack_file.name)
    except StackConfigError as error:
        raise CommandError(str(error)) from error
