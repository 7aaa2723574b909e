"""Both stacks run end to end under the mock engine, in the documented order, and render valid objects."""

import ast
import re
from pathlib import Path

import pytest

from config.settings import SECRET_KEYS, Settings
from harness import schema_validation as sv
from tools import config_schema
from tools.stack_run import ROOT, secret_paths, unwrap

ISTIO_GROUP = re.compile(r"\.istio\.io/")


def _versions(run):
    istio = "1.30" if run.outputs["istioVersion"].startswith("1.30") else "1.6"
    kubernetes = "1.33" if istio == "1.30" else "1.18"
    return istio, kubernetes


def test_every_kubernetes_object_validates_against_the_target_clusters_schema(any_stack):
    _, kubernetes = _versions(any_stack)
    sv.require_kubernetes_schemas(kubernetes)
    objects = [r for r in any_stack.kubernetes_objects() if not ISTIO_GROUP.search(r.manifest().get("apiVersion", "") + "/")]
    assert len(objects) > 20
    errors = [error for r in objects for error in sv.validate_kubernetes_object(r.manifest(), kubernetes)]
    assert errors == []


def test_every_istio_object_validates_against_istios_own_crd_schema(any_stack):
    istio, _ = _versions(any_stack)
    sv.require_istio_schemas(istio)
    objects = [r for r in any_stack.kubernetes_objects() if ISTIO_GROUP.search(r.manifest().get("apiVersion", "") + "/")]
    assert {r.kind for r in objects} >= {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry"}
    errors = [error for r in objects for error in sv.validate_istio_object(r.manifest(), istio)]
    assert errors == []


def test_main_wires_components_in_the_data_flow_order():
    program = ast.parse((ROOT / "__main__.py").read_text())
    calls = [node.func.id for node in sorted(
        (node for node in ast.walk(program) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)),
        key=lambda node: (node.lineno, node.col_offset))]
    order = ["load_settings", "IstioMesh", "MongoDB", "CloudDatabase", "MeshService", "TrafficRules", "MeshSecurity", "Observability"]
    assert [name for name in calls if name in order] == order


def _release(run, release_name):
    return next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == release_name)


def test_workloads_wait_for_the_control_plane_and_the_app_namespace_but_not_the_ingress_gateway(any_stack):
    """Helm waits for the gateway's load balancer address; a slow cloud load balancer must not hold the app back."""
    base, istiod = _release(any_stack, "istio-base"), next(
        r for r in any_stack.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"].startswith("istiod"))
    gateway = _release(any_stack, "istio-ingressgateway")
    app_namespace = next(r for r in any_stack.of_type("Namespace") if r.k8s_name == "bee-travels")
    kinds = ("Deployment", "StatefulSet", "Job", "Gateway", "VirtualService", "DestinationRule", "AuthorizationPolicy", "Sidecar")
    for resource in (r for r in any_stack.resources if r.kind in kinds and r.custom):
        for needed in (base, istiod, app_namespace):
            assert any_stack.waits_for(resource, needed), f"{resource.kind} {resource.name} does not wait for {needed.name}"
        assert not any_stack.waits_for(resource, gateway), f"{resource.kind} {resource.name} waits for the ingress gateway"


def test_every_resource_belongs_to_a_component(any_stack):
    orphans = [r.name for r in any_stack.resources if not r.type.startswith("beetravels:") and r.parent is None]
    assert orphans == []


def test_secret_values_never_appear_outside_secret_wrappers(any_stack):
    for resource in any_stack.resources:
        plain = str(unwrap(resource.inputs, mask="<secret>"))
        assert "mock-password" not in plain, f"{resource.type} {resource.name} holds a password in plain text"
    assert "mongoConnectionUrl" in any_stack.outputs
    assert secret_paths(any_stack.outputs["mongoConnectionUrl"]) == ["."]


def test_pulumi_yaml_declares_every_key_the_program_reads():
    assert (ROOT / "Pulumi.yaml").read_text() == config_schema.render(), "run `make config-schema`"


def test_the_configuration_reference_is_generated_from_the_model():
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert reference == config_schema.reference(), "docs/configuration.md is stale: run `make config-schema`"
    sections = re.findall(r"^## `([^`]+)`$", reference, re.MULTILINE)
    assert sections == [field.alias or name for name, field in Settings.model_fields.items()]
    rows = set(re.findall(r"^\| `([^`]+)` \|", reference, re.MULTILINE))
    assert {"services.<service>.versions.<version>.tier", "istio.ingressGateway.rateLimit.paths", *SECRET_KEYS} <= rows


def test_config_schema_check_fails_on_either_stale_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(config_schema, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    assert config_schema.main([]) == 0 and config_schema.main(["--check"]) == 0
    for name in config_schema.GENERATED:
        fresh = (tmp_path / name).read_text()
        (tmp_path / name).write_text(fresh + "\n")
        assert config_schema.main(["--check"]) == 1 and name in capsys.readouterr().err
        (tmp_path / name).write_text(fresh)


def test_only_the_settings_loader_reads_stack_config():
    readers = [str(path.relative_to(ROOT)) for layer in ("domain", "config", "builders", "components") for path in (ROOT / layer).glob("*.py")
               if re.search(r"pulumi\.Config\(|get_config|require_object", path.read_text())]
    assert readers == ["config/stack_config.py"]


@pytest.mark.parametrize("stack_file", sorted(Path(ROOT).glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_stack_files_hold_no_plaintext_credentials(stack_file):
    text = stack_file.read_text().lower()
    assert "password" not in text and "mongodb://" not in text


OURS = {"domain", "config", "builders", "components", "tools", "harness", "bench", "tests", "policy"}
# Each layer and what it may import at run time: domain (the app's and the releases' facts) <- config (the settings
# model, loading, rules) <- builders (pure specs and values) <- components (resources) <- __main__.
LAYERS = {"domain": {"domain"}, "config": {"config", "domain"}, "builders": {"builders", "domain"},
          "components": {"components", "builders", "config", "domain"}}
# builders take settings objects: they may name config's types, for annotations only.
TYPE_ONLY = {"builders": {"config"}}


def _imports(path: Path, *, type_only: bool = False) -> set[str]:
    """Top-level packages a module imports: at run time, or (type_only) only inside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
               for statement in block.body for node in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and (id(node) in guarded) == type_only:
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found |= {name.split(".")[0] for name in names}
    return found & OURS


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below_it(layer):
    for path in _modules(layer):
        assert _imports(path) <= LAYERS[layer], f"{path.relative_to(ROOT)} imports {sorted(_imports(path) - LAYERS[layer])}"
        allowed_types = LAYERS[layer] | TYPE_ONLY.get(layer, set())
        assert _imports(path, type_only=True) <= allowed_types, f"{path.relative_to(ROOT)} names {sorted(_imports(path, type_only=True) - allowed_types)}"


def test_the_commands_never_import_the_components():
    """tools/ reads what the program decides through domain, config and builders: a command never loads a component
    (and so never registers a resource, nor pulls in their SDK imports, by reading a name)."""
    for path in _modules("tools"):
        assert "components" not in _imports(path) | _imports(path, type_only=True), f"{path.relative_to(ROOT)} imports components"


# Who may import the test-support and the test folders: the harness serves tests and benchmarks and imports neither;
# nothing outside tests/ imports a test module.
SUPPORT_IMPORTS = {"harness": {"tests", "bench", "components"}, "bench": {"tests"}, "tools": {"tests", "harness", "bench"},
                   "policy": {"tests", "harness", "bench"}}


@pytest.mark.parametrize("folder", SUPPORT_IMPORTS)
def test_support_code_never_imports_the_tests(folder):
    for path in _modules(folder):
        if {"tests", "venv"} & set(path.relative_to(ROOT).parts[1:]):
            continue  # the policy pack's own tests and its virtualenv
        wrong = (_imports(path) | _imports(path, type_only=True)) & SUPPORT_IMPORTS[folder]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_every_error_a_command_raises_is_a_command_error():
    """One error type for the commands: each error class under tools/ is a kind of CommandError, so every command's
    `except CommandError` reports reading, fetching and planning failures alike."""
    import importlib

    from tools.errors import CommandError
    errors = {}
    for path in _modules("tools"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(ast.unparse(base).endswith(("Error", "Exception")) for base in node.bases):
                errors[f"tools.{path.stem}.{node.name}"] = getattr(importlib.import_module(f"tools.{path.stem}"), node.name)
    assert len(errors) >= 5, errors
    assert [name for name, cls in errors.items() if not issubclass(cls, CommandError)] == []


def test_the_domain_facts_load_without_pulumi_or_the_settings_model():
    """What config and the commands read of the app and the releases costs no SDK import."""
    third_party = {"pulumi", "pulumi_kubernetes", "pulumi_random", "pydantic", "yaml"}
    for path in _modules("domain"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & third_party, f"{path.relative_to(ROOT)} imports {sorted(imported & third_party)}"


def test_the_layering_check_sees_a_wrong_import(tmp_path):
    """The check reads run-time imports and type-only ones apart: a builder importing config at run time is caught."""
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nfrom domain.catalogue import CATALOGUE\n"
                      "if TYPE_CHECKING:\n    from config.settings import Settings\nfrom config.rules import Problem\n")
    assert _imports(module) == {"domain", "config"} and _imports(module, type_only=True) == {"config"}
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from config.settings import Settings\n")
    assert _imports(module) == set()


def test_no_module_of_the_program_imports_itself_back():
    """No import cycle among the program's modules (loading and rules among them), checked on the import graph."""
    modules = {f"{path.parent.name}.{path.stem}": path for layer in ("domain", "config", "builders", "components")
               for path in (ROOT / layer).glob("*.py") if path.stem != "__init__"}
    graph = {name: {module for module in _module_imports(path) if module in modules} for name, path in modules.items()}

    def reaches(start, target, seen=()):
        return any(nxt == target or (nxt not in seen and reaches(nxt, target, (*seen, nxt))) for nxt in graph[start])

    assert [name for name in graph if reaches(name, name)] == []


def _module_imports(path):
    tree = ast.parse(path.read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return found | {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                    for alias in node.names}
