"""The real-cluster benchmark's own logic, without a cluster or the CLI: what it deploys and how it reads the engine."""

import dataclasses
import json
import runpy
import threading
import time

import pytest
import yaml

from bench import cli_profile, program_scaling, real_cluster
from domain import catalogue
from harness.pulumi_cli import stand_in_helm_charts
from tools.stack_run import run_stack


@pytest.fixture(scope="module")
def charts_dir(tmp_path_factory):
    return stand_in_helm_charts(tmp_path_factory.mktemp("bench-real-charts"))


def identities(run):
    return sorted((resource.type, resource.name) for resource in run.resources)


def test_the_generated_program_registers_what_the_synthetic_stack_does_and_restores_the_catalogue(charts_dir, tmp_path):
    shape = real_cluster.Shape("15 services", 15)
    declared = real_cluster.declare(shape, charts_dir)
    program = tmp_path / "__main__.py"
    program.write_text(shape.program())
    before = dict(catalogue.CATALOGUE)
    generated = run_stack("dev", declared.stack_edits, program=lambda: runpy.run_path(str(program), run_name="__main__"))
    assert generated.error is None, generated.error
    assert catalogue.CATALOGUE == before
    with program_scaling.synthetic_catalogue(shape.synthetic_services) as services:
        expected = run_stack("dev", {**declared.stack_edits, **services})
    assert identities(generated) == identities(expected)
    assert len(generated.of_type("MeshService")) == 15 and len(generated.resources) == declared.resources


def test_the_dev_shaped_stack_is_the_project_program_on_current_istio(charts_dir):
    shape = real_cluster.shapes(())[0]
    declared = real_cluster.declare(shape, charts_dir)
    assert shape.program() is None  # the project's own __main__.py
    assert declared.stack_edits["istio.version"] == "1.30.3" and declared.stack_edits["kubernetesVersion"] == "1.33"
    assert not any(key.startswith("services.") for key in declared.stack_edits)
    # dev's one MongoDB member needs one volume; every Deployment's pods and every Job's pod need room on the nodes.
    assert declared.volumes == 1
    replicas = sum(obj["spec"].get("replicas", 1) for obj in declared.objects if obj["kind"] in ("Deployment", "StatefulSet"))
    assert declared.pods == replicas + declared.count("Job") and declared.count("Job") > 0
    assert "bee-travels" in declared.namespaces
    assert all(obj.get("apiVersion") and obj["metadata"].get("name") for obj in declared.objects)


def test_a_stack_gets_nodes_enough_for_its_pods():
    def declared_with(pods):
        objects = [{"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": pods}}]
        return real_cluster.Declared({}, 1, objects, 0.0)

    assert real_cluster.nodes_for(declared_with(10)) == 2
    assert real_cluster.nodes_for(declared_with(442)) * real_cluster.PODS_PER_NODE >= 1.5 * 442


def _event(kind, urn, type_):
    return json.dumps({kind: {"metadata": {"op": "create", "urn": urn, "type": type_}}}) + "\n"


def test_the_event_log_clock_times_steps_as_the_log_is_written(tmp_path):
    log = tmp_path / "events.jsonl"
    deployment = "urn:pulumi:dev::p::kubernetes:apps/v1:Deployment::web"
    component = "urn:pulumi:dev::p::beetravels:app:MeshService::web"

    def write():
        with log.open("w") as stream:
            stream.write(_event("resourcePreEvent", "urn:pulumi:dev::p::pulumi:pulumi:Stack::p-dev", "pulumi:pulumi:Stack"))
            stream.write(_event("resourcePreEvent", component, "beetravels:app:MeshService"))
            stream.write(_event("resourcePreEvent", deployment, "kubernetes:apps/v1:Deployment"))
            stream.flush()
            time.sleep(0.2)
            half = _event("resOutputsEvent", deployment, "kubernetes:apps/v1:Deployment")
            stream.write(half[:20])  # a line caught half-written
            stream.flush()
            time.sleep(0.05)
            stream.write(half[20:])
            stream.write(_event("resOutputsEvent", component, "beetravels:app:MeshService"))

    with real_cluster.EventLogClock(log) as clock:
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        time.sleep(0.1)
    steps = {step.type: step for step in clock.timeline.steps}
    assert set(steps) == {"kubernetes:apps/v1:Deployment", "beetravels:app:MeshService"}
    assert steps["kubernetes:apps/v1:Deployment"].custom and not steps["beetravels:app:MeshService"].custom
    assert steps["kubernetes:apps/v1:Deployment"].seconds >= 0.2
    assert 0 < clock.timeline.first_step < clock.timeline.last_step
    assert real_cluster.grouped(clock.timeline) == {"Deployments (wait for Ready pods)": [steps["kubernetes:apps/v1:Deployment"].seconds]}


def test_the_section_is_added_once_then_replaced_and_the_rest_of_the_document_stays(tmp_path):
    document = tmp_path / "performance.md"
    mock_figures = "# Performance\n\nmock figures\n\n## Test suite and set-up\n\n- 42 s\n"
    document.write_text(mock_figures)
    real_cluster.write_section(document, f"{real_cluster.SECTION}\n\nfirst\n\n### Where an update's time goes\n\nsteps\n")
    real_cluster.write_section(document, f"{real_cluster.SECTION}\n\nsecond\n")
    assert document.read_text() == f"{mock_figures}\n{real_cluster.SECTION}\n\nsecond\n"


def test_a_section_in_the_middle_is_replaced_where_it_stands(tmp_path):
    document = tmp_path / "performance.md"
    document.write_text(f"# Performance\n\n{real_cluster.SECTION}\n\nold\n\n## Test suite and set-up\n\n- 42 s\n")
    real_cluster.write_section(document, f"{real_cluster.SECTION}\n\nnew\n")
    assert document.read_text() == f"# Performance\n\n{real_cluster.SECTION}\n\nnew\n\n## Test suite and set-up\n\n- 42 s\n"


def measurement(preview=4.0, up=19.0, others=0.0):
    timeline = real_cluster.UpdateTimeline([real_cluster.Step("urn::web", "kubernetes:core/v1:Service", 10.2)], 1.5, 12.0)
    run = real_cluster.Deployment(real_cluster.CpuUse(preview, {"engine (pulumi CLI)": 1.7}, 0.0),
                                  real_cluster.CpuUse(up, {"engine (pulumi CLI)": 4.0}, others * up), timeline, 89)
    declared = real_cluster.Declared({"istio.version": "1.30.3"}, 89, [{"kind": "Service", "metadata": {"name": "web"}, "spec": {}}], 0.7)
    return real_cluster.Measurement(real_cluster.Shape("dev-shaped", 5), declared, [run], 1.4, 1.6, {"create": 0.01, "re-apply": 0.0}, 2)


def test_saved_measurements_report_the_same(tmp_path):
    report = real_cluster.Report([measurement()], "v1.33.13", 60.0, "python -m bench.real_cluster", "abc1234", 8)
    real_cluster.save(report, tmp_path / "saved.json")
    assert real_cluster.load(tmp_path / "saved.json") == report
    assert "| dev-shaped | 5 | 89 | 1 | 1 run | 4.0 | 19.0 | 1.4 | 1.6 |" in real_cluster.table([measurement()])


def test_the_report_says_when_other_processes_took_the_cores():
    assert "at most 0.01 cores" in real_cluster.contention_line([measurement()])
    busy = real_cluster.contention_line([measurement(others=0.7)])
    assert "Other processes were busy" in busy and "dev-shaped up 1: 0.7 cores" in busy


def stack_run(label, services, probe=False, up=None, no_wait_step=0.1, awaited=False, parallel=None, service_step=0.1, day_two=None):
    """A measured stack: Services (10 s each when awaited), quick Deployments, Jobs and releases, objects with no wait."""
    steps = [real_cluster.Step(f"s{i}", "kubernetes:core/v1:Service", 10.2 if awaited else service_step) for i in range(services)]
    steps += [real_cluster.Step(f"d{i}", "kubernetes:apps/v1:Deployment", 0.5) for i in range(services)]
    steps += [real_cluster.Step("j", "kubernetes:batch/v1:Job", 1.2), real_cluster.Step("r::istio-base", "kubernetes:helm.sh/v3:Release", 2.5)]
    steps += [real_cluster.Step(f"x{i}", "kubernetes:networking.istio.io/v1beta1:Sidecar", no_wait_step * (1 + i)) for i in range(10)]
    up = up or 5.0 * services
    run = real_cluster.Deployment(real_cluster.CpuUse(services, {"engine (pulumi CLI)": services / 2}),
                                  real_cluster.CpuUse(up, {"engine (pulumi CLI)": up / 3}),
                                  real_cluster.UpdateTimeline(steps, 2.0, up - 1.0), 20 * services, 10_000 * services, 4_000 * services)
    declared = real_cluster.Declared({}, 20 * services, [{"kind": "Service", "metadata": {"name": "s"}, "spec": {}}] * (16 * services), 0.05 * services)
    shape = real_cluster.Shape(label, services, probe, services_awaited=awaited, parallel=parallel)
    return real_cluster.Measurement(shape, declared, [run], 0.02 * 16 * services, 0.03 * 16 * services, {"create": 0.0}, 2,
                                    day_two=day_two)


DAY = real_cluster.DayTwo(no_change_up=2.5, refresh=1.8, step="hotel {'v1': 50, 'v2': 50} -> {'v1': 40, 'v2': 60}",
                          step_preview=2.0, step_up=2.6, step_changes={"same": 103, "update": 1}, kubectl_step=0.12,
                          unpoliced_preview=1.5, unpoliced_up=1.9)


def test_the_day_table_shows_the_policy_packs_share_of_a_canary_step():
    table = real_cluster.day_two_table([stack_run("dev-shaped", 5, up=4.8, day_two=DAY)])
    assert "| the step back, without the policy pack: `pulumi preview` / `pulumi up` | 1.5 / 1.9 | the pack's share of the step: 1.2 s |" in table
    unmeasured = dataclasses.replace(DAY, unpoliced_preview=0.0, unpoliced_up=0.0)  # a run saved before this was measured
    assert "without the policy pack" not in real_cluster.day_two_table([stack_run("dev-shaped", 5, up=4.8, day_two=unmeasured)])


def measured_report():
    return real_cluster.Report([
        stack_run("dev-shaped", 5, up=4.8, day_two=DAY), stack_run("20 services", 20, up=30.0), stack_run("200 services", 200, up=900.0),
        stack_run("dev-shaped, Services awaited", 5, awaited=True, up=19.0), stack_run("dev-shaped, --parallel 16", 5, parallel=16, up=4.7),
        stack_run("200 services, probe", 200, probe=True, up=300.0)], "v1.33.13", 3000.0, "cmd", "abc", 8)


def test_the_section_reads_the_figures_of_every_stack_the_levers_and_the_probe():
    text = real_cluster.section(measured_report())
    assert text.startswith(real_cluster.SECTION) and "The program at abc." in text
    # The goals, each with its verdict: dev-shaped 4.8 s against kubectl's 1.6 s, the step 4.6 s, 200 services 900 s
    # against 64 s (14.1x) and against 30 s (30x).
    assert "| 4.8 s / 1.6 s = 3.0x | **met** |" in text
    assert "2.0 s + 2.6 s = 4.6 s; `kubectl apply --server-side` of the VirtualService: 0.12 s (38x) | **met** |" in text
    assert "| 900 s / 64.0 s = 14.1x | **missed** |" in text and "| 900 s / 30.0 s = 30.0x | **missed** |" in text
    # The levers against the stack they vary: the Services' wait (19.0 s with it, 4.8 s without), parallelism.
    assert "| Services not awaited (`pulumi.com/skipAwait`) | dev-shaped | 19.0 | 4.8 | -75% | taken |" in text
    assert "| `--parallel 16` instead of the default | dev-shaped | 4.8 | 4.7 | -2% | not taken |" in text
    assert "the dev-shaped update took 19.0 s with the wait and 4.8 s without it, its 5 Services took 10.20 s each" in text
    assert "took 300 s instead of 900 s (3.0x)" in text
    assert "| 200 services, probe | 200 | 4000 |" in text and "2.5 s of it the base chart's" in text
    assert "dev-shaped 0.5 KiB per resource, 40% of it managed fields" in text
    assert "| dev-shaped | canary step: `pulumi preview` | 2.0 |" in text and "(103 same, 1 update)" in text


def test_saved_measurements_with_levers_and_a_day_report_the_same(tmp_path):
    report = measured_report()
    real_cluster.save(report, tmp_path / "saved.json")
    assert real_cluster.load(tmp_path / "saved.json") == report


def test_the_lever_stacks_vary_one_thing_each_and_only_the_plain_dev_shaped_stack_gets_a_day():
    found = real_cluster.shapes((20, 200), probe_checkpoints=True)
    labels = [shape.label for shape in found]
    assert labels[:3] == ["dev-shaped", "20 services", "200 services"] and labels[-1] == "200 services, PULUMI_SKIP_CHECKPOINTS = true"
    assert {shape.label for shape in found if shape.services_awaited} == {"dev-shaped, Services awaited", "20 services, Services awaited"}
    assert {(shape.services, shape.parallel) for shape in found if shape.parallel} == {(5, 4), (5, 16), (20, 4), (20, 16)}
    assert [shape.label for shape in found if not shape.lever] == ["dev-shaped", "20 services", "200 services"]


def test_the_services_awaited_program_puts_the_providers_wait_back_and_changes_nothing_else(charts_dir, tmp_path):
    plain = real_cluster.declare(real_cluster.Shape("dev-shaped", 5), charts_dir)
    program = tmp_path / "__main__.py"
    program.write_text(real_cluster.Shape("dev-shaped, Services awaited", 5, services_awaited=True).program())
    awaited = run_stack("dev", plain.stack_edits, program=lambda: runpy.run_path(str(program), run_name="__main__"))
    assert awaited.error is None, awaited.error
    objects = [resource.manifest() for resource in awaited.kubernetes_objects()]
    services = [obj for obj in objects if obj["kind"] == "Service"]
    assert services and all("pulumi.com/skipAwait" not in (obj["metadata"].get("annotations") or {}) for obj in services)
    assert all(obj["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true" for obj in plain.objects if obj["kind"] == "Service")
    without_annotation = [{**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "annotations"}}
                          if obj["kind"] == "Service" else obj for obj in plain.objects]
    assert len(objects) == len(plain.objects) and sorted(map(json.dumps, without_annotation)) == sorted(map(json.dumps, map(_unwrapped, objects)))
    from builders import kube
    assert kube.NO_ENDPOINT_WAIT == {"pulumi.com/skipAwait": "true"}, "the lever must not leak into the process"


def _unwrapped(obj):
    from tools.stack_run import unwrap
    return unwrap(obj)


def test_the_canary_step_moves_a_canary_ten_points_and_kubectl_gets_that_virtual_service(charts_dir):
    edits = real_cluster.declare(real_cluster.Shape("dev-shaped", 5), charts_dir).stack_edits
    service, before, after = real_cluster.canary_step(edits)
    assert len(before) >= 2 and sum(after.values()) == sum(before.values()) == 100
    stable, canary = list(before)[:2]
    assert after[stable] == before[stable] - 10 and after[canary] == before[canary] + 10
    manifest = yaml.safe_load(real_cluster.virtual_service({**edits, f"services.{service}.weights": after}, service))
    assert manifest["kind"] == "VirtualService" and manifest["metadata"]["name"] == service
    weights = {route["destination"]["subset"]: route["weight"] for http in manifest["spec"]["http"]
               for route in http["route"] if "weight" in route}
    assert weights == after


def test_the_split_shape_spreads_whole_groups_over_its_app_stacks_and_each_program_evaluates(charts_dir, tmp_path):
    shape = real_cluster.shapes((15,), split=2)[-1]
    assert shape.app_stacks == 2 and shape.services == 15 and shape.lever
    with program_scaling.synthetic_catalogue(shape.synthetic_services) as services:
        synthetic = [key.removeprefix("services.") for key in services]
    groups = real_cluster.app_stack_groups(synthetic, shape.app_stacks)
    assert sorted(name for group in groups for name in group) == sorted(synthetic)
    assert [len(group) for group in groups] == [5, 5] and groups[0][0].startswith("bee-ui-")
    # Whole groups: a stack's front-end copy goes with the backends it calls.
    assert all(len({name.rsplit("-", 1)[1] for name in group}) == 1 for group in groups)
    declared = real_cluster.declare(shape, charts_dir, tmp_path)
    assert set(declared.app_stacks) == {"apps-0", "apps-1"}
    assert declared.stack_edits["appStacks"] == ["apps-0", "apps-1"]
    namespaces = {obj["metadata"]["name"] for obj in declared.objects if obj["kind"] == "Namespace"}
    assert namespaces == {"istio-system", "bee-travels", "apps-0", "apps-1"}
    gateways = {obj["metadata"]["namespace"]: obj["spec"]["servers"][0]["hosts"] for obj in declared.objects if obj["kind"] == "Gateway"}
    assert gateways == {"bee-travels": ["bee.example.com"], "apps-0": ["apps-0.bee.example.com"], "apps-1": ["apps-1.bee.example.com"]}
    # The generated program keeps the copies away from the platform's front end, which does not deploy them.
    assert "called_by_frontend=False" in shape.program()
    with program_scaling.synthetic_catalogue(shape.synthetic_services, called_by_frontend=False):
        assert not any(callee in synthetic for callee in catalogue.CATALOGUE[catalogue.FRONTEND].calls)


# Lines of `go tool pprof -top -cum -unit=s -nodefraction=0` on a real update's CLI profile (a 60-service stack).
PPROF_TOP = """\
Duration: 158.55s, Total samples = 157.61s (99.41%)
Showing nodes accounting for 157.61s, 100% of 157.61s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%    119.12s 75.58%  github.com/pulumi/pulumi/pkg/v3/backend.(*SnapshotManager).saveSnapshot
         0     0% 0.013%     61.52s 39.03%  github.com/pulumi/pulumi/pkg/v3/backend/diy.compactJSONMarshaler.Marshal
         0     0%  0.59%     36.55s 23.19%  github.com/pulumi/pulumi/pkg/v3/backend.(*SnapshotManager).Deployment
         0     0%  1.76%        28s 17.77%  runtime.gcBgMarkWorker
         0     0% 18.60%     12.43s  7.89%  gocloud.dev/blob.(*Bucket).WriteAll
     0.63s   0.4% 40.08%      6.16s  3.91%  github.com/pulumi/pulumi/pkg/v3/resource/stack/snapshot.VerifyIntegrity
         0     0% 67.22%      2.22s  1.41%  github.com/pulumi/pulumi/pkg/v3/backend/diy.backupTarget
     0.01s 0.0063%   100%      0.01s 0.0063%  unicode/utf8.Valid
"""


def test_the_cli_profile_is_read_into_the_parts_of_saving_the_state():
    total, parts = cli_profile.attribute(PPROF_TOP)
    assert total == 157.61
    labels = [label for label, _ in cli_profile.PARTS]
    assert [parts[label] for label in labels] == [119.12, 36.55, 61.52, 12.43, 2.22, 6.16, 28.0]
    # The indented parts are inside saving the state, and do not add up to more than it.
    assert sum(parts[label] for label in labels if label.startswith("  ")) <= parts[labels[0]] * 1.05
    with pytest.raises(ValueError, match="Total samples"):
        cli_profile.attribute("flat  flat%   sum%        cum   cum%\n")
