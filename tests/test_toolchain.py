"""The pinned toolchain agrees with the program's SDK pins, so the engine finds exactly the plugin each SDK asks for."""

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from harness.pulumi_cli import toolchain_bin
from tools import scan
from tools.stack_run import ROOT

VERSIONS = dict(re.findall(r"^(\w+)=(\S+)$", (ROOT / "tools" / "toolchain" / "versions").read_text(), re.MULTILINE))
PLUGINS = {"kubernetes": "KUBERNETES_PROVIDER_VERSION", "random": "RANDOM_PROVIDER_VERSION", "tls": "TLS_PROVIDER_VERSION"}


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_sdk_is_pinned_at_the_plugin_version_the_toolchain_installs(plugin):
    pins = dict(re.findall(r"^(pulumi-[\w-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE))
    assert pins[f"pulumi-{plugin}"] == VERSIONS[PLUGINS[plugin]]
    # What the installed SDK asks the engine for (its pulumi-plugin.json), not only what requirements.txt says.
    files = metadata.distribution(f"pulumi_{plugin}").files
    plugin_json = next(file for file in files if file.name == "pulumi-plugin.json")
    assert json.loads(Path(plugin_json.locate()).read_text())["version"] == VERSIONS[PLUGINS[plugin]]


def test_the_toolchain_holds_the_pinned_cli_and_each_plugin_reports_its_pinned_version():
    bin_dir = toolchain_bin()
    env = {**os.environ, "PULUMI_HOME": str(bin_dir.parent / "home"), "PULUMI_SKIP_UPDATE_CHECK": "true"}

    def pulumi(*args):
        return subprocess.run([str(bin_dir / "pulumi"), *args], capture_output=True, text=True, check=True, env=env).stdout

    assert pulumi("version").strip() == f"v{VERSIONS['PULUMI_VERSION']}"
    installed = {(p["name"], p["version"]) for p in json.loads(pulumi("plugin", "ls", "--json"))}
    for plugin, key in PLUGINS.items():
        assert (plugin, VERSIONS[key]) in installed
        # The binary's own word: the schema it serves names the version it was stamped with.
        assert json.loads(pulumi("package", "get-schema", str(bin_dir / f"pulumi-resource-{plugin}")))["version"] == VERSIONS[key]


def test_the_scanners_helm_is_the_helm_module_the_kubernetes_provider_embeds():
    """`make scan-charts` renders each release as the provider installs it only if both use the same Helm."""
    provider = (ROOT / "tools" / "toolchain" / "pulumi-resource-kubernetes" / "go.mod").read_text()
    embedded = re.search(r"^\s*helm\.sh/helm/v3 (v[\d.]+)", provider, re.MULTILINE)
    assert embedded, "the provider's module graph names no helm.sh/helm/v3"
    assert scan.helm_version() == embedded.group(1)


def test_the_scanners_helm_reports_its_pinned_version():
    helm = scan.helm_binary()
    assert helm.is_file(), f"no Helm at {helm}: `make scanner` builds it (make test does)"
    shown = subprocess.run([str(helm), "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == scan.helm_version()
