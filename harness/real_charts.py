"""The real charts every stack pins, for the tests that install them: never a stand-in, never a skip.

Where they come from, in order:
1. a folder laid out as `helm.chartsDir` reads it (`<name>-<version>/` or `<name>-<version>.tgz`) that also holds
   Istio 1.6.14's charts in the release archive's layout (`istio-1.6.14/manifests/charts/`): `$BEE_TRAVELS_CHARTS`,
   or `../shared/charts` beside the repository;
2. otherwise the charts' own sources, as on a user's machine: Istio 1.6.14's release archive (fetched and verified
   into `.cache/istio` by `tools.istio_charts`) and the Helm repositories, which the releases then install from.
With neither, the test fails and says how to provide them.
"""

from __future__ import annotations

import io
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builders.charts import Chart, local_chart
from builders.istio_archive import REQUIRED_FILES, charts_dir
from harness.pulumi_cli import pinned_charts
from tools import istio_charts
from tools.stack_run import ROOT

ENV = "BEE_TRAVELS_CHARTS"
SHARED = ROOT.parent / "shared" / "charts"
ISTIO_1_6 = "1.6.14"


@dataclass(frozen=True)
class RealCharts:
    istio_1_6: Path  # the release archive's manifests/charts
    helm_charts_dir: Path | None  # None: the releases install from the Helm repositories
    source: str

    def edits(self, istio_version: str) -> dict[str, str]:
        """The stack-file keys that point a stack on this Istio release at these charts."""
        edits = {"istio.chartsDir": str(self.istio_1_6)} if istio_version == ISTIO_1_6 else {}
        if self.helm_charts_dir is not None:
            edits["helm.chartsDir"] = str(self.helm_charts_dir)
        return edits

    def on(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """These stack-file edits, pointed at these charts for the Istio release they choose (1.6.14 by default)."""
        return {**overrides, **self.edits(overrides.get("istio.version", ISTIO_1_6))}

    def crds(self, istio_version: str) -> list[Path]:
        """The files of the base chart's crds/ folder, which Helm installs with the release but keeps out of its
        stored manifest (Istio 1.6; current Istio renders its CRDs as templates, so they are in the manifest)."""
        if not istio_version.startswith("1.6."):
            return []
        return sorted((self.istio_1_6 / "base" / "crds").glob("*.yaml"))

    def istio_crds(self, istio_version: str) -> list[dict]:
        """Every CustomResourceDefinition the release's base chart installs, as the chart ships them: Istio 1.6's
        crds/ folder, current Istio's files/crd-all.gen.yaml (which its templates/crds.yaml includes)."""
        if istio_version == ISTIO_1_6:
            texts = [path.read_text() for path in self.crds(istio_version)]
        else:
            texts = [self._base_chart_file(istio_version, "files/crd-all.gen.yaml")]
        return [document for text in texts for document in yaml.safe_load_all(text)
                if document and document.get("kind") == "CustomResourceDefinition"]

    def _base_chart_file(self, istio_version: str, member: str) -> str:
        base = next(chart for chart in pinned_charts() if chart.name == "base" and chart.version == istio_version)
        if self.helm_charts_dir is not None:
            found = local_chart(base, self.helm_charts_dir)
            if found.is_dir():
                return (found / member).read_text()
            archive = found.read_bytes()
        else:
            with urllib.request.urlopen(f"{base.repository}/{base.archive}", timeout=60) as answer:
                archive = answer.read()
        with tarfile.open(fileobj=io.BytesIO(archive)) as chart:
            return chart.extractfile(f"{base.name}/{member}").read().decode()


def _from_folder(folder: Path) -> RealCharts:
    istio = charts_dir(ISTIO_1_6, folder)
    missing = [str(istio / required) for required in REQUIRED_FILES if not (istio / required).is_file()]
    missing += [chart.archive for chart in pinned_charts() if not local_chart(chart, folder).exists()]
    if missing:
        pytest.fail(f"{folder} lacks charts the stacks pin: {', '.join(missing)}. {_how_to_provide()}")
    return RealCharts(istio, folder, str(folder))


def _unreachable(chart: Chart) -> str | None:
    try:
        with urllib.request.urlopen(f"{chart.repository}/index.yaml", timeout=15):
            return None
    except (urllib.error.URLError, OSError) as error:
        return f"{chart.repository} ({error})"


def _from_sources() -> RealCharts:
    cache = istio_charts.default_cache()
    try:
        istio = istio_charts.fetch_charts(ISTIO_1_6, cache, use_published_checksum=True)
    except (istio_charts.ChartFetchError, OSError) as error:
        pytest.fail(f"no {SHARED} and Istio {ISTIO_1_6}'s release archive could not be fetched ({error}). "
                    f"{_how_to_provide()}")
    unreachable = sorted({problem for chart in pinned_charts() if (problem := _unreachable(chart))})
    if unreachable:
        pytest.fail(f"no {SHARED} and these Helm repositories do not answer: {'; '.join(unreachable)}. {_how_to_provide()}")
    return RealCharts(istio, None, "Istio's release archive and the charts' Helm repositories")


def _how_to_provide() -> str:
    pulls = "; ".join(f"helm pull {chart.name} --repo {chart.repository} --version {chart.version}" for chart in pinned_charts())
    return (f"Provide the charts: set {ENV} to a folder holding `{pulls}` and Istio {ISTIO_1_6}'s release archive's "
            f"manifests/charts as istio-{ISTIO_1_6}/manifests/charts, or run where the Helm repositories and Istio's "
            f"release downloads are reachable.")


def real_charts() -> RealCharts:
    explicit = os.environ.get(ENV)
    if explicit:
        return _from_folder(Path(explicit))
    return _from_folder(SHARED) if SHARED.is_dir() else _from_sources()
