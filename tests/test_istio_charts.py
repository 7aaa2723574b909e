"""Tests for tools.istio_charts, using a small fake release archive (no network)."""

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from builders import istio_archive
from builders.istio_archive import charts_dir, missing_charts_message
from tools import istio_charts
from tools.istio_charts import ChartFetchError, charts_present, fetch_charts, main

VERSION = "1.6.14"
TOP = f"istio-{VERSION}"
CHART_FILES = {
    f"{TOP}/manifests/charts/base/Chart.yaml": "name: base\n",
    f"{TOP}/manifests/charts/istio-control/istio-discovery/Chart.yaml": "name: istio-discovery\n",
    f"{TOP}/manifests/charts/gateways/istio-ingress/Chart.yaml": "name: istio-ingress\n",
    f"{TOP}/manifests/charts/global.yaml": "global: {}\n",
    f"{TOP}/manifests/charts/base/templates/crds.yaml": "kind: List\n",
}
# Present in real archives but outside the charts tree: must not be extracted.
OUTSIDE_FILE = f"{TOP}/bin/istioctl"


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def make_archive(path: Path, extra=None) -> str:
    """Write a fake release archive; return its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in CHART_FILES.items():
            _add(tar, name, text.encode())
        _add(tar, OUTSIDE_FILE, b"#!/bin/sh\n", mode=0o755)
        for add in extra or ():
            add(tar)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "release" / f"istio-{VERSION}-linux-amd64.tar.gz"
    path.parent.mkdir()
    return path, make_archive(path)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_fetch_extracts_only_charts_and_writes_marker(archive, cache):
    path, digest = archive
    result = fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest)

    assert result == charts_dir(VERSION, cache)
    assert charts_present(VERSION, cache)
    assert (result / "base" / "templates" / "crds.yaml").is_file()
    assert not (cache / OUTSIDE_FILE).exists()
    assert (cache / TOP / istio_charts.MARKER_NAME).read_text().strip() == digest
    # Staging directories are gone; only the final tree is left.
    assert sorted(p.name for p in cache.iterdir()) == [TOP]


def test_second_fetch_does_not_download(archive, cache):
    path, digest = archive
    fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest)
    path.unlink()  # any download attempt would now fail
    assert fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest) == charts_dir(VERSION, cache)


def test_wrong_hash_refused_and_cache_untouched(archive, cache):
    path, digest = archive
    wrong = "0" * 64
    with pytest.raises(ChartFetchError) as err:
        fetch_charts(VERSION, cache, url=path.as_uri(), sha256=wrong)
    message = str(err.value)
    assert wrong in message and digest in message and path.as_uri() in message
    assert not cache.exists()


def test_changed_hash_refetches(archive, cache, tmp_path):
    # A marker for another archive must not satisfy a request for this one.
    path, digest = archive
    fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest)
    other = tmp_path / "other.tar.gz"
    other_digest = make_archive(other, extra=[lambda t: _add(t, f"{TOP}/manifests/charts/new.yaml", b"x")])
    fetch_charts(VERSION, cache, url=other.as_uri(), sha256=other_digest)
    assert (charts_dir(VERSION, cache) / "new.yaml").is_file()
    assert (cache / TOP / istio_charts.MARKER_NAME).read_text().strip() == other_digest
    assert sorted(p.name for p in cache.iterdir()) == [TOP]


@pytest.mark.parametrize(
    "bad_member",
    [
        lambda t: _add(t, "../evil", b"pwned"),
        lambda t: _add(t, "/tmp/evil", b"pwned"),
        lambda t: _add(t, f"{TOP}/manifests/charts/link", type=tarfile.SYMTYPE, linkname="../../../../evil"),
        lambda t: _add(t, f"{TOP}/manifests/charts/hard", type=tarfile.LNKTYPE, linkname=f"{TOP}/bin/istioctl"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "hardlink-out"],
)
def test_unsafe_archive_refused(tmp_path, cache, bad_member):
    path = tmp_path / "bad.tar.gz"
    digest = make_archive(path, extra=[bad_member])
    with pytest.raises(ChartFetchError):
        fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest)
    assert not (tmp_path / "evil").exists()
    assert not charts_present(VERSION, cache)
    assert not (cache / TOP).exists()


def test_archive_without_charts_refused(tmp_path, cache):
    path = tmp_path / "empty.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, OUTSIDE_FILE, b"x")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ChartFetchError):
        fetch_charts(VERSION, cache, url=path.as_uri(), sha256=digest)


def test_unpinned_hash_names_checksum_url(cache, monkeypatch):
    monkeypatch.setitem(
        istio_charts.PINNED_RELEASES, VERSION,
        istio_archive.Release(VERSION, istio_archive.release_url(VERSION), None),
    )
    with pytest.raises(ChartFetchError, match=r"--sha256") as err:
        fetch_charts(VERSION, cache)
    assert f"istio-{VERSION}-linux-amd64.tar.gz.sha256" in str(err.value)
    assert not cache.exists()


def test_cli_fetch_and_path(archive, cache, capsys):
    path, digest = archive
    assert main(["path", "--version", VERSION, "--cache", str(cache)]) == 1
    assert "not found" in capsys.readouterr().err

    args = ["fetch", "--version", VERSION, "--cache", str(cache), "--url", path.as_uri()]
    assert main(args + ["--sha256", "f" * 64]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: sha256 mismatch") and err.count("\n") == 1

    assert main(args + ["--sha256", digest.upper()]) == 0
    assert capsys.readouterr().out.strip() == str(charts_dir(VERSION, cache))

    assert main(["path", "--version", VERSION, "--cache", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(charts_dir(VERSION, cache))


def test_cli_cache_from_env(archive, cache, monkeypatch, capsys):
    path, digest = archive
    monkeypatch.setenv(istio_charts.CACHE_ENV, str(cache))
    assert main(["fetch", "--version", VERSION, "--url", path.as_uri(), "--sha256", digest]) == 0
    capsys.readouterr()
    assert main(["path", "--version", VERSION]) == 0
    assert capsys.readouterr().out.strip() == str(charts_dir(VERSION, cache))


def test_missing_charts_message_has_commands(cache):
    default_msg = missing_charts_message(VERSION, istio_charts.DEFAULT_CACHE)
    assert "make istio-charts" in default_msg
    assert f"python -m tools.istio_charts fetch --version {VERSION}" in default_msg
    assert str(charts_dir(VERSION, istio_charts.DEFAULT_CACHE)) in default_msg

    # A non-default cache must be part of the command, or it would fetch elsewhere.
    custom_msg = missing_charts_message(VERSION, cache)
    assert f"python -m tools.istio_charts fetch --version {VERSION} --cache {cache}" in custom_msg


def test_published_checksum_verifies_when_nothing_is_pinned(archive, cache, capsys):
    path, digest = archive
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    fetch_charts(VERSION, cache, url=path.as_uri(), use_published_checksum=True)
    assert charts_present(VERSION, cache)
    assert digest in capsys.readouterr().err  # the user is told which digest to pin


def test_published_checksum_mismatch_is_refused(archive, cache):
    path, digest = archive
    Path(f"{path}.sha256").write_text(f"{'1' * 64}  {path.name}\n")
    with pytest.raises(ChartFetchError, match="sha256 mismatch"):
        fetch_charts(VERSION, cache, url=path.as_uri(), use_published_checksum=True)
    assert not cache.exists()


# ---- istioctl of the same release ----------------------------------------------------------------

def test_istioctl_comes_out_of_the_verified_archive_and_is_cached(archive, cache, capsys):
    path, digest = archive
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    binary = istio_charts.fetch_istioctl(VERSION, cache, url=path.as_uri())
    assert binary == istio_charts.istioctl_path(VERSION, cache) and binary.read_bytes() == b"#!/bin/sh\n"
    assert binary.stat().st_mode & 0o111, "istioctl must be executable"
    path.unlink()  # a second call must not download again
    assert istio_charts.fetch_istioctl(VERSION, cache, url=path.as_uri()) == binary
    assert main(["istioctl", "--version", VERSION, "--cache", str(cache), "--url", path.as_uri()]) == 0
    assert capsys.readouterr().out.strip() == str(binary)


def test_istioctl_from_an_archive_that_fails_its_checksum_is_refused(archive, cache):
    path, _ = archive
    Path(f"{path}.sha256").write_text(f"{'1' * 64}  {path.name}\n")
    with pytest.raises(ChartFetchError, match="sha256 mismatch"):
        istio_charts.fetch_istioctl(VERSION, cache, url=path.as_uri())
    assert not istio_charts.istioctl_path(VERSION, cache).exists()


def test_an_archive_without_istioctl_is_refused(tmp_path, cache):
    path = tmp_path / "no-istioctl.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, f"{TOP}/manifests/charts/global.yaml", b"global: {}\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ChartFetchError, match=f"no {TOP}/bin/istioctl"):
        istio_charts.fetch_istioctl(VERSION, cache, url=path.as_uri(), sha256=digest)
