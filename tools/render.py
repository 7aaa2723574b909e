"""Render a stack offline for review: every declared object as YAML, Helm releases, outputs and the routing diagram.

    python -m tools.render --stack dev [--out rendered] [--readme README.md]

Runs the real program under the mock engine (tools/stack_run.py, the path the tests use): no cluster, no
Pulumi CLI, no credentials. Secret values are masked. Output is deterministic, so a pull request's diff of
the rendered folder is the change to the cluster, object by object.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from tools import istio_charts
from tools.stack_files import declared_platform, default_stack_file
from tools.stack_run import ROOT, Registered, StackRun, run_stack, stand_in_chart_cache, unwrap

MASK = "[secret]"
DEFAULT_OUT = ROOT / "rendered"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET_TYPES = ("kubernetes:core/v1:Secret",)
# Where the 1.6 charts live for a user who ran `make istio-charts`; renders show that path on every machine.
CANONICAL_CHART_CACHE = ".cache/istio"


# ---- objects --------------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120)


def _masked(resource: Registered, chart_cache: str | None) -> dict:
    inputs = unwrap(resource.inputs, mask=MASK)
    if resource.type in SECRET_TYPES:
        # Every value of a Secret is masked, whether or not the program marked it; its keys stay reviewable.
        plain = unwrap(resource.inputs)
        for field in ("data", "stringData"):
            if isinstance(plain.get(field), dict):
                inputs[field] = {key: MASK for key in plain[field]}
    if chart_cache:
        inputs = _replace_prefix(inputs, chart_cache, CANONICAL_CHART_CACHE)
    return inputs


def _replace_prefix(value: Any, prefix: str, replacement: str) -> Any:
    if isinstance(value, str) and value.startswith(prefix):
        return replacement + value[len(prefix):]
    if isinstance(value, dict):
        return {key: _replace_prefix(item, prefix, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_prefix(item, prefix, replacement) for item in value]
    return value


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def object_path(resource: Registered) -> str:
    if resource.type == HELM_RELEASE:
        return f"helm/{_safe(resource.name)}.yaml"
    if resource.type.startswith("kubernetes:"):
        namespace = resource.metadata.get("namespace") or "_cluster"
        return f"kubernetes/{_safe(namespace)}/{resource.kind}.{_safe(resource.k8s_name or resource.name)}.yaml"
    return f"pulumi/{resource.kind}.{_safe(resource.name)}.yaml"


def _document(resource: Registered, chart_cache: str | None) -> dict:
    inputs = _masked(resource, chart_cache)
    if resource.type == HELM_RELEASE:
        return {"release": inputs.get("name", resource.name), "namespace": inputs.get("namespace"),
                "chart": inputs.get("chart"), "version": inputs.get("version"),
                "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
                "values": inputs.get("values") or {},
                **{key: inputs[key] for key in ("valueYamlFiles", "timeout", "atomic", "skipCrds") if key in inputs}}
    if resource.type.startswith("kubernetes:"):
        return inputs
    return {"type": resource.type, "name": resource.name, "inputs": inputs}


def _header(resource: Registered) -> str:
    """Comment lines: the Pulumi resource, and the options that guard it (kept out of the manifest itself)."""
    options = [name for name, on in (("protect", resource.protect), ("retainOnDelete", resource.retain_on_delete),
                                     ("deleteBeforeReplace", resource.delete_before_replace)) if on]
    options += [f"ignoreChanges={','.join(sorted(resource.ignore_changes))}"] if resource.ignore_changes else []
    return f"# {resource.type} {resource.name}\n" + (f"# pulumi options: {' '.join(options)}\n" if options else "")


def render_files(run: StackRun, chart_cache: str | None = None) -> dict[str, str]:
    """Relative path -> file text for every object of a successful run, the outputs and the routing diagram."""
    files: dict[str, str] = {}
    for resource in run.resources:
        if not resource.custom:
            continue
        path = object_path(resource)
        if path in files:
            raise ValueError(f"two objects render to {path}; names must be unique per kind and namespace")
        files[path] = _header(resource) + to_yaml(_document(resource, chart_cache))
    files["outputs.yaml"] = to_yaml(unwrap(run.outputs, mask=MASK))
    files["routing.md"] = f"# Routing: {run.stack}\n\n{routing_diagram(run)}"
    return files


# ---- the routing diagram --------------------------------------------------------------------------

def _node(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _short_host(host: str) -> str:
    return host.split(".", 1)[0]


def _spec(resource: Registered) -> dict:
    return unwrap(resource.inputs).get("spec") or {}


def _match_label(route: dict) -> str:
    labels = []
    for match in route.get("match") or []:
        for header, condition in (match.get("headers") or {}).items():
            value = next(iter(condition.values()), "")
            labels.append(f"cookie {value}" if header == "cookie" else f"{header}: {value}")
    return " or ".join(labels)


def routing_diagram(run: StackRun) -> str:
    """Mermaid flowchart: gateway -> UI -> services -> versions (weights, match routes), data, egress, mTLS."""
    modes = sorted({(_spec(r).get("mtls") or {}).get("mode", "UNSET") for r in run.of_type("PeerAuthentication")})
    lines = ["```mermaid", "---", f"title: {run.stack} · mTLS {' / '.join(modes) or 'not set'}", "---", "flowchart LR"]
    gateway_hosts = sorted({host for g in run.of_type("Gateway") for server in _spec(g).get("servers", [])
                            for host in server.get("hosts", [])})
    ports = sorted({server["port"]["number"] for g in run.of_type("Gateway") for server in _spec(g).get("servers", [])})
    lines.append(f'  client(["client"]) -->|"{", ".join(gateway_hosts)} :{"/".join(map(str, ports))}"| gateway{{{{"ingress gateway"}}}}')

    versions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for deployment in run.of_type("Deployment"):
        labels = deployment.metadata.get("labels") or {}
        if "app" in labels and "version" in labels:
            versions[labels["app"]].append((labels["version"], labels.get("data-tier", "")))
    for service in sorted(versions):
        lines.append(f'  subgraph {_node(service)}_versions["{service}"]')
        for version, tier in sorted(versions[service]):
            lines.append(f'    {_node(service)}_{_node(version)}["{version} · {tier}"]')
        lines.append("  end")
        lines.append(f'  {_node(service)}(("{service}"))')

    for virtual_service in sorted(run.of_type("VirtualService"), key=lambda r: r.name):
        spec = _spec(virtual_service)
        destinations = [d["destination"] for route in spec.get("http", []) for d in route.get("route", [])]
        if not destinations:
            continue
        service = _short_host(destinations[0]["host"])
        if spec.get("gateways"):
            lines.append(f"  gateway --> {_node(service)}")
        for route in spec.get("http", []):
            match = _match_label(route)
            for destination in route.get("route", []):
                target = f"{_node(service)}_{_node(destination['destination'].get('subset', ''))}"
                label = match or f"{destination.get('weight', 100)}%"
                arrow = "-.->" if match else "-->"
                lines.append(f'  {_node(service)} {arrow}|"{label}"| {target}')

    services = set(versions)
    for deployment in sorted(run.of_type("Deployment"), key=lambda r: r.name):
        caller = (deployment.metadata.get("labels") or {}).get("app")
        containers = deployment.inputs["spec"]["template"]["spec"]["containers"]
        callees = {m.group(1) for c in containers for env in c.get("env", []) if isinstance(env.get("value"), str)
                   for m in [re.match(r"https?://([a-z0-9-]+)[:./]", env["value"])] if m and m.group(1) in services}
        for callee in sorted(callees):
            edge = f"  {_node(caller)}_versions --> {_node(callee)}"
            if edge not in lines:
                lines.append(edge)

    data_edges = sorted({(service, version, tier) for service, items in versions.items() for version, tier in items
                         if tier in ("mongodb", "cloud")})
    if any(tier == "mongodb" for *_, tier in data_edges):
        lines.append('  mongo[("MongoDB (in cluster)")]')
    for service, version, tier in data_edges:
        target = "mongo" if tier == "mongodb" else "cloud_database"
        if tier == "cloud" and '  cloud_database[("cloud database")]' not in lines:
            lines.append('  cloud_database[("cloud database")]')
        lines.append(f"  {_node(service)}_{_node(version)} --> {target}")

    for entry in sorted(run.of_type("ServiceEntry"), key=lambda r: r.name):
        for host in _spec(entry).get("hosts", []):
            node = f"external_{_node(host)}"
            lines.append(f'  {node}[/"{host} (ServiceEntry)"/]')
            # A service has a Sidecar per data tier it uses; the diagram draws one edge per service.
            callers = set()
            for sidecar in run.of_type("Sidecar"):
                spec = _spec(sidecar)
                app = ((spec.get("workloadSelector") or {}).get("labels") or {}).get("app")
                allowed = [h for egress in spec.get("egress", []) for h in egress.get("hosts", [])]
                if app in services and any(h.split("/", 1)[-1] == host for h in allowed):
                    callers.add(app)
            lines += [f"  {_node(app)}_versions -.-> {node}" for app in sorted(callers)]
    lines.append("```")
    return "\n".join(lines) + "\n"


# ---- README blocks and the command ----------------------------------------------------------------

def readme_block_markers(stack: str) -> tuple[str, str]:
    return f"<!-- routing diagram: {stack} (generated by make render) -->", f"<!-- end routing diagram: {stack} -->"


def with_readme_diagram(readme: str, stack: str, diagram: str) -> str:
    start, end = readme_block_markers(stack)
    if start not in readme or end not in readme:
        return readme
    before, rest = readme.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{diagram}{end}{after}"


def render_stack(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="render-charts-") as cache:
        root = stand_in_chart_cache(Path(cache))
        previous = os.environ.get(istio_charts.CACHE_ENV)
        os.environ[istio_charts.CACHE_ENV] = str(root)
        try:
            run = run_stack(stack, overrides, other_stacks=declared_platform(stack, default_stack_file(stack)))
        finally:
            if previous is None:
                os.environ.pop(istio_charts.CACHE_ENV, None)
            else:
                os.environ[istio_charts.CACHE_ENV] = previous
        if run.error:
            raise SystemExit(f"render of {stack} stopped: {run.error}")
        return render_files(run, chart_cache=str(root))


def write_files(folder: Path, files: dict[str, str]) -> None:
    if folder.exists():
        shutil.rmtree(folder)  # a removed object must disappear from the render, not linger
    for relative, text in sorted(files.items()):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", help="stack to render (repeatable; default: dev and prod)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (one subfolder per stack)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README whose diagram blocks to refresh")
    args = parser.parse_args(argv)
    readme = args.readme.read_text() if args.readme.exists() else None
    for stack in args.stack or ["dev", "prod"]:
        files = render_stack(stack)
        write_files(args.out / stack, files)
        print(f"{stack}: {len(files)} files in {args.out / stack}")
        if readme is not None:
            readme = with_readme_diagram(readme, stack, routing_diagram_from(files))
    if readme is not None and readme != args.readme.read_text():
        args.readme.write_text(readme)
        print(f"refreshed routing diagrams in {args.readme}")
    return 0


def routing_diagram_from(files: dict[str, str]) -> str:
    return files["routing.md"].split("\n\n", 1)[1]


if __name__ == "__main__":
    sys.exit(main())
