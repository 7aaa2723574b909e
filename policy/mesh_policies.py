"""The platform team's mandatory rules for Bee Travels mesh stacks, as plain functions the pack and its tests share.

The pack's entry point (`__main__.py`) starts the analyzer server and never returns, so everything that
decides lives here. Resources arrive as the engine sends them: a type token such as
`kubernetes:apps/v1:Deployment` and camelCase inputs. Objects inside a Helm release are not visible to
policies; for releases the rules read the release's values instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

DEFAULT_PRODUCTION_STACKS = ("prod",)
DEFAULT_ISTIO_ROOT_NAMESPACE = "istio-system"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
# The charts that install the ingress gateway: Istio 1.6's release-archive chart and the current repository chart.
GATEWAY_CHARTS = ("istio-ingress", "gateway")

_WORKLOAD_POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Names that say "this is a credential". References to credentials (a Secret's name, the key inside it)
# are not credentials and are allowed anywhere.
_SENSITIVE_NAME = re.compile(r"pass(word|wd)?|secret|token|api_?key|private_?key|credential|connection_?(url|string)|cert",
                             re.IGNORECASE)
_REFERENCE_NAME = re.compile(r"^existing|(secretname|secretref|credentialname|name|key|keys|ref|file|path|policy|provider|audience|aud)$",
                             re.IGNORECASE)
_CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


# ---- reading resources ----------------------------------------------------------------------------

def kind_of(resource_type: str) -> tuple[str, str]:
    """(API group, kind) of a Kubernetes type token; ("", "") for anything else."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return "", ""
    group = parts[1].rsplit("/", 1)[0]
    return group, parts[2]


def stack_of(urn: str) -> str:
    """The stack name inside a URN (`urn:pulumi:<stack>::<project>::...`)."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def dig(value: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            return None
    return value


def object_name(props: Mapping[str, Any], fallback: str) -> str:
    metadata = props.get("metadata") or {}
    name = metadata.get("name") or fallback
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = _WORKLOAD_POD_SPEC_PATHS.get(kind_of(resource_type)[1])
    return dig(props, *path) if path else None


@dataclass(frozen=True)
class Container:
    role: str  # "container" or "init container"
    spec: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.get("name", "?")


def containers(spec: Mapping[str, Any]) -> Iterator[Container]:
    for role, key in (("init container", "initContainers"), ("container", "containers")):
        for container in spec.get(key) or []:
            yield Container(role, container)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf value) in a nested value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


def _config_list(args: ResourceValidationArgs | StackValidationArgs, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    configured = args.get_config().get(key)
    return tuple(configured) if configured else default


def is_production(args: ResourceValidationArgs | StackValidationArgs, urn: str) -> bool:
    return stack_of(urn) in _config_list(args, "productionStacks", DEFAULT_PRODUCTION_STACKS)


_PRODUCTION_STACKS_SCHEMA = PolicyConfigSchema(properties={
    "productionStacks": {"type": "array", "items": {"type": "string"}, "default": list(DEFAULT_PRODUCTION_STACKS),
                         "description": "Stacks held to production rules."},
})


# ---- rule: prod stacks have STRICT mTLS -----------------------------------------------------------

def _mtls_mode(peer_authentication: Mapping[str, Any]) -> str:
    return dig(peer_authentication, "spec", "mtls", "mode") or "UNSET"


def _tls_modes(destination_rule: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    spec = destination_rule.get("spec") or {}
    policies = [("trafficPolicy", spec.get("trafficPolicy"))]
    policies += [(f"subsets[{i}].trafficPolicy", s.get("trafficPolicy")) for i, s in enumerate(spec.get("subsets") or [])]
    for where, policy in policies:
        if not policy:
            continue
        if dig(policy, "tls", "mode"):
            yield f"{where}.tls.mode", policy["tls"]["mode"]
        for j, port in enumerate(policy.get("portLevelSettings") or []):
            if dig(port, "tls", "mode"):
                yield f"{where}.portLevelSettings[{j}].tls.mode", port["tls"]["mode"]


def _in_mesh(host: str) -> bool:
    return "." not in host or host.endswith(".svc.cluster.local") or host.endswith(".svc")


def validate_production_mtls(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = args.resources
    if not resources or not is_production(args, resources[0].urn):
        return
    root_namespace = args.get_config().get("istioRootNamespace") or DEFAULT_ISTIO_ROOT_NAMESPACE
    mesh_wide_strict = False
    for resource in resources:
        group, kind = kind_of(resource.resource_type)
        props = resource.props
        if group == "security.istio.io" and kind == "PeerAuthentication":
            mode = _mtls_mode(props)
            ports = {port: dig(setting, "mode") for port, setting in (dig(props, "spec", "portLevelMtls") or {}).items()}
            if mode not in ("STRICT", "UNSET") or any(m not in ("STRICT", None) for m in ports.values()):
                report_violation(f"PeerAuthentication {object_name(props, resource.name)} sets mTLS {mode} "
                                 f"{'with port exceptions ' + str(ports) + ' ' if ports else ''}in a production stack; "
                                 "set security.mtlsMode to STRICT.", resource.urn)
            at_root = dig(props, "metadata", "namespace") == root_namespace and not dig(props, "spec", "selector")
            mesh_wide_strict |= at_root and mode == "STRICT"
        elif group == "networking.istio.io" and kind == "DestinationRule" and _in_mesh(dig(props, "spec", "host") or ""):
            for where, tls_mode in _tls_modes(props):
                if tls_mode != "ISTIO_MUTUAL":
                    report_violation(f"DestinationRule {object_name(props, resource.name)} {where} is {tls_mode}; "
                                     "in-mesh traffic in production must use ISTIO_MUTUAL.", resource.urn)
    # A stack that installs no Istio (an app stack) takes the mesh-wide default from its platform stack, where this
    # rule checks it; its own namespace's policy is held to STRICT above.
    if not mesh_wide_strict and any(r.resource_type == HELM_RELEASE for r in resources):
        report_violation(f"Production stack has no mesh-wide PeerAuthentication in {root_namespace} "
                         "(no selector) with mtls.mode STRICT; set security.mtlsMode to STRICT.")


# ---- rule: VirtualService weights sum to 100 ------------------------------------------------------

def validate_virtual_service_weights(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    group, kind = kind_of(args.resource_type)
    if group != "networking.istio.io" or kind != "VirtualService":
        return
    spec = args.props.get("spec") or {}
    for protocol in ("http", "tls", "tcp"):
        for index, route in enumerate(spec.get(protocol) or []):
            destinations = route.get("route") or []
            weights = [d.get("weight") for d in destinations]
            label = route.get("name") or f"{protocol}[{index}]"
            where = f"VirtualService {object_name(args.props, args.name)} route {label}"
            if len(destinations) > 1 and None in weights:
                report_violation(f"{where} splits traffic over {len(destinations)} destinations but not all carry "
                                 "a weight; give every destination a weight.")
            elif any(w is not None for w in weights) and sum(w or 0 for w in weights) != 100:
                report_violation(f"{where} has weights {weights} summing to {sum(w or 0 for w in weights)}, not 100; "
                                 "fix the service's weights in the stack file.")


# ---- rule: every container has requests and limits ------------------------------------------------

def validate_resources_set(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    for container in containers(spec):
        resources = container.spec.get("resources") or {}
        missing = [f"{section}.{quantity}" for section in ("requests", "limits") for quantity in ("cpu", "memory")
                   if not dig(resources, section, quantity)]
        if missing:
            report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} "
                             f"{container.role} {container.name} lacks resources {', '.join(missing)}; "
                             "set requests and limits for CPU and memory.")


# ---- rule: no latest or untagged images -----------------------------------------------------------

def image_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "has no image"
    if "@sha256:" in image:
        return None
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return f"uses untagged image {image}"
    if last_segment.rsplit(":", 1)[1] in ("", "latest"):
        return f"uses image {image}"
    return None


def validate_pinned_images(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is not None:
        for container in containers(spec):
            problem = image_problem(container.spec.get("image"))
            if problem:
                report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} "
                                 f"{container.role} {container.name} {problem}; pin a version tag or digest.")
    elif args.resource_type == HELM_RELEASE:
        for path, value in walk(args.props.get("values") or {}):
            leaf = path.rsplit(".", 1)[-1]
            if leaf == "tag" and str(value) in ("", "latest"):
                report_violation(f"Helm release {args.name} sets {path}={value!r}; pin a version tag.")
            elif leaf == "image" and isinstance(value, str) and "/" in value and image_problem(value):
                report_violation(f"Helm release {args.name} {path} {image_problem(value)}; pin a version tag.")


# ---- rule: production images by digest -----------------------------------------------------------

# Waived until their digests are recorded in Pulumi.prod.yaml's images.digests: the registry could not be read where
# this pack was last changed, and a digest written from anywhere else would be a guess (docs/security.md, Hardening: waivers).
# Remove a repository here once its digest is in the stack file; a production stack running any other image must
# pin it.
UNPINNED_REPOSITORIES_WAIVED = (
    "docker.io/beetravels/carrental-v1", "docker.io/beetravels/carrental-v2", "docker.io/beetravels/currencyexchange",
    "docker.io/beetravels/data-gen-carrental", "docker.io/beetravels/data-gen-destination", "docker.io/beetravels/data-gen-hotel",
    "docker.io/beetravels/destination-v1", "docker.io/beetravels/destination-v2", "docker.io/beetravels/hotel-v1",
    "docker.io/beetravels/hotel-v2", "docker.io/beetravels/ui", "docker.io/library/mongo",
    "docker.io/jaegertracing/all-in-one", "docker.io/jaegertracing/jaeger",  # tracing on Istio 1.6, and on 1.30
)


def image_repository(image: str) -> str:
    head, _, last = image.split("@", 1)[0].rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def validate_digests_in_production(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None or not is_production(args, args.urn):
        return
    waived = args.get_config().get("unpinnedRepositories", list(UNPINNED_REPOSITORIES_WAIVED))
    for container in containers(spec):
        image = container.spec.get("image")
        if isinstance(image, str) and "@sha256:" not in image and image_repository(image) not in waived:
            report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} {container.role} "
                             f"{container.name} runs {image} by tag in a production stack; pin it by digest in the stack "
                             f"file: images.digests[\"{image_repository(image)}\"]: sha256:<digest>.")


# ---- rule: no privileged or root containers -------------------------------------------------------

def container_privilege_problems(container: Container, pod_context: Mapping[str, Any]) -> list[str]:
    context = container.spec.get("securityContext") or {}
    problems = []
    if context.get("privileged"):
        problems.append("is privileged")
    if context.get("allowPrivilegeEscalation"):
        problems.append("allows privilege escalation")
    added = {c.upper() for c in dig(context, "capabilities", "add") or []}
    if added & {"ALL", "SYS_ADMIN"}:
        problems.append(f"adds capabilities {sorted(added & {'ALL', 'SYS_ADMIN'})}")
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if user == 0:
        problems.append("runs as uid 0")
    elif not non_root and not user:
        problems.append("may run as root (set runAsNonRoot: true or a non-zero runAsUser)")
    return problems


def validate_no_root(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return
    if spec.get("hostNetwork") or spec.get("hostPID"):
        report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} shares the node's "
                         "network or process namespace; remove hostNetwork/hostPID.")
    for container in containers(spec):
        for problem in container_privilege_problems(container, spec.get("securityContext") or {}):
            report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} "
                             f"{container.role} {container.name} {problem}.")


# ---- rule: the runtime's default seccomp profile on every pod ------------------------------------

SECCOMP_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"  # Kubernetes <= 1.18, before the field existed
CONFINED_PROFILES = {"RuntimeDefault", "Localhost"}


def _pod_annotations(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    path = _WORKLOAD_POD_SPEC_PATHS.get(kind_of(resource_type)[1])
    return dig(props, *path[:-1], "metadata", "annotations") or {} if path else {}


def seccomp_problem(resource_type: str, props: Mapping[str, Any]) -> str | None:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return None
    if dig(spec, "securityContext", "seccompProfile", "type") in CONFINED_PROFILES:
        return None
    annotation = str(_pod_annotations(resource_type, props).get(SECCOMP_ANNOTATION, ""))
    if annotation in ("runtime/default", "docker/default") or annotation.startswith("localhost/"):
        return None
    unconfined = [c.name for c in containers(spec)
                  if dig(c.spec, "securityContext", "seccompProfile", "type") not in CONFINED_PROFILES]
    return f"runs containers {unconfined} without a seccomp profile" if unconfined else None


def validate_seccomp(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    problem = seccomp_problem(args.resource_type, args.props)
    if problem:
        report_violation(f"{kind_of(args.resource_type)[1]} {object_name(args.props, args.name)} {problem}; set the "
                         "pod's securityContext.seccompProfile.type: RuntimeDefault (Kubernetes 1.19+) or the "
                         f"{SECCOMP_ANNOTATION}: runtime/default pod annotation (1.18 and older).")


# ---- rule: no API token in pods that do not use it ------------------------------------------------

# An app stack's namespace says it (its platform stack installs istiod): the program's components/istio.py.
SIDECAR_JWT_POLICY = "bee-travels.io/sidecar-jwt-policy"


def _sidecars_use_account_token(resources: list[PolicyResource]) -> bool:
    """Istio 1.6's sidecar proves itself to istiod with the pod's own token under first-party-jwt; otherwise (and on
    every current Istio) it gets a projected istio-token volume from the injector."""
    return any((r.resource_type == HELM_RELEASE and dig(r.props, "values", "global", "jwtPolicy") == "first-party-jwt")
               or (r.resource_type == NAMESPACE and dig(r.props, "metadata", "annotations", SIDECAR_JWT_POLICY) == "first-party-jwt")
               for r in resources)


def validate_api_tokens(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    allowed = _sidecars_use_account_token(args.resources)
    for resource in args.resources:
        spec = pod_spec(resource.resource_type, resource.props)
        if spec is None or spec.get("automountServiceAccountToken") is False:
            continue
        if allowed and spec.get("automountServiceAccountToken") is True:
            continue  # mounted on purpose, for the sidecar
        report_violation(f"{kind_of(resource.resource_type)[1]} {object_name(resource.props, resource.name)} mounts its "
                         "ServiceAccount's API token, which nothing in it uses; set automountServiceAccountToken: false"
                         + ("" if allowed else " (the sidecar authenticates with its projected istio-token)")
                         + ".", resource.urn)


# ---- rule: no mirrored traffic into versions that write data --------------------------------------

TIER_LABEL = "data-tier"  # the stack's pod label for where a version keeps its data
WRITING_TIERS = ("mongodb", "cloud")
MIRROR_WRITES_ACCEPTED = "bee-travels.io/mirror-writes-accepted"


def _mirrored_subsets(virtual_service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for route in dig(virtual_service, "spec", "http") or []:
        mirror = route.get("mirror") or {}
        if mirror.get("host") and mirror.get("subset"):
            yield mirror["host"].split(".", 1)[0], mirror["subset"]


def validate_mirrors(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    tiers: dict[tuple[str, str], str] = {}
    for resource in args.resources:
        if kind_of(resource.resource_type)[1] == "Deployment":
            labels = dig(resource.props, "spec", "template", "metadata", "labels") or {}
            if labels.get("app") and labels.get("version"):
                tiers[(labels["app"], labels["version"])] = labels.get(TIER_LABEL, "")
    for resource in args.resources:
        if kind_of(resource.resource_type)[1] != "VirtualService":
            continue
        if dig(resource.props, "metadata", "annotations", MIRROR_WRITES_ACCEPTED) == "true":
            continue
        for service, subset in _mirrored_subsets(resource.props):
            tier = tiers.get((service, subset), "")
            if tier in WRITING_TIERS:
                report_violation(f"VirtualService {object_name(resource.props, resource.name)} mirrors traffic to "
                                 f"{service} {subset}, which keeps its data on the {tier} tier: every mirrored request "
                                 "would write a second time. Mirror a version that writes nothing, or mark the "
                                 f"VirtualService {MIRROR_WRITES_ACCEPTED}: \"true\" (safeToMirror in the stack file).",
                                 resource.urn)


# ---- rule: MongoDB (stateful data) protected in prod ----------------------------------------------

def validate_data_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    group, kind = kind_of(args.resource_type)
    holds_data = (kind == "StatefulSet" and dig(args.props, "spec", "volumeClaimTemplates")) or kind == "PersistentVolumeClaim"
    if holds_data and is_production(args, args.urn) and not args.opts.protect:
        report_violation(f"{kind} {object_name(args.props, args.name)} holds data in a production stack but is not "
                         "protected; register it with protect=True (and retain_on_delete) so no destroy or rename "
                         "can delete it.")


# ---- rule: no LoadBalancer except the ingress gateway ---------------------------------------------

def _is_gateway_chart(chart: Any) -> bool:
    """The chart's name, whether given by name, as a chart folder, or as a pulled <name>-<version>(.tgz) archive."""
    if not isinstance(chart, str):
        return False
    name = re.sub(r"(-\d+\.\d+\.\d+[^/]*?)?(\.tgz)?$", "", chart.rstrip("/").rsplit("/", 1)[-1])
    return name in GATEWAY_CHARTS


def validate_load_balancers(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    group, kind = kind_of(args.resource_type)
    if group == "core" and kind == "Service" and dig(args.props, "spec", "type") == "LoadBalancer":
        if dig(args.props, "metadata", "labels", "istio") != "ingressgateway":
            report_violation(f"Service {object_name(args.props, args.name)} is of type LoadBalancer; only the Istio "
                             "ingress gateway may be exposed outside the cluster. Use ClusterIP and route through "
                             "the Gateway.")
    elif args.resource_type == HELM_RELEASE and not _is_gateway_chart(args.props.get("chart")):
        for path, value in walk(args.props.get("values") or {}):
            if path.rsplit(".", 1)[-1] == "type" and value == "LoadBalancer":
                report_violation(f"Helm release {args.name} sets {path}=LoadBalancer; only the Istio ingress "
                                 "gateway may be exposed outside the cluster.")


# ---- rule: secrets only from Pulumi secrets -------------------------------------------------------

def is_sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE_NAME.search(name)) and not _REFERENCE_NAME.search(name)


def literal_credential_problems(path: str, key: str, value: Any) -> list[str]:
    """Why a plain (non-Secret) value under `key`, found at `path`, looks like a credential, if it does."""
    if not isinstance(value, str) or not value:
        return []
    if is_sensitive_name(key):
        return [f"{path} holds a literal value for a credential"]
    if _CREDENTIAL_IN_URL.search(value):
        return [f"{path} holds a URL with an inline user and password"]
    return []


def _leaf_key(path: str) -> str:
    return re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1]


def _container_problems(container: Container) -> Iterator[str]:
    where = f"{container.role} {container.name}"
    for env in container.spec.get("env") or []:
        name = env.get("name", "")
        yield from literal_credential_problems(f"{where} env {name}", name, env.get("value"))
    for key in ("command", "args"):
        for index, word in enumerate(container.spec.get(key) or []):
            yield from literal_credential_problems(f"{where} {key}[{index}]", "", word)


def validate_secrets_from_pulumi(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    group, kind = kind_of(args.resource_type)
    spec = pod_spec(args.resource_type, args.props)
    problems: list[str] = []
    if spec is not None:
        for container in containers(spec):
            problems += _container_problems(container)
    if group == "core" and kind == "ConfigMap":
        for key, value in (args.props.get("data") or {}).items():
            problems += literal_credential_problems(f"data.{key}", key, value)
    if args.resource_type == HELM_RELEASE:
        for path, value in walk(args.props.get("values") or {}):
            problems += literal_credential_problems(f"values.{path}", _leaf_key(path), value)
    if kind != "Secret":
        for key, value in (dig(args.props, "metadata", "annotations") or {}).items():
            problems += literal_credential_problems(f"annotation {key}", key, value)
    what = f"Helm release {args.name}" if args.resource_type == HELM_RELEASE else \
        f"{kind} {object_name(args.props, args.name)}"
    for problem in problems:
        report_violation(f"{what}: {problem}; keep the value as a Pulumi secret (`pulumi config set --secret`, or "
                         "generated) and hand it over through a Kubernetes Secret (secretKeyRef or a Secret volume).")


# ---- the pack -------------------------------------------------------------------------------------

POLICIES = [
    StackValidationPolicy(
        name="prod-strict-mtls",
        description="Production stacks enforce STRICT mutual TLS mesh-wide and ISTIO_MUTUAL on in-mesh destinations.",
        validate=validate_production_mtls,
        config_schema=PolicyConfigSchema(properties={
            **_PRODUCTION_STACKS_SCHEMA.properties,
            "istioRootNamespace": {"type": "string", "default": DEFAULT_ISTIO_ROOT_NAMESPACE},
        }),
    ),
    ResourceValidationPolicy(
        name="virtualservice-weights-sum-100",
        description="Every VirtualService route that splits traffic gives each destination a weight, summing to 100.",
        validate=validate_virtual_service_weights,
    ),
    ResourceValidationPolicy(
        name="container-requests-and-limits",
        description="Every container and init container sets CPU and memory requests and limits.",
        validate=validate_resources_set,
    ),
    ResourceValidationPolicy(
        name="pinned-images",
        description="No container or Helm release uses a `latest` or untagged image.",
        validate=validate_pinned_images,
    ),
    ResourceValidationPolicy(
        name="production-images-by-digest",
        description="In production stacks, every image the program runs is pinned by digest (images.digests).",
        validate=validate_digests_in_production,
        config_schema=PolicyConfigSchema(properties={
            **_PRODUCTION_STACKS_SCHEMA.properties,
            "unpinnedRepositories": {"type": "array", "items": {"type": "string"}, "default": list(UNPINNED_REPOSITORIES_WAIVED),
                                     "description": "Repositories a production stack may still run by tag (waivers)."},
        }),
    ),
    ResourceValidationPolicy(
        name="no-privileged-or-root",
        description="No container runs privileged, as root, with privilege escalation or on the node's namespaces.",
        validate=validate_no_root,
    ),
    ResourceValidationPolicy(
        name="runtime-default-seccomp",
        description="Every pod runs under the container runtime's default seccomp profile (or a local one).",
        validate=validate_seccomp,
    ),
    StackValidationPolicy(
        name="no-unneeded-api-token",
        description="Pods do not mount a ServiceAccount API token unless their sidecar authenticates with it "
                    "(Istio 1.6 with first-party-jwt), and then say so explicitly.",
        validate=validate_api_tokens,
    ),
    StackValidationPolicy(
        name="no-mirrored-writes",
        description="Traffic is mirrored only to versions that write no data, unless the stack says it is safe.",
        validate=validate_mirrors,
    ),
    ResourceValidationPolicy(
        name="data-protected-in-prod",
        description="In production stacks, StatefulSets with volumes (MongoDB) and volume claims are protected.",
        validate=validate_data_protected,
        config_schema=_PRODUCTION_STACKS_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="no-loadbalancer-except-gateway",
        description="Only the Istio ingress gateway is exposed through a LoadBalancer Service.",
        validate=validate_load_balancers,
    ),
    ResourceValidationPolicy(
        name="secrets-from-pulumi-secrets",
        description="Credentials reach workloads only through Kubernetes Secrets built from Pulumi secrets, "
                    "never as literals in env, arguments, ConfigMaps, annotations or Helm values.",
        validate=validate_secrets_from_pulumi,
    ),
]

ENFORCEMENT = EnforcementLevel.MANDATORY
