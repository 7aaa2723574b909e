"""Where the mesh lives and how a namespace asks for sidecars: what the program sets and the commands look up."""

from __future__ import annotations

ISTIO_NAMESPACE = "istio-system"


def injection_labels(revision: str | None) -> dict[str, str]:
    # A revisioned istiod's injector selects istio.io/rev; istio-injection would take precedence, so never both.
    return {"istio.io/rev": revision} if revision else {"istio-injection": "enabled"}

# On an app stack's namespace (components/istio.py): its platform's Istio 1.6 sidecars use the pod's account token.
SIDECARS_USE_ACCOUNT_TOKEN = "bee-travels.io/sidecars-use-account-token"
