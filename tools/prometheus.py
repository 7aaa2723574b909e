"""Prometheus' HTTP API as the commands read it: one instant query's series, and errors that say how to reach it."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from builders.addons import PROMETHEUS_PORT
from domain.mesh import ISTIO_NAMESPACE
from tools.errors import CommandError

PORT_FORWARD = f"kubectl -n {ISTIO_NAMESPACE} port-forward svc/prometheus {PROMETHEUS_PORT}:{PROMETHEUS_PORT}"


class PrometheusError(CommandError):
    """Prometheus could not be reached or refused a query."""


def query_rows(base_url: str, promql: str, timeout: float) -> list[tuple[dict[str, str], float]]:
    """An instant query's series: each one's labels and value."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        # Prometheus explains a rejected query in the JSON body of its 400/422/503 answers.
        _parse_answer(base_url, error.read(), f"HTTP {error.code}")
        raise PrometheusError(f"Prometheus at {base_url} answered HTTP {error.code} to {promql}") from error
    except OSError as error:  # URLError, refused connections and timeouts are all OSErrors
        reason = getattr(error, "reason", error)
        raise PrometheusError(f"cannot reach Prometheus at {base_url} ({reason}); port-forward it with `{PORT_FORWARD}` "
                              "or pass --prometheus URL") from error
    return [(dict(series.get("metric") or {}), float(series["value"][1]))
            for series in _parse_answer(base_url, body, "HTTP 200").get("result") or []]


def _parse_answer(base_url: str, body: bytes, status: str) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError as error:
        raise PrometheusError(f"{base_url} did not answer like Prometheus' HTTP API ({status}, not JSON); check --prometheus") from error
    if not isinstance(answer, dict) or answer.get("status") != "success":
        detail = answer.get("error", "no reason given") if isinstance(answer, dict) else "unexpected answer"
        kind = answer.get("errorType", "error") if isinstance(answer, dict) else "error"
        raise PrometheusError(f"Prometheus at {base_url} refused the query ({status}, {kind}: {detail})")
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(f"Prometheus at {base_url} answered a {data.get('resultType')!r} where an instant vector was expected")
    return data
