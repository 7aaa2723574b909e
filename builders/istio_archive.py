"""Where the Istio 1.6 charts live: they ship only inside the release archive, which `make istio-charts` caches."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / ".cache" / "istio"
CACHE_ENV = "ISTIO_CHARTS_CACHE"

# The charts this project installs, plus the shared values they all read.
REQUIRED_FILES = (
    "base/Chart.yaml",
    "istio-control/istio-discovery/Chart.yaml",
    "gateways/istio-ingress/Chart.yaml",
    "global.yaml",
)

_URL_TEMPLATE = (
    "https://github.com/istio/istio/releases/download/"
    "{v}/istio-{v}-linux-amd64.tar.gz"
)


class Release(NamedTuple):
    version: str
    url: str
    sha256: str | None  # None: no verified hash pinned yet


def release_url(version: str) -> str:
    # The charts are platform independent; the linux-amd64 archive is as
    # good a source as any other.
    return _URL_TEMPLATE.format(v=version)


# sha256 is None on purpose: the published value for this archive has not
# been verified here, so fetching requires an explicit --sha256 (taken from
# the <url>.sha256 file Istio publishes next to the archive). Once checked,
# put the hash here so `make istio-charts` works without arguments.
PINNED_RELEASES: dict[str, Release] = {
    "1.6.14": Release("1.6.14", release_url("1.6.14"), None),
}


def charts_dir(version: str, cache_root: Path) -> Path:
    return Path(cache_root) / f"istio-{version}" / "manifests" / "charts"


def missing_charts_message(version: str, cache_root: Path) -> str:
    """Text shown by the Pulumi program when the charts are not cached."""
    cmd = f"python -m tools.istio_charts fetch --version {version}"
    if Path(cache_root).resolve() != DEFAULT_CACHE.resolve():
        cmd += f" --cache {cache_root}"
    lines = [
        f"Istio {version} Helm charts not found in {charts_dir(version, cache_root)}.",
        "They ship only inside the Istio release archive, not in a Helm repository.",
        "Fetch them (from the repository root) with:",
        "    make istio-charts",
        "or equivalently:",
        f"    {cmd}",
    ]
    pinned = PINNED_RELEASES.get(version)
    if pinned is None or pinned.sha256 is None:
        url = pinned.url if pinned else release_url(version)
        lines.append(
            f"No sha256 is pinned for {version}: add --sha256 <hex> after checking {url}.sha256"
        )
    return "\n".join(lines)
