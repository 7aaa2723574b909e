"""`make up` / `make down` on a new machine: which stack and cluster, why, and the exact commands (no Docker needed).

The plan (tools/up_plan.py) is fed crafted facts: the cgroup version Docker runs, a Kubernetes context or none, the
version that context's server reports. scripts/up.sh is then run end to end against stand-in `kind`, `docker` and
`pulumi` commands that only log what they were asked, in a copy of the project, so nothing here starts a container.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tools import up_plan
from tools.stack_run import ROOT
from tools.up_plan import KIND_VERSION, NODE_IMAGES, Facts, Record, Stop, plan_delete_cluster, plan_down, plan_up, stack_for

IMAGE_1_18, IMAGE_1_33 = NODE_IMAGES[18], NODE_IMAGES[33]


def facts(cgroup=2, context="", server=None, docker=True, record=None) -> Facts:
    return Facts(cgroup_version=cgroup, context=context, server_version=server, docker=docker, record=record)


def kind_create(image: str) -> list[str]:
    return ["kind", "create", "cluster", "--name", "bee-travels", "--image", image, "--config", "scripts/kind-config.yaml", "--wait", "120s"]


def pulumi_up(stack: str) -> list[str]:
    return ["pulumi", "up", "--stack", stack, "--policy-pack", "policy"]


def stopped(facts_: Facts, stack: str | None = None) -> str:
    with pytest.raises(Stop) as stop:
        plan_up(facts_, stack)
    return str(stop.value)


# ---- no context: a kind cluster the host can run ---------------------------------------------------

def test_on_cgroup_v2_with_no_context_it_creates_a_1_33_cluster_and_deploys_the_current_generation():
    plan = plan_up(facts(cgroup=2))
    assert plan.stack == "dev-current" and plan.istio_version == "1.30.3"
    assert plan.commands == [kind_create(IMAGE_1_33), pulumi_up("dev-current")]
    assert plan.context == "kind-bee-travels" and plan.kind_cluster == "bee-travels"
    said = " ".join(plan.reasons)
    assert "no Kubernetes context" in said and "cgroup v2" in said and "Kubernetes 1.18" in said and "dev-current" in said


def test_on_cgroup_v1_with_no_context_it_creates_a_1_18_cluster_and_deploys_dev():
    plan = plan_up(facts(cgroup=1))
    assert plan.stack == "dev" and plan.istio_version == "1.6.14"
    assert plan.commands == [kind_create(IMAGE_1_18), pulumi_up("dev")]
    assert "cgroup v1" in " ".join(plan.reasons)


def test_an_unknown_cgroup_version_gets_the_generation_that_starts_on_either():
    assert plan_up(facts(cgroup=None)).commands == [kind_create(IMAGE_1_33), pulumi_up("dev-current")]


def test_a_stack_asked_for_is_deployed_on_the_node_image_of_its_kubernetes_version():
    assert plan_up(facts(cgroup=1), "dev-current").commands == [kind_create(IMAGE_1_33), pulumi_up("dev-current")]
    assert plan_up(facts(cgroup=1), "prod").commands == [kind_create(IMAGE_1_18), pulumi_up("prod")]


def test_dev_asked_for_on_cgroup_v2_stops_before_anything_is_created_and_says_what_runs_instead():
    message = stopped(facts(cgroup=2), "dev")
    assert "cgroup v2" in message and "1.15-1.18" in message and "nothing was created" in message
    assert "without STACK" in message and "dev-current" in message


def test_no_context_and_no_docker_stops():
    assert "Docker" in stopped(facts(docker=False))


def test_pulumi_yes_is_planned_as_the_ci_runs_it():
    assert plan_up(facts(), yes=True).deploy == [*pulumi_up("dev-current"), "--yes", "--skip-preview"]


# ---- a context: its cluster, checked against the stack's range first ------------------------------

@pytest.mark.parametrize(("server", "stack"), [("1.33.4", "dev-current"), ("1.18.20", "dev")])
def test_with_a_context_it_deploys_the_stack_that_fits_that_cluster_and_creates_none(server, stack):
    plan = plan_up(facts(context="work", server=server))
    assert plan.commands == [pulumi_up(stack)] and plan.create_cluster == []
    assert plan.context == "work" and f"Kubernetes {server}" in plan.reasons[0]


def test_a_context_outside_every_stacks_range_stops_naming_the_ranges():
    message = stopped(facts(context="work", server="1.28.3"))
    assert "1.15-1.18" in message and "1.32-1.36" in message and "nothing was created" in message


@pytest.mark.parametrize(("stack", "server", "range_", "fix"), [
    ("dev", "1.33.1", "1.15-1.18", "STACK=dev-current make up"),
    ("dev-current", "1.18.20", "1.32-1.36", "Kubernetes 1.32-1.36 cluster"),
    ("dev-current", "1.29.0", "1.32-1.36", "Kubernetes 1.32-1.36 cluster"),
])
def test_a_context_outside_the_asked_for_stacks_range_stops_naming_the_range_and_the_fix(stack, server, range_, fix):
    message = stopped(facts(context="work", server=server), stack)
    assert range_ in message and fix in message and "nothing was created" in message


def test_a_cluster_in_range_on_another_minor_stops_with_the_config_change_that_fits_it():
    message = stopped(facts(context="work", server="1.34.2"))
    assert "pulumi config set --stack dev-current kubernetesVersion 1.34" in message


def test_a_context_whose_server_cannot_be_reached_stops():
    assert "could not be read" in stopped(facts(context="work", server=None))


# ---- one deployment per checkout, and what the end of `make up` prints ----------------------------

def test_a_rerun_on_the_cluster_it_made_deploys_the_recorded_stack_there():
    record = Record("dev-current", "kind-bee-travels", "bee-travels")
    plan = plan_up(facts(context="kind-bee-travels", server="1.33.1", record=record))
    assert plan.commands == [pulumi_up("dev-current")]
    assert "http://localhost:8080/" in plan.next_steps[0]


@pytest.mark.parametrize(("now", "stack"), [("other", None), ("", None), ("kind-bee-travels", "prod")])
def test_a_second_deployment_elsewhere_stops_until_make_down(now, stack):
    record = Record("dev", "kind-bee-travels", "bee-travels")
    assert "make down" in stopped(facts(context=now, server="1.18.20", record=record), stack)


def test_the_end_message_gives_the_gateway_url_and_a_live_canary_split_command():
    steps = plan_up(facts()).next_steps
    assert steps[0].endswith("http://localhost:8080/")
    assert steps[-1].strip() == (".venv/bin/python -m tools.e2e --namespace bee-travels --stack dev-current split --gateway http://localhost:8080 "
                                 "--service carrental --weights '{\"v1\": 50, \"v2\": 50}'")


def test_on_a_cluster_it_did_not_make_the_ui_is_reached_by_port_forward():
    steps = plan_up(facts(context="work", server="1.33.0")).next_steps
    assert "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80" in steps[0]


def test_a_stack_file_the_program_would_refuse_stops_make_up_before_a_cluster_is_made(monkeypatch, tmp_path):
    """The plan reads the stack as `pulumi up` does, rules included: weights that do not add up stop it with the
    program's own list of problems, before kind is asked for anything."""
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace("weights: {v1: 50, v2: 50}", "weights: {v1: 50, v2: 40}", 1)
    assert "v2: 40" in text
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    monkeypatch.setattr(up_plan, "ROOT", tmp_path)
    with pytest.raises(Stop, match=r"(?s)Pulumi.broken.yaml has 1 configuration problem.*services\.\w+\.weights: weights add up to 90"):
        up_plan.stack_target("broken")


def test_the_gateway_node_ports_of_both_stacks_reach_the_host_through_the_kind_config():
    for stack in up_plan.AUTO_STACKS:
        gateway = up_plan.stack_target(stack).settings.istio.ingress_gateway
        assert gateway.service_type == "NodePort"
        assert up_plan.kind_host_port(gateway.http_node_port) == 8080 and up_plan.kind_host_port(gateway.https_node_port) == 8443


# ---- make down, make delete-cluster --------------------------------------------------------------

def test_down_destroys_the_stack_then_deletes_the_kind_cluster_make_up_created():
    plan = plan_down(facts(context="kind-bee-travels", record=Record("dev-current", "kind-bee-travels", "bee-travels")), yes=True)
    assert plan.destroy == ["pulumi", "destroy", "--stack", "dev-current", "--yes", "--skip-preview"]
    assert plan.delete_cluster == ["kind", "delete", "cluster", "--name", "bee-travels"]


def test_down_never_deletes_a_cluster_make_up_did_not_create():
    plan = plan_down(facts(context="work", record=Record("dev-current", "work", None)))
    assert plan.destroy == ["pulumi", "destroy", "--stack", "dev-current"] and plan.delete_cluster == []
    assert plan_delete_cluster(Record("dev-current", "work", None)).delete_cluster == []
    assert plan_delete_cluster(None).delete_cluster == []
    assert plan_down(facts(context="work")).destroy == []  # nothing recorded, nothing removed


def test_down_on_another_context_stops_rather_than_destroy_the_wrong_cluster():
    with pytest.raises(Stop, match="kubectl config use-context kind-bee-travels"):
        plan_down(facts(context="work", record=Record("dev", "kind-bee-travels", "bee-travels")))


def test_the_record_keeps_a_cluster_make_up_made_only_while_the_deployment_is_on_it():
    made = Record("dev", "kind-bee-travels", "bee-travels")
    assert up_plan.updated_record(made, "dev", "kind-bee-travels", None) == made
    assert up_plan.updated_record(made, "dev", "work", None) == Record("dev", "work", None)
    assert up_plan.updated_record(None, "dev-current", "kind-x", "x") == Record("dev-current", "kind-x", "x")


def test_preview_destroy_and_e2e_act_on_the_stack_asked_for_else_the_one_make_up_deployed_else_dev():
    deployed = Record("dev-current", "kind-bee-travels", "bee-travels")
    assert [stack_for(asked, record)[0].stack for asked, record in (("prod", deployed), (None, deployed), (None, None))] == \
        ["prod", "dev-current", "dev"]


# ---- the facts ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("docker_info", "filesystem", "version"), [
    ("2\n", "", 2), ("1\n", "cgroup2fs", 1), ("", "cgroup2fs\n", 2), ("", "tmpfs\n", 1), ("", "", None)])
def test_the_cgroup_version_comes_from_docker_else_from_the_cgroup_filesystem(docker_info, filesystem, version):
    assert up_plan.cgroup_version_from(docker_info, filesystem) == version


def test_the_current_context_is_the_first_kubeconfig_that_names_one(tmp_path):
    (tmp_path / "a").write_text(yaml.safe_dump({"current-context": ""}))
    (tmp_path / "b").write_text(yaml.safe_dump({"current-context": "kind-bee-travels"}))
    assert up_plan.current_context({"KUBECONFIG": f"{tmp_path / 'missing'}:{tmp_path / 'a'}:{tmp_path / 'b'}"}) == "kind-bee-travels"
    assert up_plan.current_context({"HOME": str(tmp_path)}) == ""


# ---- the pins ----------------------------------------------------------------------------------

def test_one_kind_release_and_each_node_image_by_digest_for_each_stack_make_up_creates_a_cluster_for():
    assert re.search(r"^KIND_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1) == KIND_VERSION
    for minor, image in NODE_IMAGES.items():
        assert re.fullmatch(rf"kindest/node:v1\.{minor}\.\d+@sha256:[0-9a-f]{{64}}", image), image
    assert {up_plan.stack_target(stack).kubernetes_minor for stack in up_plan.AUTO_STACKS} == set(NODE_IMAGES)


def test_the_readme_quick_start_says_what_make_up_does():
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for fact in ("make up", "make down", "dev-current", "cgroup v1", "cgroup v2", f"kind {KIND_VERSION}",
                 *(image.split("@")[0].removeprefix("kindest/node:v") for image in NODE_IMAGES.values())):
        assert fact in quick_start, fact


# ---- the command line and scripts/up.sh ----------------------------------------------------------

def bash_arrays(assignments: str, *names: str) -> dict[str, list[str]]:
    """What bash makes of the plan's assignments: each name's words, as up.sh would use them."""
    script = 'eval "$(cat)"; ' + "; ".join(f'printf "%s\\0" "${{{name}[@]}}"; printf "\\1"' for name in names)
    out = subprocess.run(["bash", "-c", script], input=assignments, capture_output=True, text=True, check=True).stdout
    return {name: [word for word in part.split("\0") if word] for name, part in zip(names, out.split("\1"), strict=False)}


def test_the_command_line_plan_is_what_bash_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(up_plan, "RECORD", tmp_path / "make-up.json")
    assert up_plan.main(["up", "--cgroup-version", "2", "--context", "", "--server-version", "", "--docker"]) == 0
    out, err = capsys.readouterr()
    assert "cgroup v2" in err  # said before anything runs
    words = bash_arrays(out, "create_cluster", "deploy", "stack", "next_steps")
    assert words["create_cluster"] == kind_create(IMAGE_1_33) and words["deploy"] == pulumi_up("dev-current")
    assert words["stack"] == ["dev-current"] and "tools.e2e" in words["next_steps"][0]
    assert up_plan.main(["up", "--stack", "dev", "--cgroup-version", "2", "--context", "", "--server-version", "", "--docker"]) == 2
    assert "nothing was created" in capsys.readouterr().err


@contextlib.contextmanager
def api_server(kubeconfig: Path, context: str, version: str) -> Iterator[None]:
    """A loopback stand-in for a cluster's API server that answers /version, and a kubeconfig whose context is it."""
    class Version(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"gitVersion": version}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Version)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": context, "contexts": [{"name": context, "context": {"cluster": context}}],
        "clusters": [{"name": context, "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}]}))
    try:
        yield
    finally:
        server.shutdown()


STAND_INS = {
    # Each logs its arguments; kind also writes the context it would, docker answers `docker info`.
    "kind": 'echo "kind $*" >> "$LOG"\n'
            'case "$1 $2" in\n'
            '  "version ") echo "kind v0.29.0 go1.24 linux/amd64" ;;\n'
            '  "create cluster") printf "current-context: kind-%s\\n" "$4" > "$KUBECONFIG" ;;\n'
            '  "delete cluster") rm -f "$KUBECONFIG" ;;\n'
            'esac\n',
    "docker": 'echo "docker $*" >> "$LOG"; [ "$1" = info ] && echo "$CGROUP"\n',
    "pulumi": 'echo "pulumi $*" >> "$LOG"; [ "$1" = version ] && echo "v$PULUMI_VERSION"\n'
              '[ "$1 $2" = "stack export" ] && echo \'{"version": 3, "deployment": {}}\'; true\n',
    "make": 'echo "make $*" >> "$LOG"\n',
    "curl": 'echo "curl $*" >> "$LOG"; exit 1\n',
}


@pytest.fixture()
def project(tmp_path):
    """A copy of what scripts/up.sh and the plan read, with stand-ins first on PATH (the real docker is never reached)."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for name in ("up.sh", "kind-config.yaml"):
        shutil.copy2(ROOT / "scripts" / name, root / "scripts" / name)
    shutil.copytree(ROOT / "tools", root / "tools", ignore=shutil.ignore_patterns("toolchain", "__pycache__"))
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(path, root / path.name)
    for name in ("domain", "config", "builders", "components", ".venv"):
        (root / name).symlink_to(ROOT / name)
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    for name, body in STAND_INS.items():
        (stand_ins / name).write_text("#!/usr/bin/env bash\n" + body)
        (stand_ins / name).chmod(0o755)
    pinned = root / ".cache" / "kind" / KIND_VERSION
    pinned.mkdir(parents=True)
    shutil.copy2(stand_ins / "kind", pinned / "kind")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{stand_ins}:/usr/bin:/bin", "HOME": str(home), "LOG": str(tmp_path / "log"),
           "KUBECONFIG": str(tmp_path / "kubeconfig"), "PULUMI_VERSION": "3.274.1", "PULUMI_YES": "1",
           "PULUMI_CONFIG_PASSPHRASE": "test-only", "STACK": "dev", "STACK_ORIGIN": "file", "CGROUP": "2"}
    return root, env


def run_script(project, operation: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    root, base = project
    log = Path(base["LOG"])
    log.unlink(missing_ok=True)
    done = subprocess.run(["bash", str(root / "scripts" / "up.sh"), operation], env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    ran = [line for line in log.read_text().splitlines() if not line.endswith((" version", " info --format {{.CgroupVersion}}"))] \
        if log.exists() else []
    return done, ran


def test_make_up_then_make_down_on_a_cgroup_v2_machine_with_no_context(project):
    root, _ = project
    done, ran = run_script(project, "up")
    assert done.returncode == 0, done.stderr
    assert done.stderr.index("dev-current") < done.stderr.index("Istio 1.30.3 charts")  # said before it starts
    assert ran[0] == " ".join(kind_create(IMAGE_1_33))
    # Before it deploys, make up looks for what an interrupted update left (tools/recover.py reads the state).
    assert ran[1:] == ["pulumi stack select dev-current --create --non-interactive", "make --no-print-directory policy-pack",
                       "pulumi stack export --stack dev-current --non-interactive",
                       "pulumi up --stack dev-current --policy-pack policy --yes --skip-preview"]
    assert "http://localhost:8080/" in done.stdout and "tools.e2e" in done.stdout
    assert json.loads((root / ".pulumi-state" / "make-up.json").read_text()) == {
        "stack": "dev-current", "context": "kind-bee-travels", "kindCluster": "bee-travels"}
    done, ran = run_script(project, "preview")  # the Makefile's STACK default: the stack make up deployed
    assert ran == ["pulumi stack select dev-current --create --non-interactive", "make --no-print-directory policy-pack",
                   "pulumi stack export --stack dev-current --non-interactive",
                   "pulumi preview --stack dev-current --diff --policy-pack policy"], done.stderr

    done, ran = run_script(project, "down")
    assert done.returncode == 0, done.stderr
    assert ran == ["pulumi destroy --stack dev-current --yes --skip-preview", "kind delete cluster --name bee-travels"]
    assert not (root / ".pulumi-state" / "make-up.json").exists()
    done, ran = run_script(project, "down")
    assert (done.returncode, ran) == (0, []) and "nothing to remove" in done.stderr


def test_make_up_on_a_cgroup_v1_machine_deploys_dev_on_kubernetes_1_18(project):
    done, ran = run_script(project, "up", CGROUP="1")
    assert done.returncode == 0, done.stderr
    assert ran[0] == " ".join(kind_create(IMAGE_1_18))
    assert "make --no-print-directory istio-charts ISTIO_VERSION=1.6.14" in ran and ran[-1].startswith("pulumi up --stack dev ")


def test_make_up_with_a_context_uses_its_cluster_and_make_down_leaves_that_cluster(project, tmp_path):
    with api_server(tmp_path / "kubeconfig", "work", "v1.33.2"):
        done, ran = run_script(project, "up")
        assert done.returncode == 0, done.stderr
        assert "context 'work' (Kubernetes 1.33.2)" in done.stderr
        assert not any(line.startswith("kind ") for line in ran) and ran[-1].startswith("pulumi up --stack dev-current ")
        assert "port-forward svc/istio-ingressgateway" in done.stdout
        done, ran = run_script(project, "delete-cluster")
        assert (done.returncode, ran) == (0, [])
        done, ran = run_script(project, "down")
        assert ran == ["pulumi destroy --stack dev-current --yes --skip-preview"]


def test_make_up_with_a_context_outside_the_range_runs_nothing(project, tmp_path):
    with api_server(tmp_path / "kubeconfig", "old", "v1.28.3"):
        done, ran = run_script(project, "up")
    assert done.returncode != 0 and ran == []
    assert "1.32-1.36" in done.stderr and "nothing was created" in done.stderr
    assert not (project[0] / ".pulumi-state" / "make-up.json").exists()


def test_make_up_with_dev_asked_for_on_cgroup_v2_runs_nothing(project):
    done, ran = run_script(project, "up", STACK_ORIGIN="command line")
    assert done.returncode != 0 and ran == [] and "cgroup v2" in done.stderr
