"""Do the live routes equal the stack file? The weights and match routes of every VirtualService, read directly.

    python -m tools.drift --stack prod [--stack-file Pulumi.prod.yaml] [--kubeconfig PATH] [--context NAME]

The routes the stack file asks for are built by the program's own builder (builders/routes.py), the live ones
read with `kubectl get virtualservices -o json` in the app namespace of the cluster the stack's provider
talks to (its kubernetes:kubeconfig and kubernetes:context, unless given). Prints every difference; exit code 1 when
there is one, 0 when the live routes are the stack file's, 2 when the cluster cannot be read. The nightly workflow
runs it beside `pulumi preview --refresh --expect-no-changes`, which compares everything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builders.routes import http_routes
from config.settings import Settings
from tools.cluster import Kubectl, ReadError, stack_cluster
from tools.errors import CommandError
from tools.stack_files import default_stack_file, load_stack_settings

EXIT_SAME, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def route_summary(http: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Route name -> destination subset -> weight (100 where a route has one destination and no weight)."""
    return {route.get("name", f"#{index}"): {leg["destination"]["subset"]: int(leg.get("weight", 100)) for leg in route["route"]}
            for index, route in enumerate(http)}


def expected_routes(settings: Settings) -> dict[str, dict[str, dict[str, int]]]:
    namespace = settings.app_namespace
    return {name: route_summary(http_routes(name, service, settings.resilience_of(name), namespace))
            for name, service in settings.services.items()}


def live_routes(namespace: str, kubectl: Kubectl) -> dict[str, dict[str, dict[str, int]]]:
    try:
        return routes_of(kubectl.items("virtualservices.networking.istio.io", namespace))
    except ReadError as error:
        raise CommandError(f"cannot read the live VirtualServices in {namespace}: {error}") from error


def routes_of(virtual_services: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    return {item["metadata"]["name"]: route_summary(item.get("spec", {}).get("http", [])) for item in virtual_services}


def _legs(routes: dict[str, int]) -> str:
    return ", ".join(f"{subset} {weight}%" for subset, weight in routes.items()) or "nothing"


def differences(expected: dict[str, dict[str, dict[str, int]]], live: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    found = []
    for service in sorted(set(expected) | set(live)):
        if service not in live:
            found.append(f"{service}: no live VirtualService (the stack file routes it)")
            continue
        if service not in expected:
            found.append(f"{service}: a live VirtualService the stack file does not know")
            continue
        want, have = expected[service], live[service]
        for route in sorted(set(want) | set(have)):
            if want.get(route) != have.get(route):
                found.append(f"{service} route {route}: live {_legs(have.get(route, {}))}; stack file {_legs(want.get(route, {}))}")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.drift", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--stack-file", type=Path)
    parser.add_argument("--kubeconfig", help="default: the stack's kubernetes:kubeconfig, else kubectl's own")
    parser.add_argument("--context", help="default: the stack's kubernetes:context, else the kubeconfig's current one")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stack_file = args.stack_file or default_stack_file(args.stack)
    try:
        settings = load_stack_settings(args.stack, stack_file)
        with stack_cluster(args, stack_file) as cluster:
            found = differences(expected_routes(settings), live_routes(settings.app_namespace, Kubectl(cluster)))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not found:
        print(f"{args.stack}: the live routes are the stack file's ({stack_file.name})")
        return EXIT_SAME
    print(f"{args.stack}: the live routes differ from {stack_file.name}:")
    print("\n".join(f"  - {line}" for line in found))
    print(f"Someone changed the cluster by hand, or an update has not been applied: `pulumi up --refresh --stack {args.stack}` "
          "restores the stack file's routes (a plain `pulumi up` compares with its state and would not see the hand edit).")
    return EXIT_DRIFT


if __name__ == "__main__":
    sys.exit(main())
