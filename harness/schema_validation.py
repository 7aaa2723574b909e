"""Validate rendered manifests against the schemas of a given Kubernetes / Istio release.

Kubernetes objects are checked against the strict JSON schemas shipped by the
``kubernetes-validate`` package (unknown fields are errors), for the exact minor
version asked for.  1.25+ come with the installed package; 1.10-1.24 come from an
older release unpacked into a side folder, see ``LEGACY_PIP_COMMAND``.  An
apiVersion/kind that the version does not serve is reported as an error, which is
how the project checks that it picked API versions the target cluster serves.

Istio custom resources are checked against the CRDs of the Istio release, taken from
the same charts the real-cluster tier installs (``harness/real_charts.py``: the base
chart's CRDs, from ``../shared/charts`` or ``$BEE_TRAVELS_CHARTS`` here, Istio's
release archive and Helm repository elsewhere), with unknown fields treated as
errors like ``kubectl apply --validate=strict``. Missing schemas fail the test that
needs them, saying how to provide them; they never skip it.

Limitations:
- CEL rules (``x-kubernetes-validations``, present in the Istio 1.30 CRDs) are not
  evaluated; only the structural OpenAPI schema is checked.
- ``format`` is not checked (e.g. date-time, int32 ranges), as the API server's
  OpenAPI schemas leave most of that to server-side validation anyway.
- Schema validation is not admission: server-side defaulting, immutability and
  cross-field checks (e.g. selector must match template labels) are not covered.
- The 1.10-1.24 schemas type resource quantities as string-or-integer, so a
  fractional number such as ``cpu: 0.5`` fails there; write quantities as strings.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

REPO_ROOT = Path(__file__).resolve().parent.parent

LEGACY_PIP_COMMAND = (
    "pip install --no-deps --target .cache/kubernetes-validate-legacy kubernetes-validate==1.24.1"
)
LEGACY_DEFAULT_DIR = (
    REPO_ROOT / ".cache/kubernetes-validate-legacy/kubernetes_validate/kubernetes-json-schema"
)
ISTIO_RELEASES = {"1.6": "1.6.14", "1.30": "1.30.3"}

# Groups under k8s.io that are CRDs or aggregated APIs, not built-in schemas.
_NON_BUILTIN_K8S_IO_GROUPS = {"gateway.networking.k8s.io", "snapshot.storage.k8s.io", "metrics.k8s.io"}
_CRD_TOP_LEVEL_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}


class SchemaUnavailable(Exception):
    """The schemas for the requested release are not on this machine."""


# ---------------------------------------------------------------- shared bits


def _minor(version: str) -> str:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(?:\d+|x))?$", str(version).strip())
    if not match:
        raise ValueError(f"not a version: {version!r} (expected e.g. '1.18' or '1.18.20')")
    return f"{match.group(1)}.{match.group(2)}"


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _describe(obj: dict) -> str:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "<unnamed>")
    namespace = metadata.get("namespace")
    return f"{obj.get('kind', '<no kind>')} {namespace + '/' if namespace else ''}{name}"


def _json_path(parts) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def _drop_nulls(value: Any) -> Any:
    # The API server treats an explicit null as "unset", and the pre-1.25 schemas
    # do not allow null, so nulls must not count as values.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _format_errors(validator: jsonschema.protocols.Validator, instance: Any, prefix: tuple, ident: str) -> list[str]:
    errors = []
    for error in validator.iter_errors(instance):
        path = prefix + tuple(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            # One line per unknown field, with the field in the path, like kubectl's
            # 'unknown field "spec.replica"'.
            known = error.schema.get("properties", {})
            patterns = error.schema.get("patternProperties", {})
            for key in error.instance:
                if key not in known and not any(re.search(p, key) for p in patterns):
                    errors.append(f"{ident}: {_json_path(path + (key,))}: unknown field {key!r}")
            continue
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        errors.append(f"{ident}: {_json_path(path)}: {message}")
    return sorted(errors)


# ---------------------------------------------------------------- Kubernetes


def _installed_schema_dir() -> Path | None:
    # Located without importing, so the package's own dependencies are not needed.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"
    return path if path.is_dir() else None


def legacy_schema_dir() -> Path:
    return Path(os.environ.get("K8S_LEGACY_SCHEMAS") or LEGACY_DEFAULT_DIR)


def _kubernetes_schema_folder(minor: str) -> Path | None:
    for base in (_installed_schema_dir(), legacy_schema_dir()):
        if base is not None:
            folder = base / f"v{minor}.0-local-strict"
            if (folder / "_definitions.json").is_file():
                return folder
    return None


def kubernetes_schemas_available(version: str) -> bool:
    return _kubernetes_schema_folder(_minor(version)) is not None


def _unavailable_message(minor: str) -> str:
    major, number = (int(x) for x in minor.split("."))
    looked = f"looked in {_installed_schema_dir()} and {legacy_schema_dir()} (env K8S_LEGACY_SCHEMAS)"
    if (major, number) < (1, 10):
        how = "no kubernetes-validate release ships schemas that old"
    elif (major, number) <= (1, 24):
        how = f"install them with: cd {REPO_ROOT} && {LEGACY_PIP_COMMAND}"
    else:
        how = "a newer kubernetes-validate may ship them: pip install -U kubernetes-validate"
    return f"no strict JSON schemas for Kubernetes {minor} ({looked}); {how}"


@functools.cache
def _kubernetes_schemas(minor: str) -> tuple[referencing.Registry, dict]:
    """Registry holding the version's _definitions.json, and an index (group, version, kind) -> $ref."""
    folder = _kubernetes_schema_folder(minor)
    if folder is None:
        raise SchemaUnavailable(_unavailable_message(minor))
    path = folder / "_definitions.json"
    contents = json.loads(path.read_text())
    # 1.25+ files are draft 2020-12 with an $id and "$defs"; older ones are draft-4
    # style without $id and with "definitions". Both validate the same under 2020-12.
    uri = contents.get("$id") or path.as_uri()
    defs_key = "$defs" if "$defs" in contents else "definitions"
    resource = referencing.jsonschema.DRAFT202012.create_resource(contents)
    registry = referencing.Registry().with_resource(uri, resource).crawl()
    index = {}
    for name, definition in contents[defs_key].items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            index[(gvk["group"], gvk["version"], gvk["kind"])] = f"{uri}#/{defs_key}/{name}"
    return registry, index


@functools.cache
def _kubernetes_validator(minor: str, group: str, version: str, kind: str):
    registry, index = _kubernetes_schemas(minor)
    ref = index.get((group, version, kind))
    if ref is None:
        return None
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


def _is_builtin_group(group: str) -> bool:
    if group in _NON_BUILTIN_K8S_IO_GROUPS:
        return False
    return group == "" or "." not in group or group.endswith(".k8s.io")


def validate_kubernetes_object(obj: dict, kubernetes_version: str) -> list[str]:
    """Errors (empty list = valid) for a built-in Kubernetes object on the given Kubernetes version.

    Raises SchemaUnavailable if that version's schemas are not installed, and
    ValueError for custom resources (use validate_istio_object for Istio ones).
    """
    minor = _minor(kubernetes_version)
    ident = _describe(obj)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not api_version or not kind:
        return [f"{ident}: {'apiVersion' if not api_version else 'kind'}: required"]
    group, version = _split_api_version(api_version)
    if not _is_builtin_group(group):
        raise ValueError(f"{ident}: {api_version} is a custom resource, not a built-in Kubernetes kind")
    validator = _kubernetes_validator(minor, group, version, kind)
    if validator is None:
        return [f"{ident}: apiVersion: {kind} {api_version} is not served by Kubernetes {minor}"]
    return _format_errors(validator, _drop_nulls(obj), (), ident)


# ---------------------------------------------------------------- Istio


def _istio_release(istio_version: str) -> str:
    minor = _minor(istio_version)
    if minor not in ISTIO_RELEASES:
        raise SchemaUnavailable(
            f"no Istio CRD schemas for Istio {istio_version}; known releases: "
            + ", ".join(sorted(ISTIO_RELEASES.values()))
        )
    return ISTIO_RELEASES[minor]


def require_istio_schemas(istio_version: str | None = None) -> None:
    """Load the CRDs of one Istio release (or of every known one); fail the calling test, saying how to provide the
    charts, when they cannot be had."""
    releases = [_istio_release(istio_version)] if istio_version else list(ISTIO_RELEASES.values())
    for release in releases:
        _istio_crds(release)


def require_kubernetes_schemas(kubernetes_version: str) -> None:
    """Fail the calling test, naming the install command, when that Kubernetes version's schemas are missing."""
    if not kubernetes_schemas_available(kubernetes_version):
        import pytest

        pytest.fail(_unavailable_message(_minor(kubernetes_version)))


@functools.cache
def _istio_crds(release: str) -> dict:
    """(group, kind) -> CRD, as the release's base chart installs them (fails the test when no charts are had)."""
    from harness.real_charts import real_charts

    return {(crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd for crd in real_charts().istio_crds(release)}


def _crd_version_schema(crd: dict, version: str) -> dict | None:
    """The openAPIV3Schema for a served version, or None if the version is not served."""
    spec = crd["spec"]
    versions = spec.get("versions") or [{"name": spec.get("version"), "served": True}]
    for entry in versions:
        if entry.get("name") == version and entry.get("served", True):
            # apiextensions v1 has a schema per version; v1beta1 may share one.
            return (entry.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema", {})
    return None


def _openapi_to_jsonschema(node: Any, in_junctor: bool = False) -> Any:
    """Translate a CRD structural schema into JSON Schema that rejects unknown fields."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item, in_junctor) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("description", "x-kubernetes-validations", "default", "example"):
            continue
        if key == "properties":
            out[key] = {name: _openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _openapi_to_jsonschema(value)
        elif key in ("anyOf", "oneOf", "allOf", "not"):
            out[key] = _openapi_to_jsonschema(value, in_junctor=True)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types + ["null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    # Structural schemas may not declare fields inside anyOf/oneOf/allOf/not, so
    # only the outer node decides which fields exist.
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and not in_junctor
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _istio_validator(release: str, group: str, version: str, kind: str):
    """Validator for spec, None if the release does not serve that version, KeyError if no such kind."""
    crd = _istio_crds(release)[(group, kind)]
    schema = _crd_version_schema(crd, version)
    if schema is None:
        return None
    spec_schema = _openapi_to_jsonschema((schema.get("properties") or {}).get("spec", {}))
    return jsonschema.Draft202012Validator(spec_schema)


def validate_istio_object(obj: dict, istio_version: str) -> list[str]:
    """Errors (empty list = valid) for an Istio custom resource against that Istio release's CRDs.

    Raises SchemaUnavailable for an unknown release or missing CRD files, and
    ValueError for objects that are not Istio custom resources.
    """
    release = _istio_release(istio_version)
    ident = _describe(obj)
    api_version, kind = obj.get("apiVersion") or "", obj.get("kind") or ""
    group, version = _split_api_version(api_version)
    if not group.endswith("istio.io"):
        raise ValueError(f"{ident}: {api_version or 'no apiVersion'} is not an Istio custom resource")
    try:
        validator = _istio_validator(release, group, version, kind)
    except KeyError:
        return [f"{ident}: kind: {kind} {api_version} is not served by Istio {release} (no such CRD)"]
    if validator is None:
        return [f"{ident}: apiVersion: {kind} {api_version} is not served by Istio {release}"]

    errors = [f"{ident}: {key}: unknown field {key!r}" for key in obj if key not in _CRD_TOP_LEVEL_FIELDS]
    if not (obj.get("metadata") or {}).get("name"):
        errors.append(f"{ident}: metadata.name: required")
    if "spec" not in obj:
        errors.append(f"{ident}: spec: required")
    else:
        errors += _format_errors(validator, _drop_nulls(obj["spec"]), ("spec",), ident)
    return errors
