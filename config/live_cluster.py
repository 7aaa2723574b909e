"""The Kubernetes version of the cluster the stack deploys to, where the program can see it.

The Kubernetes provider finds its cluster from `kubernetes:kubeconfig` / `kubernetes:context` / `kubernetes:cluster`,
else from $KUBECONFIG, else ~/.kube/config; so does this, and asks that API server for /version (which every
cluster answers to any client it can reach, signed in or not). With no kubeconfig, an unreachable server or a refusal,
the version is unknown and nothing is checked: a preview without cluster access still runs.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.rules import Problem
from config.settings import Settings

TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class LiveCluster:
    server: str
    version: str  # "1.33.13"

    @property
    def minor(self) -> int:
        return int(self.version.split(".")[1])


def cluster_problems(settings: Settings, live: LiveCluster | None) -> list[Problem]:
    if live is None or live.minor == settings.kubernetes_minor:
        return []
    minor = ".".join(live.version.split(".")[:2])
    return [Problem("kubernetesVersion", (
        f"is {settings.kubernetes_version}, but the cluster this stack deploys to ({live.server}) runs Kubernetes "
        f"{live.version}; set kubernetesVersion: \"{minor}\" (it picks the API versions objects are sent with and is "
        "checked against Istio's supported range), or point the stack at the cluster it was written for"))]


def live_cluster(provider_config: Mapping[str, str | None], environ: Mapping[str, str] = os.environ) -> LiveCluster | None:
    """The cluster the Kubernetes provider would use, with its version; None where it cannot be seen."""
    if provider_config.get("rendering"):
        return None
    kubeconfig, folder = _kubeconfig(provider_config.get("kubeconfig"), environ)
    if kubeconfig is None:
        return None
    try:
        context_name = provider_config.get("context") or kubeconfig.get("current-context")
        context = _named(kubeconfig, "contexts", context_name).get("context", {})
        cluster = _named(kubeconfig, "clusters", provider_config.get("cluster") or context.get("cluster")).get("cluster", {})
        user = _named(kubeconfig, "users", context.get("user")).get("user", {}) if context.get("user") else {}
        server = cluster["server"].rstrip("/")
        with _tls(cluster, user, folder) as tls:
            request = urllib.request.Request(f"{server}/version", headers=_auth_headers(user))
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=tls) as response:  # noqa: S310 - the kubeconfig's own server
                version = json.loads(response.read())["gitVersion"]
    except (OSError, KeyError, ValueError, TypeError, ssl.SSLError):
        return None
    return LiveCluster(server=server, version=version.removeprefix("v").split("-")[0].split("+")[0])


def _kubeconfig(configured: str | None, environ: Mapping[str, str]) -> tuple[dict[str, Any] | None, Path]:
    """The merged kubeconfig and the folder relative paths in it are read from (kubectl's rules: first one wins)."""
    if configured:
        path = Path(configured).expanduser()
        if len(configured) < 4096 and "\n" not in configured and path.is_file():
            return _load(path), path.parent
        return _load_text(configured), Path.cwd()
    paths = [Path(part).expanduser() for part in environ.get("KUBECONFIG", "").split(os.pathsep) if part] or \
        [Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"]
    merged: dict[str, Any] = {}
    found = [path for path in paths if path.is_file()]
    for path in found:
        loaded = _load(path) or {}
        merged.setdefault("current-context", loaded.get("current-context"))
        for section in ("contexts", "clusters", "users"):
            known = {entry.get("name") for entry in merged.get(section, [])}
            merged.setdefault(section, []).extend(entry for entry in loaded.get(section) or [] if entry.get("name") not in known)
    return (merged, found[0].parent) if found else (None, Path.cwd())


def _load(path: Path) -> dict[str, Any] | None:
    with suppress(OSError):
        return _load_text(path.read_text())
    return None


def _load_text(text: str) -> dict[str, Any] | None:
    with suppress(yaml.YAMLError):
        loaded = yaml.safe_load(text)
        return loaded if isinstance(loaded, dict) else None
    return None


def _named(kubeconfig: Mapping[str, Any], section: str, name: str | None) -> dict[str, Any]:
    return next(entry for entry in kubeconfig.get(section) or [] if entry.get("name") == name)


def _auth_headers(user: Mapping[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}


@contextmanager
def _tls(cluster: Mapping[str, Any], user: Mapping[str, Any], folder: Path) -> Iterator[ssl.SSLContext]:
    """The server's CA and the user's client certificate, from the kubeconfig's *-data fields or files."""
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(folder / cluster["certificate-authority"]))
    with tempfile.TemporaryDirectory() as scratch:
        certificate, key = (_pem(user, field, folder, Path(scratch)) for field in ("client-certificate", "client-key"))
        if certificate and key:
            context.load_cert_chain(certificate, key)
        yield context


def _pem(user: Mapping[str, Any], field: str, folder: Path, scratch: Path) -> str | None:
    if user.get(f"{field}-data"):
        path = scratch / field
        path.write_bytes(base64.b64decode(user[f"{field}-data"]))
        path.chmod(0o600)
        return str(path)
    return str(folder / user[field]) if user.get(field) else None
