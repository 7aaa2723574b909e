"""End-to-end checks against a deployed stack, run by .github/workflows/e2e.yml after `pulumi up` on kind.

    python -m tools.e2e split  --gateway http://localhost:8080 --service destination --weights '{"v1": 90, "v2": 10}'
    python -m tools.e2e header --service hotel --header x-bee-canary=true --version v2
    python -m tools.e2e plaintext --service hotel
    python -m tools.e2e fence --fenced istiod prometheus grafana kiali
    python -m tools.e2e all --outputs outputs.json --gateway http://localhost:8080   # every check the stack calls for

Which version served a request is read from the serving sidecars' own counters (istio_requests_total,
reporter="destination"), before and after the requests, so no version has to announce itself. The fence check
shows the cluster's CNI enforcing Istio's namespace fence: a pod outside the mesh reaches the gateway and none of the
components only their port-forwards should reach.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from builders.addon_values import GRAFANA_SERVICE_PORT
from builders.addons import KIALI_PORT, PROMETHEUS_PORT
from builders.istio_fence import MONITORING_PORT
from domain.mesh import ISTIO_NAMESPACE
from tools.cluster import Kubectl, stack_cluster
from tools.errors import CommandError
from tools.stack_files import default_stack_file

# Four standard deviations: a correct split fails the check about once in 15,000 runs per version.
DEFAULT_Z = 4.0
# The UI path that reaches each service through the gateway (the UI backend proxies /api/v1/*).
PATH_THROUGH_UI = {
    "destination": "/api/v1/destinations",
    "hotel": "/api/v1/hotels/info/superchain",
    "carrental": "/api/v1/cars/info/rental_company",
    "currencyexchange": "/api/v1/currency/USD",
}
SERVICE_PORT = 80
# What Istio's namespace fence keeps a pod outside the mesh from (each reached through its Service), and what it
# leaves open to anyone: the gateway's plain-HTTP listener.
FENCED = {
    "istiod": f"istiod.{ISTIO_NAMESPACE}:{MONITORING_PORT}/version",
    "prometheus": f"prometheus.{ISTIO_NAMESPACE}:{PROMETHEUS_PORT}/-/ready",
    "grafana": f"grafana.{ISTIO_NAMESPACE}:{GRAFANA_SERVICE_PORT}/api/health",
    "kiali": f"kiali.{ISTIO_NAMESPACE}:{KIALI_PORT}/kiali/healthz",
    "tracing": f"tracing.{ISTIO_NAMESPACE}:80/",
}
OPEN_TO_ALL = ("gateway", f"istio-ingressgateway.{ISTIO_NAMESPACE}:80/")
# Run in the curl image's shell: one line per target, "name curl-exit-code http-code".
_PROBE_SCRIPT = ('for target in "$@"; do name=${target%%=*}; url=${target#*=}; '
                 'code=$(curl -s -o /dev/null -w "%{http_code}" --connect-timeout 5 --max-time 8 "http://$url"); '
                 'echo "$name $? $code"; done')
_SAMPLE = re.compile(r'^istio_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+]+)\s*$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# ---- pure logic (unit-tested) -------------------------------------------------------------------

def requests_by_version(prometheus_text: str, service: str) -> Counter[str]:
    """Inbound requests each version of `service` has served, from Envoy's Prometheus text."""
    served: Counter[str] = Counter()
    for line in prometheus_text.splitlines():
        sample = _SAMPLE.match(line.strip())
        if not sample:
            continue
        labels = dict(_LABEL.findall(sample["labels"]))
        if labels.get("reporter") == "destination" and labels.get("destination_app") == service:
            served[labels.get("destination_version", "unknown")] += int(float(sample["value"]))
    return served


@dataclass(frozen=True)
class VersionShare:
    version: str
    expected_percent: float
    observed: int
    total: int
    allowed_deviation: float

    @property
    def expected(self) -> float:
        return self.total * self.expected_percent / 100

    @property
    def ok(self) -> bool:
        return abs(self.observed - self.expected) <= self.allowed_deviation

    def describe(self) -> str:
        share = 100 * self.observed / self.total if self.total else 0.0
        return (f"{self.version}: {self.observed}/{self.total} = {share:.1f}% (configured {self.expected_percent:g}%, "
                f"allowed {self.expected:.0f} ± {self.allowed_deviation:.1f}) {'ok' if self.ok else 'OUT OF TOLERANCE'}")


def judge_split(observed: Mapping[str, int], weights: Mapping[str, float], z: float = DEFAULT_Z) -> list[VersionShare]:
    """Each version's share against its weight, with a binomial tolerance of z standard deviations.

    A weight of 0 or 100 allows no deviation at all: such a route must be exact.
    """
    total = sum(observed.values())
    shares = []
    for version in sorted(set(weights) | set(observed)):
        p = weights.get(version, 0) / 100
        deviation = z * math.sqrt(total * p * (1 - p)) + (0.5 if 0 < p < 1 else 0.0)
        shares.append(VersionShare(version, weights.get(version, 0), observed.get(version, 0), total, deviation))
    return shares


def minimum_requests(weights: Mapping[str, float], z: float = DEFAULT_Z) -> int:
    """Requests needed so that the smallest non-zero weight is expected at least z² times (else the test says nothing)."""
    smallest = min((w for w in weights.values() if 0 < w < 100), default=100) / 100
    return math.ceil(z * z / smallest)


def parse_header(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def plan(outputs: Mapping[str, object]) -> list[list[str]]:
    """The checks a deployed stack calls for, from its outputs: each split, each header route, and, under STRICT
    mTLS, a plain-text request. Arguments for this module's commands."""
    checks: list[list[str]] = []
    weights: Mapping[str, Mapping[str, float]] = outputs.get("canaryWeights") or {}  # type: ignore[assignment]
    for service, service_weights in sorted(weights.items()):
        if service in PATH_THROUGH_UI and sum(1 for w in service_weights.values() if w) > 1:
            checks.append(["split", "--service", service, "--weights", json.dumps(dict(service_weights), sort_keys=True)])
    routes: Mapping[str, list[Mapping[str, str]]] = outputs.get("matchRoutes") or {}  # type: ignore[assignment]
    for service, service_routes in sorted(routes.items()):
        for route in service_routes:
            if service in PATH_THROUGH_UI and route.get("header"):
                checks.append(["header", "--service", service, "--header", f"{route['header']}={route['value']}",
                               "--version", route["version"]])
    if outputs.get("mtlsMode") == "STRICT":
        deployed = [service for service in PATH_THROUGH_UI if service in weights]
        checks += [["plaintext", "--service", deployed[0]]] if deployed else []
    if outputs.get("networkPolicies"):
        addons = outputs.get("observability") or {}
        checks.append(["fence", "--fenced", "istiod", *sorted(name for name in addons if name in FENCED)])  # type: ignore[union-attr]
    return checks


def judge_fence(probe_output: str, fenced: list[str]) -> tuple[bool, list[str]]:
    """Whether the gateway answered and no fenced component did, from the probe pod's lines; and what was seen."""
    reached = {}
    for line in probe_output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in {OPEN_TO_ALL[0], *FENCED}:
            reached[parts[0]] = parts[1] == "0"  # curl exits 0 on any HTTP answer
    lines = [f"{name}: {'answered' if reached.get(name) else 'no answer'}" for name in (OPEN_TO_ALL[0], *fenced)]
    if not reached.get(OPEN_TO_ALL[0]):
        lines.append("the gateway did not answer a pod outside the mesh either, so this run shows nothing about the fence")
    leaks = [name for name in fenced if reached.get(name, True)]
    if leaks:
        lines.append(f"reached or not probed: {', '.join(leaks)}: the cluster's CNI does not enforce NetworkPolicy, "
                     "or the fence admits what it should not")
    return bool(reached.get(OPEN_TO_ALL[0])) and not leaks, lines


# ---- the cluster (kubectl) ----------------------------------------------------------------------

def served_by_version(kube: Kubectl, namespace: str, service: str) -> Counter[str]:
    pods = kube.run("get", "pods", "-n", namespace, "-l", f"app={service}", "-o", "name").stdout.split()
    total: Counter[str] = Counter()
    for pod in pods:
        stats = kube.run("exec", "-n", namespace, pod, "-c", "istio-proxy", "--",
                         "pilot-agent", "request", "GET", "stats/prometheus").stdout
        total += requests_by_version(stats, service)
    return total


def _send_through_gateway(url: str, count: int, headers: Mapping[str, str]) -> Counter[int]:
    codes: Counter[int] = Counter()
    for _ in range(count):
        request = urllib.request.Request(url, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                codes[response.status] += 1
        except urllib.error.HTTPError as error:
            codes[error.code] += 1
    return codes


# `node -e SCRIPT count host port path headers-json`: sequential GETs, printing {status code: count} as JSON.
_NODE_GET_LOOP = (
    "const http=require('http');const [n0,host,port,path,h]=process.argv.slice(1);let n=+n0;const codes={};"
    "const go=()=>{if(!n--){console.log(JSON.stringify(codes));return;}"
    "http.get({host,port:+port,path,headers:JSON.parse(h)},r=>{codes[r.statusCode]=(codes[r.statusCode]||0)+1;"
    "r.resume();r.on('end',go);}).on('error',()=>{codes.error=(codes.error||0)+1;go();});};go();"
)


def _send_from_ui(kube: Kubectl, namespace: str, service: str, count: int, headers: Mapping[str, str]) -> Counter[int]:
    # From the UI's own container, so the request leaves through its sidecar with a mesh identity and the
    # header reaches the match route as sent (the UI backend does not forward arbitrary headers).
    result = kube.run("exec", "-n", namespace, "deploy/bee-ui-v1", "-c", "bee-ui", "--", "node", "-e", _NODE_GET_LOOP,
                      str(count), service, str(SERVICE_PORT), PATH_THROUGH_UI[service], json.dumps(dict(headers)))
    return Counter({int(k) if k.isdigit() else -1: v for k, v in json.loads(result.stdout).items()})


def _measure(kube: Kubectl, namespace: str, service: str, send) -> tuple[Counter[str], Counter[int]]:
    before = served_by_version(kube, namespace, service)
    codes = send()
    time.sleep(2)  # Envoy flushes its counters to the stats endpoint on an interval
    after = served_by_version(kube, namespace, service)
    return Counter({v: after[v] - before[v] for v in after if after[v] - before[v] > 0}), codes


def _outside_pod(args: argparse.Namespace, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    """A throwaway pod without a sidecar in a namespace of no fence, running `command` (the curl image's)."""
    return args.kube.run("run", f"e2e-{name}-{int(time.time())}", "-n", args.outside_namespace, "--rm", "-i", "--restart=Never",
                    "--quiet", f"--image={args.curl_image}", "--labels=sidecar.istio.io/inject=false", "--", *command, check=False)


# ---- commands -----------------------------------------------------------------------------------

def check_split(args: argparse.Namespace) -> bool:
    weights = json.loads(args.weights)
    count = max(args.requests, minimum_requests(weights, args.z))
    url = args.gateway.rstrip("/") + PATH_THROUGH_UI[args.service]
    observed, codes = _measure(args.kube, args.namespace, args.service, lambda: _send_through_gateway(url, count, {}))
    shares = judge_split(observed, weights, args.z)
    print(f"split of {args.service} over {count} requests through {url} (response codes {dict(codes)}):")
    for share in shares:
        print("  " + share.describe())
    return bool(observed) and all(share.ok for share in shares)


def check_header(args: argparse.Namespace) -> bool:
    name, value = args.header
    observed, codes = _measure(args.kube, args.namespace, args.service,
                               lambda: _send_from_ui(args.kube, args.namespace, args.service, args.requests, {name: value}))
    print(f"{args.requests} requests to {args.service} with {name}: {value} (response codes {dict(codes)}): served {dict(observed)}")
    return sum(observed.values()) > 0 and set(observed) == {args.version}


def check_plaintext(args: argparse.Namespace) -> bool:
    """A pod outside the mesh (no sidecar, so no client certificate) must not get an answer under STRICT mTLS."""
    url = f"http://{args.service}.{args.namespace}.svc.cluster.local:{SERVICE_PORT}/"
    result = _outside_pod(args, "plaintext", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url)
    refused = result.returncode != 0 or not result.stdout.strip().startswith(("2", "3", "4"))
    print(f"plain-text request from {args.outside_namespace} to {url}: exit {result.returncode}, "
          f"output {result.stdout.strip() or '-'} {result.stderr.strip()[:200]} -> {'refused' if refused else 'ANSWERED'}")
    return refused


def check_fence(args: argparse.Namespace) -> bool:
    """From a pod outside the mesh and outside every fenced namespace: the gateway answers, the fenced components do not."""
    targets = [f"{OPEN_TO_ALL[0]}={OPEN_TO_ALL[1]}", *(f"{name}={FENCED[name]}" for name in args.fenced)]
    result = _outside_pod(args, "fence", "sh", "-c", _PROBE_SCRIPT, "probe", *targets)
    passed, lines = judge_fence(result.stdout, args.fenced)
    print(f"from a pod in {args.outside_namespace} without a sidecar (exit {result.returncode}):")
    for line in lines:
        print("  " + line)
    return passed


def check_all(args: argparse.Namespace) -> bool:
    outputs = json.loads(args.outputs.read_text())
    results = []
    for check in plan(outputs):
        extra = {"split": ["--gateway", args.gateway, "--requests", str(args.requests)]}.get(check[0], [])
        print(f"--- {' '.join(check)}")
        chosen = build_parser().parse_args(["--namespace", args.namespace, *check, *extra])
        results.append((check, _run(chosen, args.kube)))
    for check, passed in results:
        print(f"{'pass' if passed else 'FAIL'}  {' '.join(check)}")
    return bool(results) and all(passed for _, passed in results)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="bee-travels")
    parser.add_argument("--stack", help="read the cluster from this stack file's kubernetes:kubeconfig and kubernetes:context")
    parser.add_argument("--kubeconfig", help="default: the stack's kubernetes:kubeconfig, else kubectl's own")
    parser.add_argument("--context", help="default: the stack's kubernetes:context, else kubectl's current one")
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="the canary split through the gateway is within tolerance")
    split.add_argument("--gateway", required=True)
    split.add_argument("--service", required=True, choices=sorted(PATH_THROUGH_UI))
    split.add_argument("--weights", required=True, help='JSON, e.g. {"v1": 90, "v2": 10} (stack output canaryWeights)')
    split.add_argument("--requests", type=int, default=400)
    split.add_argument("--z", type=float, default=DEFAULT_Z)
    split.set_defaults(check=check_split)
    header = commands.add_parser("header", help="every request carrying the match header reaches its version")
    header.add_argument("--service", required=True, choices=sorted(PATH_THROUGH_UI))
    header.add_argument("--header", required=True, type=parse_header)
    header.add_argument("--version", required=True)
    header.add_argument("--requests", type=int, default=50)
    header.set_defaults(check=check_header)
    plaintext = commands.add_parser("plaintext", help="a client without a mesh identity is refused (STRICT mTLS)")
    plaintext.add_argument("--service", required=True, choices=sorted(PATH_THROUGH_UI))
    plaintext.set_defaults(check=check_plaintext)
    fence = commands.add_parser("fence", help="the CNI enforces Istio's namespace fence: only the gateway answers outsiders")
    fence.add_argument("--fenced", nargs="+", required=True, choices=sorted(FENCED))
    fence.set_defaults(check=check_fence)
    for outside in (plaintext, fence):
        outside.add_argument("--outside-namespace", default="default")
        outside.add_argument("--curl-image", default="curlimages/curl:8.10.1")
    every = commands.add_parser("all", help="every check the stack's outputs call for")
    every.add_argument("--outputs", required=True, type=Path, help="`pulumi stack output --json` saved to a file")
    every.add_argument("--gateway", required=True)
    every.add_argument("--requests", type=int, default=400)
    every.set_defaults(check=check_all)
    return parser


def _run(args: argparse.Namespace, kube: Kubectl) -> bool:
    args.kube = kube
    passed = args.check(args)
    print("PASS" if passed else "FAIL")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stack_cluster(args, default_stack_file(args.stack) if args.stack else None) as cluster:
            return 0 if _run(args, Kubectl(cluster)) else 1
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
