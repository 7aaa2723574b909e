"""Stack files as the commands read them: project defaults overlaid by `Pulumi.<stack>.yaml`, handed to the settings
model and its rules as `pulumi up` would."""

from __future__ import annotations

from pathlib import Path

import yaml

from config.platform import with_platform
from config.settings import PROJECT, Settings  # noqa: F401  (the commands' names)
from config.stack_config import RawStackConfig, StackConfigError, load_settings
from config.stack_files import ROOT, default_stack_file, encode_config, load_stack_values, load_yaml, stack_file_config  # noqa: F401  (the commands' names)
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


def declared_platform(stack: str, stack_file: Path) -> dict[str, dict]:
    """Offline (`make render`), an app stack's platform as its stack file declares it: deployed at that Istio and
    admitting the app stack, as it will be once updated. Nothing for any other stack, or one whose files do not read."""
    try:
        app = load_stack_settings(stack, stack_file)
        if not app.is_app_stack:
            return {}
        platform = load_stack_settings(app.platform_stack, default_stack_file(app.platform_stack, stack_file.parent))
    except CommandError:
        return {}  # the program says what is wrong, with the same words
    return {app.platform_stack: {"istioVersion": platform.istio.version, "istioRevision": platform.istio.revision,
                                 "appStacks": {stack: app.app_namespace}}}
