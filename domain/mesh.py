"""Where the mesh lives and how a namespace asks for sidecars: what the program sets and the commands look up."""

from __future__ import annotations

ISTIO_NAMESPACE = "istio-system"


def injection_labels(revision: str | None) -> dict[str, str]:
    # A revisioned istiod's injector selects istio.io/rev; istio-injection would take precedence, so never both.
    return {"istio.io/rev": revision} if revision else {"istio-injection": "enabled"}

# On an app stack's namespace (components/istio.py): how its platform's sidecars prove themselves to istiod.
SIDECAR_JWT_POLICY = "bee-travels.io/sidecar-jwt-policy"
