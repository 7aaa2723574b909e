"""When requests fail: what the live mesh says against the stack file, findings first and the raw data after.

    python -m tools.diagnose --stack prod [--stack-file F] [--kubeconfig PATH] [--prometheus URL] [--window 10m]
                             [--istioctl PATH | --no-istioctl]

Reads, and never changes: the app namespace's pods, Services, DestinationRules and VirtualServices and every
PeerAuthentication (kubectl); proxy sync state and `istioctl analyze` (istioctl at the stack's own Istio version,
taken from the same verified release archive as the 1.6 charts unless --istioctl names one); recent 5xx and flagged
responses per service, version and caller with Envoy's response flags (Prometheus' HTTP API). A source that cannot
be read is a finding of its own and the rest still runs. Exit code: 0 nothing found, 1 findings, 2 the stack file or
the cluster cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.signals import flagged_responses
from config.settings import Settings
from domain.mesh import ISTIO_NAMESPACE, injection_labels
from tools import drift, istio_charts
from tools.cluster import Kubectl, ReadError, stack_cluster
from tools.errors import CommandError
from tools.prometheus import PORT_FORWARD, query_rows
from tools.stack_files import default_stack_file, load_stack_settings

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
SIDECAR = "istio-proxy"
CORE_XDS = ("CDS", "LDS", "EDS", "RDS")
# Envoy's response flags (Envoy's access-log documentation), with where this stack's settings come in.
RESPONSE_FLAGS = {
    "NR": "no route: no VirtualService route or Sidecar egress host matches the request (check the match routes and "
          "security.restrictEgress)",
    "UH": "no healthy upstream: the subset has no ready pod, or outlier detection ejected them all "
          "(resilience.outlierDetection)",
    "UF": "upstream connection failure: the pod refused the connection, often mTLS between a sidecar and a pod "
          "without one",
    "UO": "upstream overflow: the circuit breaker tripped (resilience.connectionPool)",
    "URX": "retries or connect attempts used up (resilience.retries)",
    "UT": "upstream request timeout (resilience.timeout)",
    "UC": "upstream connection terminated",
    "DC": "the caller closed the connection",
    "RL": "rate limited (rateLimit in the stack file)",
    "UAEX": "refused by the external authorization service",
    "DI": "a fault delay injected on purpose (services.<name>.fault)",
    "FI": "a fault abort injected on purpose (services.<name>.fault)",
}


@dataclass(frozen=True)
class Finding:
    """One thing that is wrong, in the stack's own names, with the commands that look closer."""

    check: str
    text: str
    next: tuple[str, ...] = ()


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)

    def add(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)


@dataclass(frozen=True)
class Live:
    """What the API server holds for the app namespace, read once."""

    namespace: dict[str, Any]
    pods: list[dict[str, Any]]
    services: list[dict[str, Any]]
    destination_rules: list[dict[str, Any]]
    virtual_services: list[dict[str, Any]]
    peer_authentications: list[dict[str, Any]]

    @classmethod
    def read(cls, kubectl: Kubectl, namespace: str) -> Live:
        return cls(kubectl.get("namespace", namespace), kubectl.items("pods", namespace), kubectl.items("services", namespace),
                   kubectl.items("destinationrules.networking.istio.io", namespace),
                   kubectl.items("virtualservices.networking.istio.io", namespace),
                   kubectl.items("peerauthentications.security.istio.io", None))


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    return item["metadata"].get("labels") or {}


def _name(item: Mapping[str, Any]) -> str:
    return item["metadata"]["name"]


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def has_sidecar(pod: Mapping[str, Any]) -> bool:
    """An injected istio-proxy: a container, or (native sidecars) an init container that keeps running."""
    spec = pod.get("spec") or {}
    return any(c["name"] == SIDECAR for c in spec.get("containers", [])) or any(
        c["name"] == SIDECAR and c.get("restartPolicy") == "Always" for c in spec.get("initContainers", []))


def _app_pods(live: Live, settings: Settings) -> list[dict[str, Any]]:
    return [pod for pod in live.pods if _labels(pod).get("app") in settings.services]


def _look_closer(pod: str, namespace: str, host: str | None = None) -> tuple[str, ...]:
    fqdn = f" --fqdn {host}" if host else ""
    return (f"istioctl proxy-config cluster {pod}.{namespace}{fqdn}", f"istioctl proxy-config route {pod}.{namespace}",
            f"kubectl logs {pod} -n {namespace} -c {SIDECAR} --since=10m")


# ---- the checks that need only the API server ----------------------------------------------------------

def injection_findings(live: Live, settings: Settings) -> list[Finding]:
    wanted = injection_labels(settings.istio.revision)
    labels = _labels(live.namespace)
    missing = {key: value for key, value in wanted.items() if labels.get(key) != value}
    if not missing:
        return []
    shown = ", ".join(f"{key}={value}" for key, value in missing.items())
    return [Finding("sidecar", f"namespace {settings.app_namespace} lacks the injection label {shown}: new pods start "
                               "without a sidecar (`pulumi up --refresh` sets it back)")]


def sidecar_findings(live: Live, settings: Settings) -> list[Finding]:
    without = _by_workload(pod for pod in _app_pods(live, settings) if not has_sidecar(pod))
    namespace = settings.app_namespace
    return [Finding("sidecar", f"{app} {version}: {_count(pods)} without an {SIDECAR} sidecar: the mesh cannot route to "
                               "them or enforce mTLS and authorization; pods started before the namespace was labelled need "
                               f"`kubectl rollout restart deployment/{app}-{version} -n {namespace}`",
                    (f"kubectl get pod {pods[0]} -n {namespace} -o jsonpath='{{.metadata.annotations}}'",
                     f"kubectl get events -n {namespace} --field-selector involvedObject.name={pods[0]}"))
            for (app, version), pods in without.items()]


def _routed_weight(settings: Settings, service: str, subset: str) -> int:
    known = settings.services.get(service)
    return known.effective_weights().get(subset, 0) if known else 0


def subset_findings(live: Live, settings: Settings) -> list[Finding]:
    """DestinationRule subsets no ready pod backs: requests routed there end in 503 UH."""
    selectors = {_name(service): (service.get("spec") or {}).get("selector") or {} for service in live.services}
    found = []
    for rule in live.destination_rules:
        host = rule["spec"]["host"]
        service = host.split(".")[0]
        for subset in rule["spec"].get("subsets", []):
            wanted = {**selectors.get(service, {}), **(subset.get("labels") or {})}
            ready = [pod for pod in live.pods if is_ready(pod) and wanted.items() <= _labels(pod).items()]
            if ready:
                continue
            weight = _routed_weight(settings, service, subset["name"])
            effect = f"the stack file routes it {weight}%: those requests end in 503 UH" if weight else "no weight routes to it"
            found.append(Finding("subset", f"{service} subset {subset['name']} has no ready pod ({effect})",
                                 (f"kubectl get pods -n {settings.app_namespace} -l app={service},version={subset['name']}",
                                  f"kubectl describe deployment {service}-{subset['name']} -n {settings.app_namespace}")))
    return found


def mtls_modes(live: Live, namespaces: Iterable[str]) -> dict[str, str]:
    """The namespace-wide mode in force: the namespace's own policy without a selector, else the mesh-wide one."""
    wide = {item["metadata"]["namespace"]: (item.get("spec") or {}).get("mtls", {}).get("mode", "PERMISSIVE")
            for item in live.peer_authentications if not (item.get("spec") or {}).get("selector")}
    mesh = wide.get(ISTIO_NAMESPACE, "PERMISSIVE")
    return {namespace: wide.get(namespace, mesh) for namespace in namespaces}


def mtls_findings(live: Live, settings: Settings) -> list[Finding]:
    in_force = mtls_modes(live, [settings.app_namespace])[settings.app_namespace]
    wanted = settings.security.mtls_mode
    if in_force == wanted:
        return []
    return [Finding("mtls", f"mTLS in {settings.app_namespace} is {in_force}; the stack file asks {wanted} (security.mtlsMode)",
                    ("kubectl get peerauthentications.security.istio.io -A -o yaml",))]


def drift_findings(virtual_services: list[dict[str, Any]], settings: Settings) -> list[Finding]:
    found = drift.differences(drift.expected_routes(settings), drift.routes_of(virtual_services))
    return [Finding("routes", f"{line} (applied by `pulumi up --refresh`)") for line in found]


# ---- istioctl ---------------------------------------------------------------------------------------------

# What each release's istioctl needs to say what it knows (istioctl/pkg/proxystatus at 1.30.3 shows per-type sync
# state only at --verbosity 1; 1.6.14's istioctl/cmd/proxystatus.go always shows it and has no such flag).
PROXY_STATUS_ARGS = {"1.6": ("proxy-status",), "1.30": ("proxy-status", "--verbosity", "1")}
ANALYZE_ARGS = ("analyze", "--all-namespaces", "--output", "json")


@dataclass(frozen=True)
class ProxyStatus:
    proxy: str  # <pod>.<namespace>
    types: dict[str, str]  # CDS -> SYNCED, STALE, NOT SENT, ...


def parse_proxy_status(table: str) -> list[ProxyStatus]:
    """`istioctl proxy-status` tables of both releases: NAME, [CLUSTER,] one column per xDS type, then ISTIOD (1.30)
    or PILOT (1.6) and VERSION. Cells are separated by tabwriter padding, so by two spaces or more."""
    lines = [line for line in table.splitlines() if line.strip()]
    if not lines:
        return []
    split = lambda line: [cell.strip() for cell in line.strip().split("  ") if cell.strip()]  # noqa: E731
    header = split(lines[0])
    if not header or header[0] != "NAME":
        raise ReadError(f"istioctl proxy-status printed no table: {lines[0][:200]}")
    types = [column for column in header[1:] if column not in ("CLUSTER", "ISTIOD", "PILOT", "VERSION")]
    statuses = []
    for line in lines[1:]:
        row = dict(zip(header, split(line), strict=False))
        statuses.append(ProxyStatus(row["NAME"], {column: row.get(column, "") for column in types}))
    return statuses


def proxy_findings(statuses: Sequence[ProxyStatus], live: Live, settings: Settings) -> list[Finding]:
    namespace = settings.app_namespace
    found = []
    for status in statuses:
        behind = {kind: state for kind, state in status.types.items() if state.startswith("STALE")
                  or (kind in CORE_XDS and state.startswith("NOT SENT"))}
        if behind:
            pod, _, pod_namespace = status.proxy.partition(".")
            states = ", ".join(f"{kind} {state}" for kind, state in behind.items())
            found.append(Finding("proxy", f"proxy {status.proxy} is not in sync with istiod ({states}): it serves older "
                                          "routes and endpoints than the cluster holds",
                                 (f"istioctl proxy-status {status.proxy}", *_look_closer(pod, pod_namespace or namespace)[1:])))
    connected = {status.proxy for status in statuses}
    unlisted = _by_workload(pod for pod in _app_pods(live, settings)
                            if has_sidecar(pod) and is_ready(pod) and f"{_name(pod)}.{namespace}" not in connected)
    for (app, version), pods in unlisted.items():
        found.append(Finding("proxy", f"{app} {version}: {_count(pods)} with a sidecar that istiod does not list: never connected",
                             (f"kubectl logs {pods[0]} -n {namespace} -c {SIDECAR} --since=10m",
                              f"kubectl logs -n {ISTIO_NAMESPACE} -l app=istiod --since=10m")))
    return found


def _by_workload(pods: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pod in pods:
        grouped[(_labels(pod)["app"], _labels(pod).get("version", "?"))].append(_name(pod))
    return {workload: sorted(names) for workload, names in sorted(grouped.items())}


def _count(pods: Sequence[str]) -> str:
    shown = ", ".join(pods[:3]) + (", ..." if len(pods) > 3 else "")
    return f"{len(pods)} pod{'s' if len(pods) > 1 else ''} ({shown})"


def parse_analysis(output: str) -> list[dict[str, Any]]:
    """`istioctl analyze -o json`: a JSON list of messages (code, level, message, origin), the same in 1.6 and 1.30."""
    text = output.strip()
    if not text:
        return []
    start = text.find("[")
    try:
        messages = json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError as error:
        raise ReadError(f"istioctl analyze did not print JSON: {text[:200]}") from error
    if not isinstance(messages, list):
        raise ReadError("istioctl analyze printed JSON that is not a list of messages")
    return messages


def analysis_findings(messages: Sequence[Mapping[str, Any]]) -> list[Finding]:
    return [Finding("analyze", f"{m.get('level', '?')} {m.get('code', '?')} {m.get('origin', '')}: {m.get('message', '')}".replace("  ", " "),
                    tuple(url for url in (m.get("documentationUrl") or m.get("documentation_url"),) if url))
            for m in messages if m.get("level") in ("Error", "Warning")]


@dataclass(frozen=True)
class Istioctl:
    binary: str
    cluster: tuple[str, ...]

    def run(self, *args: str) -> str:
        command = [self.binary, *args, *self.cluster]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        except OSError as error:
            raise ReadError(f"cannot run {self.binary}: {error}") from error
        # analyze exits non-zero when it has found something; what it printed is still the answer.
        if done.returncode != 0 and not done.stdout.strip():
            raise ReadError(f"`istioctl {' '.join(args)}` failed: {done.stderr.strip()[-400:]}")
        return done.stdout


def matching_istioctl(settings: Settings) -> str:
    """istioctl of the stack's Istio release, from the release archive (checked against its published sha256)."""
    try:
        return str(istio_charts.fetch_istioctl(settings.istio.version, istio_charts.default_cache()))
    except istio_charts.ChartFetchError as error:
        raise ReadError(f"no istioctl {settings.istio.version}: {error}; pass --istioctl PATH") from error


# ---- Prometheus -------------------------------------------------------------------------------------------

def error_findings(rows: Sequence[tuple[Mapping[str, str], float]], live: Live, settings: Settings, window: str) -> list[Finding]:
    found = []
    for labels, count in sorted(rows, key=lambda row: -row[1]):
        if count < 1:  # increase() extrapolates: under one request in the window is not an event
            continue
        service, version = labels.get("destination_service_name", "unknown"), labels.get("destination_version", "unknown")
        flags = labels.get("response_flags", "-")
        caller = labels.get("source_workload", "unknown")
        by_callee = labels.get("reporter") == "destination"
        meaning = "; ".join(RESPONSE_FLAGS.get(flag, flag) for flag in flags.split(",") if flag != "-")
        target = "no service" if service == "unknown" else f"{service} {version}"
        seen = "refused by its own proxy" if by_callee else "as the caller's proxy saw it"
        text = (f"{target}: {count:.0f} × {labels.get('response_code', '?')} {flags} in the last {window} from {caller}, {seen}"
                + (f" ({meaning})" if meaning else " (the app's own answer)"))
        found.append(Finding("errors", text, _error_next_steps(labels, live, settings, by_callee or not meaning)))
    return found


def _error_next_steps(labels: Mapping[str, str], live: Live, settings: Settings, at_callee: bool) -> tuple[str, ...]:
    """Where an error is looked at: the callee for its own answers and what its proxy refused, else the caller's
    proxy, whose routes and clusters decided where the request went."""
    namespace = settings.app_namespace
    service = labels.get("destination_service_name", "unknown")
    if at_callee:
        pod = _a_pod(live, lambda pod: _labels(pod).get("app") == service and _labels(pod).get("version") == labels.get("destination_version"))
        if pod is None:
            return (f"kubectl get pods -n {namespace} -l app={service}",)
        return (f"kubectl logs {pod} -n {namespace} -c {service} --since=10m", f"kubectl logs {pod} -n {namespace} -c {SIDECAR} --since=10m")
    caller, caller_namespace = labels.get("source_workload", "unknown"), labels.get("source_workload_namespace", namespace)
    pod = _a_pod(live, lambda pod: _name(pod).startswith(f"{caller}-")) if caller_namespace == namespace else None
    pod = pod or f"$(kubectl get pods -n {caller_namespace} -o name | grep -m1 '/{caller}-' | cut -d/ -f2)"
    host = None if service == "unknown" else f"{service}.{namespace}.svc.cluster.local"
    return _look_closer(pod, caller_namespace, host)


def _a_pod(live: Live, chosen: Callable[[Mapping[str, Any]], bool]) -> str | None:
    pods = sorted(_name(pod) for pod in live.pods if chosen(pod) and is_ready(pod))
    return pods[0] if pods else None


# ---- the run ------------------------------------------------------------------------------------------------

def _check(report: Report, source: str, read: Callable[[], list[Finding]]) -> None:
    try:
        report.add(read())
    except (CommandError, OSError, subprocess.TimeoutExpired) as error:
        report.add([Finding("unread", f"{source} could not be read: {error}")])


def _located(report: Report, locate: Callable[[], Istioctl]) -> Istioctl | None:
    try:
        return locate()
    except ReadError as error:
        report.add([Finding("unread", f"proxy-status and analyze were not run: {error}")])
        return None


def diagnose(settings: Settings, kubectl: Kubectl, istioctl: Callable[[], Istioctl] | None, prometheus: str,
             window: str) -> Report:
    report = Report()
    live = Live.read(kubectl, settings.app_namespace)
    report.raw["pods"] = "\n".join(f"{_name(pod)}  ready={is_ready(pod)}  sidecar={has_sidecar(pod)}  "
                                   f"{_labels(pod).get('app', '-')}/{_labels(pod).get('version', '-')}" for pod in live.pods)
    namespaces = sorted({settings.app_namespace, ISTIO_NAMESPACE, *(item["metadata"]["namespace"] for item in live.peer_authentications)})
    report.raw["mTLS in force"] = "\n".join(f"{namespace}: {mode}" for namespace, mode in mtls_modes(live, namespaces).items())
    for check in (injection_findings, sidecar_findings, subset_findings, mtls_findings):
        report.add(check(live, settings))
    report.add(drift_findings(live.virtual_services, settings))
    runner = _located(report, istioctl) if istioctl is not None else None
    if runner is not None:
        def proxies() -> list[Finding]:
            table = runner.run(*PROXY_STATUS_ARGS[settings.istio.minor])
            report.raw["istioctl proxy-status"] = table.rstrip()
            return proxy_findings(parse_proxy_status(table), live, settings)

        def analysis() -> list[Finding]:
            messages = parse_analysis(runner.run(*ANALYZE_ARGS))
            report.raw["istioctl analyze"] = json.dumps(messages, indent=1)
            return analysis_findings(messages)

        _check(report, "istioctl proxy-status", proxies)
        _check(report, "istioctl analyze", analysis)

    def errors() -> list[Finding]:
        rows = query_rows(prometheus, flagged_responses(settings.app_namespace, window), timeout=10)
        report.raw["Prometheus: 5xx and flagged responses"] = "\n".join(
            f"{count:.0f}  {json.dumps(dict(sorted(labels.items())))}" for labels, count in rows) or "none"
        return error_findings(rows, live, settings, window)

    _check(report, f"Prometheus at {prometheus} (`{PORT_FORWARD}`, or --prometheus URL)", errors)
    return report


def print_report(report: Report, stack: str) -> None:
    out = sys.stdout
    print(f"{stack}: {len(report.findings) or 'no'} finding(s)", file=out)
    for finding in report.findings:
        print(f"\n[{finding.check}] {finding.text}", file=out)
        for command in finding.next:
            print(f"    next: {command}", file=out)
    for title, text in report.raw.items():
        print(f"\n---- {title} ----\n{text}", file=out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.diagnose", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--stack-file", type=Path)
    parser.add_argument("--kubeconfig", help="default: the stack's kubernetes:kubeconfig, else kubectl's own")
    parser.add_argument("--context", help="default: the stack's kubernetes:context, else the kubeconfig's current one")
    parser.add_argument("--prometheus", help="Prometheus base URL (default: canary.prometheusUrl)")
    parser.add_argument("--window", default="10m", help="how far back to count errors (PromQL duration, default 10m)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--istioctl", help="istioctl to run (default: the stack's Istio release, fetched and verified)")
    chosen.add_argument("--no-istioctl", action="store_true", help="skip proxy-status and analyze")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stack_file = args.stack_file or default_stack_file(args.stack)
    try:
        settings = load_stack_settings(args.stack, stack_file)
        with stack_cluster(args, stack_file) as cluster:
            istioctl = None if args.no_istioctl else lambda: Istioctl(args.istioctl or matching_istioctl(settings), cluster)
            report = diagnose(settings, Kubectl(cluster), istioctl, args.prometheus or settings.canary.prometheus_url,
                              args.window)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print_report(report, args.stack)
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
