"""A single mutation of a committed stack file is refused with the project's own error, or declares only objects
that the stack's own API server and Istio release take.

Hypothesis draws the mutations (harness/stack_mutations.py: one value changed, removed, or its key misspelt, as a new
user makes them) over dev, prod and dev-current. Refused: a StackConfigError naming the stack file and a key, with
nothing registered. Accepted: every object the program declares passes its Kubernetes and Istio schemas, and every
object that differs from the unmutated stack's goes to a real API server of the stack's Kubernetes release (the
simulated control plane, harness/sim_cluster.py, with the base chart's Istio CRDs installed) as a server-side dry
run, which must take it: the server applies its own validation (quantities, int32 fields, names, the CRDs' schemas
and, on Istio 1.30, their CEL rules). What the mock engine cannot show: what the charts render from changed values
(no Helm runs here; the settings rules guard those values) and istiod's own validation, which runs only as a webhook.

The examples are derandomized, so CI draws the same ones each run; MUTATION_EXAMPLES=<n> draws more.
`python -m harness.stack_mutations` runs every mutation (the census) without the servers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from harness.real_charts import RealCharts, real_charts
from harness.sim_cluster import SimCluster, declared_manifests, kubectl
from harness.stack_mutations import STACKS, Mutation, istio_version, kubernetes_minor, leaves, mutated_values, outcome, schema_errors
from tools.stack_run import run_stack

EXAMPLES = int(os.environ.get("MUTATION_EXAMPLES", "60"))


class Servers:
    """One simulated API server per Kubernetes release the committed stacks target, with their Istio CRDs."""

    def __init__(self, root: Path, charts: RealCharts):
        self.root, self.charts = root, charts
        self.clusters: dict[str, SimCluster] = {}
        self.namespaces: dict[str, set[str]] = {}

    def for_stack(self, stack: str) -> SimCluster:
        minor = kubernetes_minor(stack)
        if minor not in self.clusters:
            cluster = SimCluster.start(minor, self.root / f"cluster-{minor}")
            self.clusters[minor] = cluster
            self.namespaces[minor] = set()
            crds = self.charts.istio_crds(istio_version(stack))
            kubectl(cluster.kubeconfig, "apply", "-f", "-", stdin=_stream(crds))
            kubectl(cluster.kubeconfig, "wait", "--for", "condition=established", "--timeout", "60s", "crd", "--all")
        return self.clusters[minor]

    def dry_run(self, stack: str, manifests: list[dict]) -> list[str]:
        """The server's refusals of a server-side apply of these objects, dry run; the namespaces they live in are
        made for real first (a dry run cannot create into a namespace that does not exist)."""
        cluster = self.for_stack(stack)
        made = self.namespaces[kubernetes_minor(stack)]
        wanted = {manifest["metadata"]["namespace"] for manifest in manifests if manifest["metadata"].get("namespace")}
        wanted |= {manifest["metadata"]["name"] for manifest in manifests if manifest["kind"] == "Namespace"}
        for namespace in sorted(wanted - made):
            kubectl(cluster.kubeconfig, "create", "namespace", namespace, check=False)
            made.add(namespace)
        objects = [manifest for manifest in manifests if manifest["kind"] != "Namespace"]
        if not objects:
            return []
        result = kubectl(cluster.kubeconfig, "apply", "--server-side", "--dry-run=server", "--force-conflicts",
                         "--field-manager", "mutation-check", "-f", "-", stdin=_stream(objects), check=False)
        return [line for line in result.stderr.splitlines() if line.strip()] if result.returncode else []

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()


def _stream(documents: list[dict]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def _identity(manifest: dict) -> tuple[str, str, str, str]:
    meta = manifest["metadata"]
    return manifest.get("apiVersion", ""), manifest["kind"], meta.get("namespace", ""), meta["name"]


@pytest.fixture(scope="module")
def charts() -> RealCharts:
    return real_charts()


@pytest.fixture(scope="module")
def servers(charts, tmp_path_factory) -> Iterator[Servers]:
    servers = Servers(tmp_path_factory.mktemp("mutation-servers"), charts)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def baselines(charts) -> dict[str, dict[tuple, dict]]:
    """Each committed stack's objects as the program declares them, by identity."""
    found = {}
    for stack in STACKS:
        run = run_stack(stack, charts.edits(istio_version(stack)))
        assert run.error is None, run.error
        found[stack] = {_identity(manifest): manifest for manifest in declared_manifests(run)}
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_the_committed_stack_declares_only_what_its_server_takes(stack, servers, baselines):
    manifests = list(baselines[stack].values())
    assert schema_errors(stack, manifests) == []
    assert servers.dry_run(stack, manifests) == []


@st.composite
def mutations(draw) -> Mutation:
    stack = draw(st.sampled_from(STACKS))
    leaf = draw(st.sampled_from(leaves(stack)))
    return Mutation(leaf, draw(st.sampled_from(mutated_values(leaf))))


@hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations())
def test_a_single_mutation_is_refused_by_name_or_declares_what_the_servers_take(mutation, servers, baselines, charts):
    result = outcome(mutation, charts.edits(istio_version(mutation.leaf.stack)))
    assert result.kind != "crashed", f"{mutation.describe()}: {result.why}"
    if result.kind == "refused":
        return
    stack = mutation.leaf.stack
    manifests = declared_manifests(result.run)
    assert schema_errors(stack, manifests) == [], mutation.describe()
    baseline = baselines[stack]
    changed = [manifest for manifest in manifests if baseline.get(_identity(manifest)) != manifest]
    refusals = servers.dry_run(stack, changed)
    assert refusals == [], f"{mutation.describe()} was accepted, but Kubernetes {kubernetes_minor(stack)} refuses:\n" + \
        "\n".join(refusals) + "\n" + json.dumps([_identity(manifest) for manifest in changed])


# ---- strings that reach scripts --------------------------------------------------------------------------------

# Keys whose values end up in the MongoDB Jobs' shell commands and JavaScript, or beside them (host lists, database
# and namespace names), set in none or not all of the committed files.
SCRIPT_REACHING_KEYS = ("appNamespace", "mongodb.version", "mongodb.storageClass", "cloudDatabase.host", "images.registry",
                        "images.tag", "images.seedTag", "istio.hub", "istio.tag")


def _pod_specs(manifest: dict) -> Iterator[dict]:
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template", {}).get("spec")
    if template:
        yield template


def script_texts(manifests: list[dict]) -> list[str]:
    """Everything a container runs or hands its commands: command, args, and environment values."""
    texts = []
    for manifest in manifests:
        for pod in _pod_specs(manifest):
            for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                texts += container.get("command") or []
                texts += container.get("args") or []
                texts += [variable.get("value") or "" for variable in container.get("env") or []]
    return texts


def _string_keys(stack: str) -> list[str]:
    return sorted({leaf.key for leaf in leaves(stack) if isinstance(leaf.value, str)} | set(SCRIPT_REACHING_KEYS))


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_value_can_run_code_in_a_job_or_a_container(stack, charts):
    """Quotes, $(), backticks and newlines in any string the stack file holds, and in the keys that reach the Jobs'
    scripts: each is refused, or reaches no command, argument or environment value of any container."""
    from harness.stack_mutations import INJECTIONS

    scanned = script_texts(declared_manifests(run_stack(stack, charts.edits(istio_version(stack)))))
    assert any("gen_upload.py" in text for text in scanned), "the scan reads the seeding Jobs' shell scripts"
    if stack == "prod":
        assert any("rs.initiate" in text for text in scanned), "and the replica set's JavaScript"
    reached = []
    for key in _string_keys(stack):
        for payload in INJECTIONS:
            run = run_stack(stack, {key: payload, **charts.edits(istio_version(stack))})
            if run.error is not None:
                assert "bee-travels-mesh:" in str(run.error) and run.resources == [], (key, payload, run.error)
                continue
            reached += [f"{key}={payload!r} in {text!r}" for text in script_texts(declared_manifests(run)) if payload in text]
    assert reached == []
