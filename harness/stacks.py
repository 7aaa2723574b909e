"""Stack-file edits the tests and benchmarks share."""

# The prod stack on current Istio (1.30) and a Kubernetes it supports.
CURRENT_ISTIO = {"istio.version": "1.30.3", "kubernetesVersion": "1.33"}
