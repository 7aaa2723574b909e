"""Bee Travels on an Istio mesh: settings -> mesh install -> data -> services -> traffic -> security -> outputs."""

import pulumi

from components.stack_config import RawStackConfig, load_settings, read_secrets, stack_file_name

# 1. Settings: read and checked once; a bad stack file stops here, before anything is registered.
raw_config = RawStackConfig.from_pulumi()
settings = load_settings(raw_config, stack_file_name())
secrets = read_secrets(raw_config, pulumi.Config())

pulumi.export("istioVersion", settings.istio.version)
