"""Test-wide setup: a stand-in for the Istio 1.6 chart cache, since the release archive cannot be fetched offline."""

import os
from pathlib import Path

import pytest

from tools import istio_charts


def make_fake_chart_cache(root: Path, version: str = "1.6.14") -> Path:
    charts = istio_charts.charts_dir(version, root)
    for required in istio_charts.REQUIRED_FILES:
        (charts / required).parent.mkdir(parents=True, exist_ok=True)
        (charts / required).write_text("# stand-in for the chart from the Istio release archive\n")
    return root


@pytest.fixture(autouse=True, scope="session")
def istio_chart_cache(tmp_path_factory):
    root = make_fake_chart_cache(tmp_path_factory.mktemp("istio-charts"))
    previous = os.environ.get(istio_charts.CACHE_ENV)
    os.environ[istio_charts.CACHE_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(istio_charts.CACHE_ENV, None)
    else:
        os.environ[istio_charts.CACHE_ENV] = previous
