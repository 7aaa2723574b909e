"""Parsers for the value formats stack files share with Kubernetes and Envoy: quantities, durations, DNS names."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Kubernetes resource.Quantity: a signed decimal number, then a binary-SI, decimal-SI or exponent suffix.
_QUANTITY = re.compile(r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal("1e3"),
            "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity such as `250m`, `1.5Gi` or `1e3`; ValueError if it is not one."""
    match = _QUANTITY.match(str(text)) if isinstance(text, (str, int)) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 100m, 0.5, 256Mi, 1Gi)")
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        try:
            return number * Decimal(10) ** int(suffix[1:])
        except InvalidOperation as error:  # pragma: no cover - the regex admits only integers
            raise ValueError(str(error)) from error
    return number


# Envoy/Istio accept Go-style durations; a single unit is what Istio 1.6 documents and all we emit.
_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>h|m|s|ms|us|ns)$")
_DURATION_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `2s`, `250ms` or `1m`; ValueError if it is not one."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 250ms, 2s, 1m)")
    return float(match["number"]) * _DURATION_SECONDS[match["unit"]]


def parse_istio_duration(text: str) -> float:
    """Seconds in a duration istiod accepts on a route or traffic policy: at least 1ms, whole milliseconds
    (ValidateDuration, pkg/config/validation of 1.6.14 and 1.30.3)."""
    seconds = parse_duration(text)
    milliseconds = round(seconds * 1000, 6)
    if milliseconds < 1:
        raise ValueError(f"{text!r} is below 1ms, which Istio refuses; use 1ms or more")
    if milliseconds != int(milliseconds):
        raise ValueError(f"{text!r} is not a whole number of milliseconds, the precision Istio accepts; for example 250ms")
    return seconds


# Prometheus reads durations as whole numbers of a unit (model.ParseDuration): it refuses fractions such as 1.5m.
_PROMETHEUS_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


def is_prometheus_duration(text: str) -> bool:
    return isinstance(text, str) and bool(_PROMETHEUS_DURATION.match(text))


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def is_dns_label(text: str) -> bool:
    """RFC 1123 label: what Kubernetes requires of namespace, Service and label-value names."""
    return isinstance(text, str) and bool(_DNS_LABEL.match(text))


def is_dns_name(text: str, allow_wildcard: bool = False) -> bool:
    """RFC 1123 subdomain; with allow_wildcard, also `*` and `*.example.com` as Istio hosts allow."""
    if not isinstance(text, str) or not text or len(text) > 253:
        return False
    if allow_wildcard and text == "*":
        return True
    labels = text.split(".")
    if allow_wildcard and labels[0] == "*":
        labels = labels[1:]
    return bool(labels) and all(is_dns_label(label) for label in labels)
