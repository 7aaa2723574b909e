"""Which Helm chart each release installs, and from where: its repository, a local folder of pulled charts, or (Istio
1.6, which published no Helm repository) its release archive's charts folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi

from builders import istio_archive

if TYPE_CHECKING:
    from config.settings import HelmSettings, IstioSettings

ISTIO_HELM_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ChartsMissingError(pulumi.RunError):
    """A chart the stack needs is not on disk; raised before any resource is registered."""


@dataclass(frozen=True)
class Chart:
    """A chart pinned at one version in its Helm repository."""

    repository: str
    name: str
    version: str

    @property
    def archive(self) -> str:
        """The file `helm pull` writes for it."""
        return f"{self.name}-{self.version}.tgz"


@dataclass(frozen=True)
class ChartRef:
    """What a Helm release is given: a repository chart with its version, or a local chart path alone."""

    chart: str
    version: str | None = None
    repository: str | None = None


def chart_ref(chart: Chart, charts_dir: str | None) -> ChartRef:
    if charts_dir is None:
        return ChartRef(chart.name, chart.version, chart.repository)
    return ChartRef(str(local_chart(chart, Path(charts_dir))))


def local_chart(chart: Chart, folder: Path) -> Path:
    archive, unpacked = folder / chart.archive, folder / f"{chart.name}-{chart.version}"
    return archive if archive.is_file() or not unpacked.is_dir() else unpacked


def require_local_charts(charts: list[Chart], charts_dir: str | None, stack_file: str) -> None:
    """With helm.chartsDir set, every chart must be there; one error lists all that are not."""
    if charts_dir is None:
        return
    missing = [chart for chart in charts if not local_chart(chart, Path(charts_dir)).exists()]
    if missing:
        pulls = "\n".join(f"  helm pull {chart.name} --repo {chart.repository} --version {chart.version} -d {charts_dir}"
                          for chart in missing)
        raise ChartsMissingError(
            f"{stack_file}: helm.chartsDir is {charts_dir}, which lacks {', '.join(chart.archive for chart in missing)}. "
            f"Pull them there:\n{pulls}\nor remove helm.chartsDir to install from the repositories.")


@dataclass(frozen=True)
class ChartSource:
    """Where the three charts come from: a local folder (1.6, release archive) or the Helm repository."""

    base: ChartRef
    istiod: ChartRef
    gateway: ChartRef
    global_values: str | None = None  # 1.6 only: global.yaml, which istiod and gateway charts read
    dashboards: str | None = None  # 1.6 only: the release's own Grafana dashboards, shipped beside its charts


def repository_charts(istio: IstioSettings) -> list[Chart]:
    """The charts Istio publishes in its Helm repository for this release; 1.6 published none."""
    if istio.minor == "1.6":
        return []
    return [Chart(ISTIO_HELM_REPOSITORY, name, istio.version) for name in ("base", "istiod", "gateway")]


def chart_source(istio: IstioSettings, helm: HelmSettings) -> ChartSource:
    if istio.minor != "1.6":
        base, istiod, gateway = (chart_ref(chart, helm.charts_dir) for chart in repository_charts(istio))
        return ChartSource(base, istiod, gateway)
    cache = Path(os.environ.get(istio_archive.CACHE_ENV, istio_archive.DEFAULT_CACHE))
    charts = Path(istio.charts_dir) if istio.charts_dir else istio_archive.charts_dir(istio.version, cache)
    missing = [required for required in istio_archive.REQUIRED_FILES if not (charts / required).is_file()]
    if missing and istio.charts_dir:
        raise ChartsMissingError(f"istio.chartsDir is {charts}, which lacks {', '.join(missing)}: point it at the "
                                 f"manifests/charts folder of the Istio {istio.version} release archive")
    if missing:
        raise ChartsMissingError(istio_archive.missing_charts_message(istio.version, cache))

    def local(path: Path) -> str:
        # Relative to the project when possible, so previews and renders read the same on every machine.
        return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)

    return ChartSource(
        base=ChartRef(local(charts / "base")),
        istiod=ChartRef(local(charts / "istio-control" / "istio-discovery")),
        gateway=ChartRef(local(charts / "gateways" / "istio-ingress")),
        global_values=local(charts / "global.yaml"),
        dashboards=local(charts / "istio-telemetry" / "grafana" / "dashboards"),
    )
