"""What a change does to traffic, in a few lines for a pull request: from the offline render before and after.

    python -m tools.traffic_diff BEFORE_DIR AFTER_DIR [--max-lines 40]

Both folders are `python -m tools.render` output (one subfolder per stack). Read per stack: every VirtualService's
weighted split, match routes, sticky canary, mirror and faults, the mTLS mode of every PeerAuthentication and the
Gateway's hosts. Prints Markdown; a stack whose traffic does not change says so in one line.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# GitHub refuses comments over 65,536 characters; the summary stays far below by cutting lines, not characters.
DEFAULT_MAX_LINES = 40


@dataclass
class Traffic:
    """The traffic-relevant facts of one rendered stack."""

    weights: dict[str, dict[str, int]] = field(default_factory=dict)  # service -> version -> percent
    routes: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> route description -> version
    mirrors: dict[str, str] = field(default_factory=dict)  # service -> "v2 (25%)"
    faults: dict[str, str] = field(default_factory=dict)  # service -> "delay 5s at 10%"
    mtls: dict[str, str] = field(default_factory=dict)  # namespace -> mode
    gateway_hosts: tuple[str, ...] = ()


def _documents(folder: Path, kind: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) or {} for path in sorted(folder.glob(f"kubernetes/*/{kind}.*.yaml"))]


def _route_description(route: dict[str, Any]) -> str:
    if route.get("name", "").startswith("sticky-"):
        return "sticky canary cookie"
    described = []
    for match in route.get("match", []):
        for header, condition in (match.get("headers") or {}).items():
            if "exact" in condition:
                described.append(f"header {header}: {condition['exact']}")
            else:
                described.append(f"{header} route {route.get('name', '')}".strip())
    return ", ".join(described) or route.get("name", "route")


def _fault(fault: dict[str, Any]) -> str:
    parts = []
    if "delay" in fault:
        parts.append(f"delay {fault['delay'].get('fixedDelay')} at {fault['delay'].get('percentage', {}).get('value')}%")
    if "abort" in fault:
        parts.append(f"abort {fault['abort'].get('httpStatus')} at {fault['abort'].get('percentage', {}).get('value')}%")
    return ", ".join(parts)


def read_traffic(folder: Path) -> Traffic:
    traffic = Traffic()
    for service in _documents(folder, "VirtualService"):
        name = service["metadata"]["name"]
        for route in service.get("spec", {}).get("http", []):
            if route.get("name") == "weighted":
                traffic.weights[name] = {leg["destination"]["subset"]: int(leg.get("weight", 100)) for leg in route["route"]}
                if route.get("mirror"):
                    traffic.mirrors[name] = f"{route['mirror']['subset']} ({route.get('mirrorPercentage', {}).get('value', 100)}%)"
                if route.get("fault"):
                    traffic.faults[name] = _fault(route["fault"])
            else:
                traffic.routes.setdefault(name, {})[_route_description(route)] = route["route"][0]["destination"]["subset"]
    for policy in _documents(folder, "PeerAuthentication"):
        traffic.mtls[policy["metadata"].get("namespace", "")] = policy.get("spec", {}).get("mtls", {}).get("mode", "UNSET")
    for gateway in _documents(folder, "Gateway"):
        traffic.gateway_hosts = tuple(sorted({host for server in gateway.get("spec", {}).get("servers", []) for host in server["hosts"]}))
    return traffic


def _weight_changes(before: Traffic, after: Traffic) -> list[str]:
    lines = []
    for service in sorted(set(before.weights) | set(after.weights)):
        old, new = before.weights.get(service), after.weights.get(service)
        if old == new:
            continue
        if old is None or new is None:
            lines.append(f"{service}: {'new service' if old is None else 'removed'}")
            continue
        lines.append(f"{service}: {', '.join(_moves(old, new))}")
    return lines


def _moves(old: dict[str, int], new: dict[str, int]) -> list[str]:
    moves = []
    for version in sorted(set(old) | set(new)):
        if version not in old:
            moves.append(f"{version} added at {new[version]}%")
        elif version not in new:
            moves.append(f"{version} removed (was {old[version]}%)")
        elif old[version] != new[version]:
            moves.append(f"{version} {old[version]}% → {new[version]}%")
    return moves


def _keyed_changes(label: str, before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    lines = []
    for service in sorted(set(before) | set(after)):
        old, new = before.get(service, {}), after.get(service, {})
        for route in sorted(set(old) | set(new)):
            if route not in old:
                lines.append(f"{service}: new {label} {route} → {new[route]}")
            elif route not in new:
                lines.append(f"{service}: {label} {route} → {old[route]} removed")
            elif old[route] != new[route]:
                lines.append(f"{service}: {label} {route} now → {new[route]} (was {old[route]})")
    return lines


def _value_changes(label: str, before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            lines.append(f"{key}: {label} {old or 'none'} → {new or 'none'}")
    return lines


def changes(before: Traffic, after: Traffic) -> list[str]:
    lines = _weight_changes(before, after)
    lines += _keyed_changes("route", before.routes, after.routes)
    lines += _value_changes("mirror", before.mirrors, after.mirrors)
    lines += _value_changes("fault", before.faults, after.faults)
    lines += [f"mTLS in {line}" for line in _value_changes("mode", before.mtls, after.mtls)]
    if before.gateway_hosts != after.gateway_hosts:
        lines.append(f"gateway hosts: {', '.join(before.gateway_hosts) or 'none'} → {', '.join(after.gateway_hosts) or 'none'}")
    return lines


def summary(before_root: Path, after_root: Path, max_lines: int = DEFAULT_MAX_LINES) -> str:
    stacks = sorted({path.name for root in (before_root, after_root) if root.is_dir() for path in root.iterdir() if path.is_dir()})
    out = ["### What changes for traffic", ""]
    for stack in stacks:
        before, after = read_traffic(before_root / stack), read_traffic(after_root / stack)
        lines = changes(before, after)
        modes = sorted(set(after.mtls.values()))
        if not lines:
            out.append(f"- **{stack}**: no traffic change (mTLS {', '.join(modes) or 'unset'})")
            continue
        out.append(f"- **{stack}**:")
        shown = lines[:max_lines]
        out += [f"  - {line}" for line in shown]
        if len(lines) > len(shown):
            out.append(f"  - … and {len(lines) - len(shown)} more (see the rendered diff)")
        if not any(line.startswith("mTLS") for line in lines):
            out.append(f"  - mTLS unchanged ({', '.join(modes) or 'unset'})")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--max-lines", type=int, default=DEFAULT_MAX_LINES, help="per stack")
    args = parser.parse_args(argv)
    sys.stdout.write(summary(args.before, args.after, args.max_lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
