"""Prometheus recording and alerting rules and the Grafana canary dashboard, built from the signals and service levels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builders.signals import LATENCY, RATE, SIGNALS, SUCCESS, Scope, recorded

if TYPE_CHECKING:
    from config.settings import ServiceLevel, Settings


@dataclass(frozen=True)
class MonitoredService:
    """A deployed service, its versions and the bar they are held to; in the stack's own namespace, or an app stack's."""

    name: str
    versions: tuple[str, ...]
    service_level: ServiceLevel
    namespace: str
    app_stack: str | None = None  # the app stack that deploys it; None: the stack itself

    @property
    def key(self) -> str:
        """Unique among a platform's services: rule groups and dashboard rows are named by it."""
        return f"{self.app_stack}-{self.name}" if self.app_stack else self.name

    @property
    def title(self) -> str:
        return f"{self.app_stack}/{self.name}" if self.app_stack else self.name


def recording_rules(services: list[MonitoredService]) -> dict[str, Any]:
    """One group per service, each recording every signal per version over that service's window."""
    return {"groups": [
        {"name": f"bee-travels-{service.key}-signals",
         "rules": [{"record": signal.record,
                    "expr": signal.expression(Scope(service.namespace, service.name), service.service_level.window)}
                   for signal in SIGNALS]}
        for service in services
    ]}


@dataclass(frozen=True)
class Breach:
    """An alert on one signal crossing its service-level bar."""

    alert: str
    condition: str  # what follows the recorded series in the alert expression
    summary: str
    description: str


def _breaches(level: ServiceLevel) -> list[tuple[Any, Breach]]:
    minimum = level.min_success_rate_percent / 100
    return [
        (SUCCESS, Breach("BeeTravelsSuccessRateBelowServiceLevel", f"< {minimum:g}",
                         "{{ $labels.destination_service_name }} {{ $labels.destination_version }} answers too many requests with 5xx",
                         f"Success rate {{{{ $value | humanizePercentage }}}} over {level.window}, below the service level of "
                         f"{level.min_success_rate_percent:g}%.")),
        (LATENCY, Breach("BeeTravelsLatencyAboveServiceLevel", f"> {level.max_p95_latency_ms}",
                         "{{ $labels.destination_service_name }} {{ $labels.destination_version }} is slow",
                         f"p95 latency {{{{ printf \"%.0f\" $value }}}}ms over {level.window}, above the service level of "
                         f"{level.max_p95_latency_ms}ms.")),
    ]


def alerting_rules(services: list[MonitoredService], production: bool) -> dict[str, Any]:
    """Per deployed version, an alert for each service-level bar: a canary and its stable version each alert alone."""
    severity = "critical" if production else "warning"
    groups = []
    for service in services:
        rules = []
        for version in service.versions:
            for signal, breach in _breaches(service.service_level):
                rules.append({
                    "alert": breach.alert,
                    "expr": f"{recorded(signal, service.namespace, service.name, version)} {breach.condition}",
                    "for": service.service_level.alert_after,
                    "labels": {"severity": severity, "namespace": service.namespace, "service": service.name, "version": version},
                    "annotations": {"summary": breach.summary, "description": breach.description},
                })
        groups.append({"name": f"bee-travels-{service.key}-service-level", "rules": rules})
    return {"groups": groups}


# ---- the canary dashboard ----------------------------------------------------------------------

DASHBOARD_UID = "bee-travels-canary"
PANEL_WIDTH, PANEL_HEIGHT = 8, 8


def _threshold(signal: Any, level: ServiceLevel) -> dict[str, Any] | None:
    if signal is SUCCESS:
        return {"value": level.min_success_rate_percent / 100, "op": "lt"}
    if signal is LATENCY:
        return {"value": level.max_p95_latency_ms, "op": "gt"}
    return None


def _panel(panel_id: int, row: int, column: int, service: MonitoredService, signal: Any) -> dict[str, Any]:
    threshold = _threshold(signal, service.service_level)
    panel: dict[str, Any] = {
        "id": panel_id,
        "type": "graph",
        "title": f"{service.title}: {signal.title} by version",
        "datasource": "Prometheus",
        "gridPos": {"x": column * PANEL_WIDTH, "y": row * PANEL_HEIGHT, "w": PANEL_WIDTH, "h": PANEL_HEIGHT},
        "targets": [{"expr": recorded(signal, service.namespace, service.name), "legendFormat": "{{destination_version}}", "refId": "A"}],
        "yaxes": [{"format": signal.unit, "show": True}, {"format": "short", "show": False}],
        "lines": True,
        "linewidth": 2,
    }
    if threshold:
        # The service level drawn on the graph: a line the canary must stay on the right side of.
        panel["thresholds"] = [{**threshold, "colorMode": "critical", "line": True, "fill": False}]
    return panel


def canary_dashboard(services: list[MonitoredService]) -> dict[str, Any]:
    """A row per service with every signal per version side by side: the canary next to its stable version."""
    panels = []
    for row, service in enumerate(services):
        for column, signal in enumerate((RATE, SUCCESS, LATENCY)):
            panels.append(_panel(len(panels) + 1, row, column, service, signal))
    return {
        "uid": DASHBOARD_UID,
        "title": "Bee Travels canaries",
        "tags": ["bee-travels", "canary"],
        "timezone": "browser",
        "schemaVersion": 22,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def dashboard_json(services: list[MonitoredService]) -> str:
    return json.dumps(canary_dashboard(services), indent=1, sort_keys=True)


def monitored_services(settings: Settings, app_stack: str | None = None) -> list[MonitoredService]:
    """Every service a stack deploys, with its versions and service level, in the stack's namespace."""
    return [MonitoredService(name, tuple(service.versions), settings.service_level_of(name), settings.app_namespace, app_stack)
            for name, service in settings.services.items()]
