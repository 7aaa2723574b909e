"""MongoDB: pinned image, persistent volume, secret credentials, seeding after the database, safety in prod."""

import json
import re
import shutil
import subprocess

import pytest

from harness import schema_validation as sv
from harness.stacks import CURRENT_ISTIO
from tools.stack_run import Secret, run_stack, secret_paths

ALL_JSON = {f"services.{name}": {"versions": {"v1": {"tier": "json"}}}
            for name in ("destination", "hotel", "carrental")}


def statefulset(run):
    return run.named("StatefulSet", "mongodb")


def container(run):
    return statefulset(run).inputs["spec"]["template"]["spec"]["containers"][0]


def test_image_is_the_official_mongo_image_at_a_pinned_version(any_stack):
    image = container(any_stack)["image"]
    assert re.fullmatch(r"docker\.io/library/mongo:\d+\.\d+\.\d+", image), image
    assert image.endswith(":4.4.29")


def test_data_lives_on_a_persistent_volume_of_the_configured_size(dev, prod):
    for run, size in ((dev, "1Gi"), (prod, "20Gi")):
        spec = statefulset(run).inputs["spec"]
        (template,) = spec["volumeClaimTemplates"]
        assert template["spec"]["resources"]["requests"]["storage"] == size
        assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
        mounts = {m["mountPath"]: m["name"] for m in container(run)["volumeMounts"]}
        assert mounts["/data/db"] == template["metadata"]["name"]


def test_storage_class_comes_from_settings():
    run = run_stack("dev", {"mongodb.storageClass": "fast-ssd"})
    assert statefulset(run).inputs["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"


def assert_root_credentials_are_files(pod: dict, mongo: dict) -> None:
    """The root Secret reaches the container as a read-only volume, never through its environment."""
    (volume,) = [v for v in pod["volumes"] if (v.get("secret") or {}).get("secretName") == "mongodb-root"]
    (mount,) = [m for m in mongo["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": "/etc/mongodb-root", "readOnly": True}
    assert not [e for e in mongo.get("env", []) if "valueFrom" in e], "no secret in the environment"


def test_credentials_are_generated_and_only_ever_secret(any_stack):
    password = any_stack.named("RandomPassword", "mongodb-root-password")
    assert password.inputs["length"] >= 24
    root = any_stack.named("Secret", "mongodb-root")
    assert secret_paths(root.inputs["stringData"]) == ["."]
    assert root.inputs["stringData"].value == {"username": "mockuser", "password": "mock-password-mongodb-root-password"}
    connection = any_stack.named("Secret", "mongodb-connection")
    assert secret_paths(connection.inputs["stringData"]) == ["."]
    url = connection.inputs["stringData"].value["MONGO_CONNECTION_URL"]
    assert url.startswith("mongodb://mockuser:mock-password-mongodb-root-password@")
    assert isinstance(any_stack.outputs["mongoConnectionUrl"], Secret)
    pod = statefulset(any_stack).inputs["spec"]["template"]["spec"]
    env = {e["name"]: e for e in container(any_stack)["env"]}
    # The image's entrypoint reads the root user from files (MONGO_INITDB_ROOT_*_FILE): nothing secret in the env.
    assert env["MONGO_INITDB_ROOT_USERNAME_FILE"] == {"name": "MONGO_INITDB_ROOT_USERNAME_FILE", "value": "/etc/mongodb-root/username"}
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == {"name": "MONGO_INITDB_ROOT_PASSWORD_FILE", "value": "/etc/mongodb-root/password"}
    assert_root_credentials_are_files(pod, container(any_stack))


def test_a_single_server_is_reached_through_the_mongo_service(dev):
    url = dev.named("Secret", "mongodb-connection").inputs["stringData"].value["MONGO_CONNECTION_URL"]
    assert url == "mongodb://mockuser:mock-password-mongodb-root-password@mongo:27017/beetravels?authSource=admin"


def test_client_service_is_tcp_on_27017_for_istio(dev):
    client = dev.named("Service", "mongo")
    (port,) = client.inputs["spec"]["ports"]
    assert (port["name"], port["port"], port["protocol"]) == ("tcp-mongo", 27017, "TCP")
    assert client.inputs["spec"]["selector"] == {"app": "mongodb"}
    assert dev.named("Service", "mongodb-headless").inputs["spec"]["clusterIP"] == "None"


def test_app_protocol_is_declared_only_where_the_server_takes_it():
    """A 1.18 server refuses appProtocol (alpha gate off: the real-cluster tier's 1.18 server showed it); 1.19+ takes it."""
    current = run_stack("prod", {"istio.version": "1.30.3", "kubernetesVersion": "1.33"})
    assert current.named("Service", "mongo").inputs["spec"]["ports"][0]["appProtocol"] == "tcp"
    for version in ("1.17", "1.18"):
        run = run_stack("prod", {"kubernetesVersion": version})
        client = run.named("Service", "mongo")
        assert "appProtocol" not in client.inputs["spec"]["ports"][0]
        sv.require_kubernetes_schemas(version)
        assert sv.validate_kubernetes_object(client.manifest(), version) == []


def test_pod_runs_as_non_root_with_a_real_ping_probe(dev):
    pod = statefulset(dev).inputs["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 999
    probe = container(dev)["readinessProbe"]["exec"]["command"]
    assert probe[0] == "mongo" and "ping" in probe[-1]
    assert container(dev)["resources"]["limits"]["memory"] == "1Gi"


def test_newer_mongo_is_probed_with_mongosh():
    run = run_stack("dev", {"mongodb.version": "7.0.14"})
    assert container(run)["livenessProbe"]["exec"]["command"][0] == "mongosh"


def test_seeding_jobs_run_after_mongodb_for_each_mongodb_backend(dev):
    jobs = {r.k8s_name: r for r in dev.of_type("Job")}
    assert set(jobs) == {"seed-destination", "seed-hotel", "seed-carrental"}
    for name, job in jobs.items():
        assert dev.depends_on(job, statefulset(dev)), f"{name} does not wait for MongoDB"
        (seed,) = job.inputs["spec"]["template"]["spec"]["containers"]
        assert seed["image"] == f"docker.io/beetravels/data-gen-{name.removeprefix('seed-')}:dceed01c7b899e0c8eff1ae88912614a6e4139d6"
        env = {e["name"]: e for e in seed["env"]}
        assert env["DATABASE"]["value"] == "mongodb" and env["GENERATE_DATA"]["value"] == "false"
        assert env["MONGO_CONNECTION_URL"]["valueFrom"]["secretKeyRef"]["name"] == "mongodb-connection"
        # The sidecar is asked to quit once the seeder is done, so the Job can complete.
        assert "quitquitquit" in seed["command"][-1] and "gen_upload.py" in seed["command"][-1]
        assert "127.0.0.1:15020/healthz/ready" in seed["command"][-1]
        # The proxy quits after every try, so a retry must be a new pod with a new proxy, and it must give up.
        spec = job.inputs["spec"]
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
        assert spec["backoffLimit"] >= 1 and spec["activeDeadlineSeconds"] > 0


def seconds(duration):
    """A Pulumi timeout such as "21m" or "1260s" in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_pulumi_waits_for_every_job_longer_than_the_job_may_run(dev, prod):
    jobs = dev.of_type("Job") + prod.of_type("Job")
    assert {job.k8s_name for job in prod.of_type("Job")} >= {"mongodb-replica-set-init", "seed-hotel"}
    for job in jobs:
        deadline = job.inputs["spec"]["activeDeadlineSeconds"]
        # Pulumi's default 10 minutes would fail `pulumi up` while the Job may still succeed.
        assert set(job.custom_timeouts) == {"create", "update"}, job.k8s_name
        assert all(seconds(timeout) > deadline for timeout in job.custom_timeouts.values()), job.k8s_name
    init = prod.named("Job", "mongodb-replica-set-init")
    script = {e["name"]: e.get("value") for e in init.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}["REPLICA_SET_SCRIPT"]
    (wait_ms,) = re.findall(r"Date\.now\(\)\+(\d+)", script)
    assert int(wait_ms) // 1000 < init.inputs["spec"]["activeDeadlineSeconds"]


def test_seeding_waits_on_the_current_istio_readiness_port(current):
    (seed,) = current.named("Job", "seed-hotel").inputs["spec"]["template"]["spec"]["containers"]
    assert "127.0.0.1:15021/healthz/ready" in seed["command"][-1]


def test_mongodb_versions_start_after_the_database(dev):
    for deployment in dev.within("MeshService").of_type("Deployment"):
        tier = deployment.metadata["labels"]["data-tier"]
        assert dev.depends_on(deployment, statefulset(dev)) == (tier == "mongodb"), deployment.k8s_name
        assert dev.depends_on(deployment, dev.named("Secret", "mongodb-connection")) == (tier == "mongodb")


def test_a_mongodb_version_waits_for_its_own_seeding_not_every_services(any_stack):
    # Waiting for the whole MongoDB component made every MongoDB-tier Deployment depend on every seeding Job:
    # dependencies growing with the square of the services.
    seeds = {job.k8s_name.removeprefix("seed-"): job for job in any_stack.of_type("Job") if job.k8s_name.startswith("seed-")}
    assert len(seeds) > 1
    for deployment in any_stack.within("MeshService").of_type("Deployment"):
        if deployment.metadata["labels"]["data-tier"] == "mongodb":
            app = deployment.metadata["labels"]["app"]
            assert [service for service, job in seeds.items() if any_stack.depends_on(deployment, job)] == [app]
            assert any_stack.depends_on(deployment, any_stack.named("Service", "mongo"))


def test_only_backends_with_a_mongodb_version_are_seeded():
    run = run_stack("dev", {**ALL_JSON, "services.hotel": {"versions": {"v2": {"tier": "mongodb"}}}})
    assert [job.k8s_name for job in run.of_type("Job")] == ["seed-hotel"]


def test_nothing_is_created_when_no_version_uses_mongodb():
    run = run_stack("dev", ALL_JSON)
    assert run.error is None, run.error
    assert [r for r in run.resources if r.kind in ("MongoDB", "StatefulSet", "Job")] == []
    assert [r.name for r in run.of_type("RandomPassword", "RandomString") if "mongo" in r.name] == []
    assert all("mongo" not in (r.k8s_name or "") for r in run.resources)
    assert "mongoConnectionUrl" not in run.outputs


def test_prod_protects_the_data_and_the_credentials(prod, dev):
    for kind, name in (("StatefulSet", "mongodb"), ("Secret", "mongodb-root"), ("Secret", "mongodb-connection"),
                       ("Namespace", "bee-travels")):
        assert prod.named(kind, name).protect and prod.named(kind, name).retain_on_delete, f"{kind} {name}"
        assert not dev.named(kind, name).protect
    assert prod.named("Secret", "mongodb-keyfile").protect
    generated = prod.within("MongoDB").of_type("RandomPassword", "RandomString")
    assert len(generated) == 3 and all(r.protect and r.retain_on_delete for r in generated)


# ---- replica set (prod: 3 members) -----------------------------------------------------------------

def test_prod_runs_a_three_member_replica_set_that_authenticates_members_with_a_key(prod, dev):
    spec = statefulset(prod).inputs["spec"]
    assert spec["replicas"] == 3 and spec["serviceName"] == "mongodb-headless"
    args = container(prod)["args"]
    assert args[args.index("--replSet") + 1] == "rs0" and "--bind_ip_all" in args
    keyfile = args[args.index("--keyFile") + 1]
    pod = spec["template"]["spec"]
    (copier,) = pod["initContainers"]
    assert keyfile in copier["command"][-1] and "chmod 0400" in copier["command"][-1]
    source = next(v for v in pod["volumes"] if v["name"] == "keyfile-source")
    assert source["secret"]["defaultMode"] == 0o400
    assert secret_paths(prod.named("Secret", "mongodb-keyfile").inputs) == ["stringData"]
    assert statefulset(dev).inputs["spec"]["replicas"] == 1 and "args" not in container(dev)
    assert "mongodb-keyfile" not in {s.k8s_name for s in dev.of_type("Secret")}


def test_a_majority_of_members_survives_a_drain(prod, current, dev):
    for run, api in ((prod, "policy/v1beta1"), (current, "policy/v1")):
        (budget,) = [r for r in run.of_type("PodDisruptionBudget") if r.k8s_name == "mongodb"]
        assert budget.inputs["apiVersion"] == api
        assert budget.inputs["spec"]["minAvailable"] == 2
        assert budget.inputs["spec"]["selector"]["matchLabels"] == {"app": "mongodb"}
    assert not [r for r in dev.of_type("PodDisruptionBudget") if r.k8s_name == "mongodb"]
    five = run_stack("prod", {"mongodb.replicas": 5})
    assert next(r for r in five.of_type("PodDisruptionBudget") if r.k8s_name == "mongodb").inputs["spec"]["minAvailable"] == 3


def test_replica_set_is_initiated_once_before_seeding(prod):
    init = prod.named("Job", "mongodb-replica-set-init")
    assert prod.depends_on(init, statefulset(prod))
    for job in (j for j in prod.of_type("Job") if j.k8s_name.startswith("seed-")):
        assert prod.depends_on(job, init), job.k8s_name
    pod = init.inputs["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert_root_credentials_are_files(pod, pod["containers"][0])
    assert '--password "$(cat /etc/mongodb-root/password)"' in pod["containers"][0]["command"][-1]
    script = env["REPLICA_SET_SCRIPT"]["value"]
    assert all(f'host:"mongodb-{i}.mongodb-headless:27017"' in script for i in range(3))
    assert "rs.initiate" in script and "code===94" in script  # only when not yet initiated


def test_clients_connect_to_every_member_of_the_replica_set(prod):
    url = prod.outputs["mongoConnectionUrl"]
    assert isinstance(url, Secret)
    hosts = url.value.split("@", 1)[1].split("/", 1)[0].split(",")
    assert hosts == [f"mongodb-{i}.mongodb-headless:27017" for i in range(3)]
    assert url.value.endswith("?authSource=admin&replicaSet=rs0")


# A replica set as the mongo shell sees it, in Node: enough of `rs` and `db` for the Job's scripts, and as strict
# as MongoDB 4.4 about reconfigurations (one member added or removed at a time, a rising config version).
FAKE_REPLICA_SET = r"""
const [script, start] = process.argv.slice(1);
const set = {reconfigs: 0, ...JSON.parse(start)};
const log = [];
const hosts = (c) => c.members.map((m) => m.host);
globalThis.print = (line) => log.push(String(line));
globalThis.tojson = (value) => JSON.stringify(value);
globalThis.sleep = () => {};
globalThis.rs = {
  status: () => set.config ? {ok: 1} : {ok: 0, code: 94, errmsg: "no replset config has been received"},
  initiate: (config) => { if (set.config) return {ok: 0, code: 23}; set.config = {...config, version: 1}; set.reconfigs = 0; return {ok: 1}; },
};
globalThis.db = {
  isMaster: () => set.config ? {ismaster: true, primary: set.config.members[0].host} : {ismaster: false},
  adminCommand: (command) => {
    if (command.replSetGetConfig) return {ok: 1, config: JSON.parse(JSON.stringify(set.config))};
    const next = command.replSetReconfig, now = hosts(set.config);
    const changed = hosts(next).filter((h) => !now.includes(h)).length + now.filter((h) => !hosts(next).includes(h)).length;
    if (next.version !== set.config.version + 1) return {ok: 0, errmsg: "version must rise by one"};
    if (changed > 1) return {ok: 0, errmsg: "only one voting member can be added or removed per reconfig"};
    if (new Set(next.members.map((m) => m._id)).size !== next.members.length) return {ok: 0, errmsg: "duplicate _id"};
    set.config = next; set.reconfigs += 1; return {ok: 1};
  },
};
try { new Function(script)(); } catch (error) { log.push("ERROR " + error.message); }
console.log(JSON.stringify({log, members: set.config ? hosts(set.config) : [], reconfigs: set.reconfigs || 0}));
"""


def _in_fake_replica_set(script: str, members: int | None) -> dict:
    """Run a Job script against a fake set of `members` (None: never initiated); its log and the members after."""
    from builders.mongodb import member_hosts

    assert shutil.which("node"), "node is needed to run the replica-set scripts (`make test` installs it: make node)"
    start = {"config": None} if members is None else {
        "config": {"_id": "rs0", "version": 1, "members": [{"_id": i, "host": h} for i, h in enumerate(member_hosts(members))]}}
    result = subprocess.run(["node", "-e", FAKE_REPLICA_SET, script, json.dumps(start)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _members_after(before: int | None, want: int) -> dict:
    from builders.mongodb import member_hosts, members_script, replica_set_script

    initiated = _in_fake_replica_set(replica_set_script(want), before)
    assert initiated["log"][-1] == "mongodb-0.mongodb-headless:27017", initiated["log"]  # the primary, for the next step
    start = len(initiated["members"]) if initiated["members"] else None
    reconciled = _in_fake_replica_set(members_script(want), start)
    assert not [line for line in reconciled["log"] if line.startswith("ERROR")], reconciled["log"]
    assert sorted(reconciled["members"]) == sorted(member_hosts(want))
    return reconciled


def test_a_new_replica_set_is_initiated_with_every_member_and_left_alone_after():
    assert _members_after(None, 3)["reconfigs"] == 0
    assert _members_after(3, 3)["reconfigs"] == 0


@pytest.mark.parametrize(("before", "after"), [(3, 5), (3, 7), (5, 3), (7, 3)])
def test_changing_the_member_count_adds_or_removes_members_one_at_a_time(before, after):
    assert _members_after(before, after)["reconfigs"] == abs(after - before)


def test_the_replica_set_job_reruns_when_the_member_count_changes():
    three, five = (run_stack("prod", {"mongodb.replicas": count}) for count in (3, 5))
    env = [{e["name"]: e.get("value") for e in run.named("Job", "mongodb-replica-set-init").inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
           for run in (three, five)]
    # The Job's pod template is immutable: a different script makes the provider replace the Job, so it runs again.
    assert env[0]["MEMBERS_SCRIPT"] != env[1]["MEMBERS_SCRIPT"]
    (command,) = [c["command"][-1] for c in five.named("Job", "mongodb-replica-set-init").inputs["spec"]["template"]["spec"]["containers"]]
    assert '--host "$primary"' in command and "$MEMBERS_SCRIPT" in command and "pipefail" in command


def test_every_container_of_the_data_tier_has_a_read_only_root(prod, current):
    for run in (prod, current):
        for workload in run.within("MongoDB").of_type("StatefulSet", "Job"):
            spec = workload.inputs["spec"]["template"]["spec"]
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, (workload.k8s_name, container["name"])
                writable = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in writable or container["name"] == "keyfile", (workload.k8s_name, container["name"])


def _members_rule(run):
    return [r for r in run.of_type("DestinationRule") if r.k8s_name == "mongodb-headless"]


def test_on_istio_1_6_a_replica_sets_members_are_reached_over_mutual_tls_said_explicitly(prod):
    """Istio 1.6 leaves a headless Service's ORIGINAL_DST cluster out of auto mTLS (cluster.go at 1.6.14): without a
    DestinationRule the members, the replica-set Job and every driver would reach each member in plain text, which
    the members' STRICT sidecars refuse. The rule names exactly the host the connection URL and the Sidecars use."""
    (rule,) = _members_rule(prod)
    host = rule.inputs["spec"]["host"]
    assert rule.inputs["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}
    assert any(f"./{host}" in s.inputs["spec"]["egress"][0]["hosts"] for s in prod.of_type("Sidecar")), host
    from builders.mongodb import member_hosts
    assert {member.split(".")[1].split(":")[0] for member in member_hosts(3)} == {host.split(".")[0]}  # what drivers dial
    statefulset = prod.named("StatefulSet", "mongodb")
    assert prod.depends_on(statefulset, rule), "a member could start talking before the rule exists"


@pytest.mark.parametrize(("stack", "overrides"), [("dev", {}), ("prod", CURRENT_ISTIO),
                                                  ("dev", {"mongodb.replicas": 3, "security.mtlsMode": "DISABLE",
                                                           "security.authorization": False})])
def test_where_auto_mtls_covers_the_members_no_rule_is_added(stack, overrides):
    """One member (clients use the ClusterIP Service, which auto mTLS covers), current Istio (auto mTLS covers
    headless Services too), or no mutual TLS in the mesh: nothing to say."""
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    assert _members_rule(run) == []


def test_the_members_rule_follows_the_mesh_when_mtls_is_permissive():
    run = run_stack("dev", {"mongodb.replicas": 3, "security.mtlsMode": "PERMISSIVE"})
    assert run.error is None, run.error
    (rule,) = _members_rule(run)
    assert rule.inputs["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
