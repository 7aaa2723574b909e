"""Where the tests that install charts take them from: the pinned charts or their sources, never a stand-in."""

from __future__ import annotations

import pytest

from builders.istio_archive import REQUIRED_FILES
from harness import real_charts
from harness.pulumi_cli import pinned_charts
from tools import istio_charts


def test_a_folder_of_the_pinned_charts_and_istio_1_6_s_archive_layout_is_used_as_it_is(tmp_path, monkeypatch):
    for chart in pinned_charts():
        (tmp_path / f"{chart.name}-{chart.version}").mkdir()
    istio = tmp_path / "istio-1.6.14" / "manifests" / "charts"
    for required in REQUIRED_FILES:
        (istio / required).parent.mkdir(parents=True, exist_ok=True)
        (istio / required).write_text("name: x\n")
    (istio / "base" / "crds").mkdir()
    (istio / "base" / "crds" / "crd-all.gen.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setenv(real_charts.ENV, str(tmp_path))
    charts = real_charts.real_charts()
    assert charts.helm_charts_dir == tmp_path and charts.istio_1_6 == istio
    assert charts.edits("1.6.14") == {"istio.chartsDir": str(istio), "helm.chartsDir": str(tmp_path)}
    assert charts.edits("1.30.3") == {"helm.chartsDir": str(tmp_path)}
    assert charts.crds("1.6.14") == [istio / "base" / "crds" / "crd-all.gen.yaml"] and charts.crds("1.30.3") == []


def test_a_folder_without_the_charts_fails_naming_what_is_missing_and_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv(real_charts.ENV, str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failed:
        real_charts.real_charts()
    message = str(failed.value)
    assert all(chart.archive in message for chart in pinned_charts())
    assert "helm pull kiali-server --repo https://kiali.org/helm-charts --version 1.22.0" in message
    assert real_charts.ENV in message


def test_without_the_folder_or_the_sources_the_test_fails_instead_of_skipping(tmp_path, monkeypatch):
    monkeypatch.delenv(real_charts.ENV, raising=False)
    monkeypatch.setattr(real_charts, "SHARED", tmp_path / "absent")

    def unreachable(*args, **kwargs):
        raise istio_charts.ChartFetchError("the release download is unreachable")

    monkeypatch.setattr(istio_charts, "fetch_charts", unreachable)
    with pytest.raises(pytest.fail.Exception) as failed:
        real_charts.real_charts()
    assert "the release download is unreachable" in str(failed.value) and "Provide the charts" in str(failed.value)


def test_without_the_folder_the_releases_install_from_the_repositories_when_they_answer(tmp_path, monkeypatch):
    monkeypatch.delenv(real_charts.ENV, raising=False)
    monkeypatch.setattr(real_charts, "SHARED", tmp_path / "absent")
    monkeypatch.setattr(istio_charts, "fetch_charts", lambda version, cache, **_: tmp_path / f"istio-{version}")
    asked = []
    monkeypatch.setattr(real_charts, "_unreachable", lambda chart: asked.append(chart.repository))
    charts = real_charts.real_charts()
    assert charts.helm_charts_dir is None and charts.edits("1.30.3") == {}
    assert charts.istio_1_6 == tmp_path / "istio-1.6.14"
    assert set(asked) == {chart.repository for chart in pinned_charts()}
