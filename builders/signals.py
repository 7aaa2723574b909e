"""The signals a service version is judged on (traffic, success rate, p95 latency) as PromQL over Istio's metrics.

One definition serves the recording and alerting rules, the Grafana canary dashboard and `make promote`, so what an
alert fires on, what a dashboard shows and what moves a canary are the same numbers. The metrics and labels are
Istio's standard ones, the same in 1.6 (telemetry v2) and current releases. Requests are counted where they are
served (reporter="destination"), so a retry or a fault injected at the caller does not count against the callee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REQUESTS = "istio_requests_total"
LATENCY_BUCKETS = "istio_request_duration_milliseconds_bucket"
# The namespace too: app stacks on one platform may run services of the same name (config/platform.py).
BY_VERSION = ("destination_workload_namespace", "destination_service_name", "destination_version")
SERVER_ERRORS = 'response_code=~"5.."'


@dataclass(frozen=True)
class Scope:
    """The requests one service (and optionally one version of it) served in a namespace."""

    namespace: str
    service: str
    version: str | None = None

    def selector(self, *extra: str) -> str:
        labels = ['reporter="destination"', f'destination_workload_namespace="{self.namespace}"',
                  f'destination_service_name="{self.service}"']
        if self.version is not None:
            labels.append(f'destination_version="{self.version}"')
        return "{" + ",".join([*labels, *extra]) + "}"


def _by_version(expression: str, *extra_labels: str) -> str:
    return f"sum by ({', '.join([*extra_labels, *BY_VERSION])}) ({expression})"


def request_rate(scope: Scope, window: str) -> str:
    """Requests per second, per version."""
    return _by_version(f"rate({REQUESTS}{scope.selector()}[{window}])")


def requests_served(scope: Scope, window: str) -> str:
    """Requests served in the window, per version: what a decision needs enough of."""
    return _by_version(f"increase({REQUESTS}{scope.selector()}[{window}])")


def success_ratio(scope: Scope, window: str) -> str:
    """Share of requests (0-1) answered without a 5xx, per version; absent where nothing was served."""
    served = _by_version(f"rate({REQUESTS}{scope.selector()}[{window}])")
    failed = _by_version(f"rate({REQUESTS}{scope.selector(SERVER_ERRORS)}[{window}])")
    # `or 0 * served` keeps versions that had no 5xx at all, whose error series do not exist.
    return f"1 - (({failed} or 0 * {served}) / {served})"


def p95_latency_ms(scope: Scope, window: str) -> str:
    """95th-percentile latency in milliseconds, per version."""
    buckets = _by_version(f"rate({LATENCY_BUCKETS}{scope.selector()}[{window}])", "le")
    return f"histogram_quantile(0.95, {buckets})"


@dataclass(frozen=True)
class Signal:
    """A named measure: the recording rule's name, how it is computed and how it reads on a dashboard."""

    record: str
    expression: Callable[[Scope, str], str]
    unit: str
    title: str


SIGNALS: tuple[Signal, ...] = (
    Signal("service_version:istio_requests:rate", request_rate, "reqps", "Requests per second"),
    Signal("service_version:istio_requests:success_ratio", success_ratio, "percentunit", "Success rate (non-5xx)"),
    Signal("service_version:istio_request_duration_milliseconds:p95", p95_latency_ms, "ms", "p95 latency"),
)
RATE, SUCCESS, LATENCY = SIGNALS


def recorded(signal: Signal, namespace: str, service: str, version: str | None = None) -> str:
    """The recorded series of a signal for one service (and version), as a dashboard or an alert reads it."""
    labels = [f'destination_workload_namespace="{namespace}"', f'destination_service_name="{service}"']
    if version is not None:
        labels.append(f'destination_version="{version}"')
    return f"{signal.record}{{{','.join(labels)}}}"


# What `make diagnose` counts: every 5xx as the caller's proxy saw it, and every response a proxy flagged (NR, UH, RL,
# ...): the caller's proxy flags what went wrong on the way out (no route, no healthy upstream), the callee's what it
# refused itself (an inbound rate limit). Grouped by who reported it, the caller, the service, version, code and flags.
FLAGGED = 'response_flags!="-"'
FLAGGED_BY = ("reporter", "source_workload", "source_workload_namespace", "destination_service_name", "destination_version",
              "response_code", "response_flags")


def flagged_responses(namespace: str, window: str) -> str:
    """Responses that went wrong in the window: to the namespace's services, and those a caller in it could not route
    anywhere (no route: destination unknown). `or` keeps one series where a 5xx was also flagged."""
    to_us = f'destination_service_namespace="{namespace}"'
    unrouted = f'source_workload_namespace="{namespace}",destination_service_namespace="unknown"'
    selections = [f'reporter="source",{to_us},{SERVER_ERRORS}', f'reporter="source",{to_us},{FLAGGED}',
                  f'reporter="destination",{to_us},{FLAGGED}', f'reporter="source",{unrouted},{FLAGGED}']
    increases = " or ".join(f"increase({REQUESTS}{{{selection}}}[{window}])" for selection in selections)
    return f"sum by ({', '.join(FLAGGED_BY)}) ({increases})"
