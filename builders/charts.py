"""Which Helm chart each release installs, and from where: its repository, or a local folder of pulled charts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi


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
