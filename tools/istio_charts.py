"""Fetch the Istio 1.6 Helm charts, and istioctl of any release, into a local cache.

Istio 1.6 charts are not published in any Helm repository; they ship only
inside the release archive (istio-<version>/manifests/charts/). This module
downloads that archive, verifies its sha256 before touching it, and extracts
just the charts tree into <cache>/istio-<version>/manifests/charts.

    python -m tools.istio_charts fetch --version 1.6.14 [--url URL] [--sha256 HEX] [--cache DIR]
    python -m tools.istio_charts path --version 1.6.14
    python -m tools.istio_charts istioctl --version 1.30.3   # prints the path of that release's istioctl

istioctl comes out of the same archive (istio-<version>/bin/istioctl), checked the same way, so `make diagnose`
talks to the mesh with the istioctl of the mesh's own release.

Standard library only, so it runs before any project dependency is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from builders.istio_archive import (
    CACHE_ENV,
    DEFAULT_CACHE,
    PINNED_RELEASES,
    REQUIRED_FILES,
    charts_dir,
    release_url,
)
from tools.errors import CommandError

# Name of the file, inside <cache>/istio-<version>/, recording the sha256 of
# the archive the charts were extracted from. Its presence means "verified".
MARKER_NAME = ".archive-sha256"

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ChartFetchError(CommandError):
    """The charts could not be fetched, verified or extracted."""


def _marker_path(version: str, cache_root: Path) -> Path:
    return Path(cache_root) / f"istio-{version}" / MARKER_NAME


def charts_present(version: str, cache_root: Path) -> bool:
    root = charts_dir(version, cache_root)
    return all((root / rel).is_file() for rel in REQUIRED_FILES)


def _read_marker(version: str, cache_root: Path) -> str | None:
    try:
        return _marker_path(version, cache_root).read_text().strip() or None
    except OSError:
        return None


def _normalize_sha256(value: str) -> str:
    hexdigest = value.strip().lower()
    if hexdigest.startswith("sha256:"):
        hexdigest = hexdigest[len("sha256:"):]
    if not _HEX64.fullmatch(hexdigest):
        raise ChartFetchError(f"not a sha256 hex digest: {value!r}")
    return hexdigest


def _download(url: str, dest: Path) -> str:
    """Stream url into dest and return the sha256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ChartFetchError(f"download of {url} failed: {exc}") from exc
    return digest.hexdigest()


def published_sha256(url: str) -> str:
    """The digest in the `<url>.sha256` file Istio publishes next to each archive."""
    try:
        with urllib.request.urlopen(f"{url}.sha256", timeout=60) as resp:
            text = resp.read(4096).decode("ascii", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ChartFetchError(f"cannot read the published checksum {url}.sha256: {exc}") from exc
    return _normalize_sha256(text.split()[0] if text.split() else "")


def _is_inside(path: str, prefix: str) -> bool:
    """True if the normalized archive path stays under prefix."""
    norm = posixpath.normpath(path)
    return norm == prefix.rstrip("/") or norm.startswith(prefix)


def _select_chart_members(tar: tarfile.TarFile, version: str) -> list[tarfile.TarInfo]:
    """Validate every member, then return those under the charts directory.

    The whole archive is refused on any unsafe member, even one we would not
    extract: a verified archive containing such entries is not one we trust.
    """
    prefix = f"istio-{version}/manifests/charts/"
    selected = []
    for member in tar.getmembers():
        name = member.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or posixpath.isabs(name) or ".." in parts:
            raise ChartFetchError(f"unsafe path in archive: {name!r}")
        if not _is_inside(name, prefix):
            continue
        if member.issym():
            target = posixpath.join(posixpath.dirname(name), member.linkname)
            if posixpath.isabs(member.linkname) or not _is_inside(target, prefix):
                raise ChartFetchError(
                    f"symlink escapes the charts directory: {name!r} -> {member.linkname!r}"
                )
        elif member.islnk():
            if not _is_inside(member.linkname, prefix) or ".." in member.linkname.split("/"):
                raise ChartFetchError(
                    f"hardlink escapes the charts directory: {name!r} -> {member.linkname!r}"
                )
        elif not (member.isfile() or member.isdir()):
            raise ChartFetchError(f"unsupported member type in archive: {name!r}")
        selected.append(member)
    if not selected:
        raise ChartFetchError(f"archive has no {prefix} directory")
    return selected


def _extract(archive: Path, version: str, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _select_chart_members(tar, version)
            # The "data" filter is a second line of defence (it also drops
            # setuid bits and device files) on Pythons that have it.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **kwargs)
    except (tarfile.TarError, OSError) as exc:
        raise ChartFetchError(f"cannot extract {archive.name}: {exc}") from exc


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def fetch_charts(
    version: str,
    cache_root: Path,
    url: str | None = None,
    sha256: str | None = None,
    use_published_checksum: bool = False,
) -> Path:
    """Make sure the charts for version are in cache_root; return charts_dir.

    Idempotent: if the charts are present and the marker records an archive
    hash that matches the expected one, nothing is downloaded.
    """
    cache_root = Path(cache_root)
    url, expected = _source(version, url, sha256)

    marker = _read_marker(version, cache_root)
    if charts_present(version, cache_root) and marker:
        # With no expected hash at all, a marker is still proof that the
        # charts were verified against a hash the user supplied earlier.
        if expected is None or marker == expected:
            return charts_dir(version, cache_root)

    expected = _required_sha256(version, url, expected, use_published_checksum)
    with _verified_archive(url, expected) as archive:
        # Extract into a staging dir on the same filesystem, then rename into
        # place, so readers never see a half-extracted tree.
        cache_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".istio-{version}-", dir=cache_root))
        try:
            _extract(archive, version, staging)
            if not charts_present(version, staging):
                raise ChartFetchError(
                    f"archive from {url} lacks the expected charts: {', '.join(REQUIRED_FILES)}"
                )
            _marker_path(version, staging).write_text(expected + "\n")

            target = cache_root / f"istio-{version}"
            if target.exists():
                # Stale or differently-hashed tree: move it aside first so
                # the rename below cannot fail on a non-empty directory.
                old = Path(tempfile.mkdtemp(prefix=f".old-istio-{version}-", dir=cache_root))
                os.replace(target, old / "tree")
                _remove_tree(old)
            os.replace(staging / f"istio-{version}", target)
        finally:
            _remove_tree(staging)

    return charts_dir(version, cache_root)


def _source(version: str, url: str | None, sha256: str | None) -> tuple[str, str | None]:
    """The archive's URL and the sha256 it must have, if one is given or pinned."""
    pinned = PINNED_RELEASES.get(version)
    expected = sha256 or (pinned.sha256 if pinned else None)
    return url or (pinned.url if pinned else release_url(version)), _normalize_sha256(expected) if expected else None


def _required_sha256(version: str, url: str, expected: str | None, use_published_checksum: bool) -> str:
    if expected is None and use_published_checksum:
        expected = published_sha256(url)
        print(
            f"warning: no sha256 is pinned for Istio {version}; verifying against the checksum "
            f"published beside the archive ({expected}). Pin it in PINNED_RELEASES once checked.",
            file=sys.stderr,
        )
    if expected is None:
        raise ChartFetchError(
            f"no sha256 is pinned for Istio {version}; check the published "
            f"checksum at {url}.sha256 and rerun with --sha256 <hex>"
        )
    return expected


@contextlib.contextmanager
def _verified_archive(url: str, expected: str) -> Iterator[Path]:
    """The archive, downloaded outside the cache (a failed or mismatched download leaves no trace there) and checked."""
    with tempfile.TemporaryDirectory(prefix="istio-archive-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"  # "r:*" sniffs compression, name is cosmetic
        actual = _download(url, archive)
        if actual != expected:
            raise ChartFetchError(
                f"sha256 mismatch for {url}: expected {expected}, got {actual}"
            )
        yield archive


def istioctl_path(version: str, cache_root: Path) -> Path:
    return Path(cache_root) / f"istio-{version}" / "bin" / "istioctl"


def fetch_istioctl(version: str, cache_root: Path, url: str | None = None, sha256: str | None = None) -> Path:
    """istioctl of `version`, from the same release archive as the charts and verified the same way (the pinned or
    given sha256, else the one published beside the archive); cached beside the charts."""
    target = istioctl_path(version, cache_root)
    if target.is_file():
        return target  # written only after its archive was verified
    url, expected = _source(version, url, sha256)
    member_name = f"istio-{version}/bin/istioctl"
    with _verified_archive(url, _required_sha256(version, url, expected, True)) as archive:
        try:
            with tarfile.open(archive, "r:*") as tar:
                member = tar.getmember(member_name)
                binary = tar.extractfile(member) if member.isfile() else None
                if binary is None:
                    raise ChartFetchError(f"{member_name} in {url} is not a regular file")
                data = binary.read()
        except (KeyError, tarfile.TarError) as exc:
            raise ChartFetchError(f"archive from {url} has no {member_name}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".istioctl.partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


def default_cache() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else DEFAULT_CACHE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.istio_charts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch", help="download, verify and extract the charts")
    path = sub.add_parser("path", help="print the charts directory; exit 1 if absent")
    istioctl = sub.add_parser("istioctl", help="fetch that release's istioctl (verified) and print its path")
    for p in (fetch, path, istioctl):
        p.add_argument("--version", required=True)
        p.add_argument("--cache", type=Path, default=None,
                       help=f"cache root (default: ${CACHE_ENV} or {DEFAULT_CACHE})")
    for p in (fetch, istioctl):
        p.add_argument("--url", default=None, help="archive URL (file:// works)")
        p.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    fetch.add_argument("--use-published-checksum", action="store_true",
                       help="when no sha256 is pinned or given, verify against <url>.sha256 from the release")

    args = parser.parse_args(argv)
    cache_root = args.cache or default_cache()

    if args.command == "path":
        if not charts_present(args.version, cache_root):
            print(f"error: Istio {args.version} charts not found under {cache_root}", file=sys.stderr)
            return 1
        print(charts_dir(args.version, cache_root))
        return 0

    try:
        if args.command == "istioctl":
            print(fetch_istioctl(args.version, cache_root, url=args.url, sha256=args.sha256))
        else:
            print(fetch_charts(args.version, cache_root, url=args.url, sha256=args.sha256,
                               use_published_checksum=args.use_published_checksum))
    except ChartFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
