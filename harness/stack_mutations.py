"""Single mutations of the committed stack files, as a new user makes them, and what became of each.

A mutation changes one value the stack file holds (or removes its key, or misspells it) and runs the program under
the mock engine. Its outcome is one of:
- refused: the project's StackConfigError, naming the stack file and the key, with nothing registered;
- accepted: the program declared its objects; whether the servers take them is the caller's to check;
- crashed: any other error, or a refusal that does not name the stack file or the key, or registered resources.

    python -m harness.stack_mutations [--stack dev ...] [--schemas]   # every mutation: the census
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.stack_config import StackConfigError
from harness.schema_validation import validate_istio_object, validate_kubernetes_object
from tools.stack_files import default_stack_file
from tools.stack_run import DELETE, PROJECT, StackRun, run_stack

STACKS = ("dev", "prod", "dev-current")
# Strings a user pastes by mistake, and ones that would run code if a value reached a shell or MongoDB's JavaScript.
INJECTIONS = ("$(touch /tmp/pwned)", "`id`", "x'; db.dropDatabase(); '", 'x" && reboot && "', "a\nb", "a;b")
SPECIAL_STRINGS = ("", " ", "-1", "0", "1000000000000", "v1", "null", *INJECTIONS)
SPECIAL_NUMBERS = (-1, 0, 2**31, 10**12, 0.5, -0.5)


@dataclass(frozen=True)
class Leaf:
    """One value of the stack file: the top-level key it lives under and the path below it."""

    stack: str
    path: tuple[str | int, ...]  # (config key without the project prefix, then map keys and list indices)
    value: Any

    @property
    def key(self) -> str:
        """As `pulumi config set --path` and the project's errors write it."""
        text = str(self.path[0])
        for part in self.path[1:]:
            text += f"[{part}]" if isinstance(part, int) else (f'["{part}"]' if "." in part else f".{part}")
        return text


@dataclass(frozen=True)
class Mutation:
    leaf: Leaf
    value: Any  # DELETE removes the key; a Misspelt renames it

    def describe(self) -> str:
        new = "removed" if self.value is DELETE else repr(self.value)
        return f"Pulumi.{self.leaf.stack}.yaml {self.leaf.key}: {self.leaf.value!r} -> {new}"


@dataclass(frozen=True)
class Misspelt:
    """The key itself mistyped, as `pulumi config set` would store it."""

    name: str

    def __repr__(self) -> str:
        return f"key renamed to {self.name!r}"


def stack_file_config(stack: str) -> dict[str, Any]:
    config = yaml.safe_load(default_stack_file(stack).read_text())["config"]
    return {key.removeprefix(f"{PROJECT}:"): value for key, value in config.items()}


def leaves(stack: str) -> list[Leaf]:
    """Every scalar and list the stack file holds, secure values left out (a user cannot type a ciphertext)."""
    found: list[Leaf] = []

    def walk(path: tuple, value: Any) -> None:
        if isinstance(value, dict) and set(value) == {"secure"}:
            return
        if isinstance(value, dict):
            for key, inner in value.items():
                walk((*path, key), inner)
            return
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for index, inner in enumerate(value):
                walk((*path, index), inner)
            return
        found.append(Leaf(stack, path, value))

    for key, value in stack_file_config(stack).items():
        walk((key,), value)
    return found


def mutated_values(leaf: Leaf) -> list[Any]:
    """What a user might write instead: the census' list, and what the property test draws from."""
    value = leaf.value
    candidates: list[Any] = [DELETE, Misspelt(_misspelling(str(leaf.path[-1])))] if isinstance(leaf.path[-1], str) else [DELETE]
    if isinstance(value, bool):
        candidates += ["yes", 1, None, not value]
    elif isinstance(value, (int, float)):
        candidates += [*SPECIAL_NUMBERS, str(value), value * 1000, True]
    elif isinstance(value, str):
        candidates += [*SPECIAL_STRINGS, value.upper(), f" {value}", value + value, 5, value.replace("i", "I")]
    elif isinstance(value, list):
        candidates += [[], value + value[:1], [None], ", ".join(map(str, value))]
    return [candidate for candidate in candidates if candidate != value or type(candidate) is not type(value)]


def _misspelling(name: str) -> str:
    return name[:-1] if len(name) > 1 else name + name


def apply(mutation: Mutation) -> dict[str, Any]:
    """The stack file's config with the mutation made: {top-level key: its new value} to hand to run_stack."""
    config = stack_file_config(mutation.leaf.stack)
    top = mutation.leaf.path[0]
    if len(mutation.leaf.path) == 1:
        if isinstance(mutation.value, Misspelt):
            return {top: DELETE, mutation.value.name: config[top]}
        return {top: mutation.value}
    tree = copy.deepcopy(config[top])
    target = tree
    for part in mutation.leaf.path[1:-1]:
        target = target[part]
    last = mutation.leaf.path[-1]
    if mutation.value is DELETE:
        del target[last]
    elif isinstance(mutation.value, Misspelt):
        target[mutation.value.name] = target.pop(last)
    else:
        target[last] = mutation.value
    return {top: tree}


@dataclass(frozen=True)
class Outcome:
    kind: str  # refused, accepted, crashed
    run: StackRun
    why: str = ""


def outcome(mutation: Mutation, chart_edits: dict[str, str]) -> Outcome:
    stack = mutation.leaf.stack
    run = run_stack(stack, {**apply(mutation), **chart_edits})
    if run.error is None:
        return Outcome("accepted", run)
    message = str(run.error)
    if not isinstance(run.error, StackConfigError):
        return Outcome("crashed", run, f"{type(run.error).__name__}: {message}")
    if run.resources:
        return Outcome("crashed", run, f"refused after registering {len(run.resources)} resources")
    if not message.startswith(f"Pulumi.{stack}.yaml has "):
        return Outcome("crashed", run, f"the refusal does not name Pulumi.{stack}.yaml: {message}")
    if f"{PROJECT}:" not in message:
        return Outcome("crashed", run, f"the refusal names no key: {message}")
    return Outcome("refused", run)


def _stack_setting(stack: str, key: str, default: str) -> str:
    config = stack_file_config(stack)
    section, _, field = key.partition(".")
    return str((config.get(section) or {}).get(field, default) if field else config.get(section, default))


def istio_version(stack: str) -> str:
    return _stack_setting(stack, "istio.version", "1.6.14")


def kubernetes_minor(stack: str) -> str:
    return ".".join(_stack_setting(stack, "kubernetesVersion", "1.18").split(".")[:2])


def schema_errors(stack: str, manifests: list[dict]) -> list[str]:
    errors = []
    for manifest in manifests:
        group = manifest.get("apiVersion", "").rpartition("/")[0]
        if group.endswith("istio.io"):
            errors += validate_istio_object(manifest, istio_version(stack))
        else:
            errors += validate_kubernetes_object(manifest, kubernetes_minor(stack))
    return errors


def every_mutation(stacks: tuple[str, ...]) -> Iterator[Mutation]:
    for stack in stacks:
        for leaf in leaves(stack):
            for value in mutated_values(leaf):
                yield Mutation(leaf, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", action="append", choices=STACKS)
    parser.add_argument("--json", type=Path, help="also write every mutation's outcome here")
    parser.add_argument("--schemas", action="store_true", help="check every accepted mutation's objects against the "
                        "Kubernetes and Istio schemas of its stack (an accepted one that fails them counts as crashed)")
    args = parser.parse_args(argv)
    from harness.real_charts import real_charts  # the charts the stacks pin: the census runs the program as the tests do
    from harness.sim_cluster import declared_manifests

    charts = real_charts()
    counts: Counter[tuple[str, str]] = Counter()
    records = []
    for mutation in every_mutation(tuple(args.stack or STACKS)):
        result = outcome(mutation, charts.edits(istio_version(mutation.leaf.stack)))
        if args.schemas and result.kind == "accepted":
            errors = schema_errors(mutation.leaf.stack, declared_manifests(result.run))
            if errors:
                result = Outcome("crashed", result.run, f"accepted, but its objects fail their schemas: {errors[:3]}")
        counts[(mutation.leaf.stack, result.kind)] += 1
        records.append({"mutation": mutation.describe(), "outcome": result.kind, "why": result.why})
        if result.kind == "crashed":
            print(f"crashed: {mutation.describe()}: {result.why}", file=sys.stderr)
    for stack in args.stack or STACKS:
        print(f"{stack}: " + ", ".join(f"{kind} {counts[(stack, kind)]}" for kind in ("accepted", "refused", "crashed")))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    return 1 if any(kind == "crashed" for _, kind in counts) else 0


if __name__ == "__main__":
    sys.exit(main())
