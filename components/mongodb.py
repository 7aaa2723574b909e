"""In-cluster MongoDB for the mongodb data tier: StatefulSet, volume, generated credentials and seeding Jobs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from builders.compat import KubernetesApis
from builders.kube import container_port, istio_resource, metadata, workload_service
from builders.mongodb import (
    HEADLESS_SERVICE,
    PRIMARY_WAIT_SECONDS,
    REPLICA_SET,
    SERVICE_NAME,
    connection_url,
    headless_mtls_rule_spec,
    headless_needs_explicit_mtls,
    members_script,
    ping_command,
    proxy_script,
    replica_set_script,
    seed_command,
)
from builders.workloads import Identity, identity
from config.settings import ImageSettings, MongoSettings
from domain.images import mongo_image, seed_image
from domain.mongodb import MEMBER_ACCOUNT, PORT, SEED_ACCOUNT, SEED_POD_LABELS

CONNECTION_SECRET = "mongodb-connection"
CONNECTION_KEY = "MONGO_CONNECTION_URL"
LABELS = {"app": "mongodb"}
MONGO_UID = 999  # the mongodb user of the official image
KEYFILE_PATH = "/etc/mongodb-keyfile/keyfile"
# The root user's name and password as files: the image's entrypoint reads MONGO_INITDB_ROOT_*_FILE (docker-library/
# mongo 4.4 docker-entrypoint.sh, file_env), so neither sits in the environment, where `kubectl describe` and crash
# dumps would show it.
ROOT_CREDENTIALS_DIR = "/etc/mongodb-root"
# A Job's deadline (all its retries) leaves room for a full wait for a primary.
JOB_DEADLINE_SECONDS = 2 * PRIMARY_WAIT_SECONDS
# Pulumi awaits a Job's completion for 10 minutes by default, less than the deadline. It waits a minute past the
# deadline instead, so `pulumi up` reports the Job's own outcome (done, or failed at its deadline), not a timeout.
JOB_AWAIT = f"{JOB_DEADLINE_SECONDS + 60}s"
JOB_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


@dataclass(frozen=True)
class MongoDBArgs:
    settings: MongoSettings
    images: ImageSettings
    namespace: pulumi.Input[str]
    namespace_name: str  # the same namespace, as a host name part
    # Backends whose data lives here; each gets a seeding Job.
    seeded_services: tuple[str, ...]
    # Istio minor ("1.6", "1.30"): decides how a Job's sidecar is told to exit.
    istio_minor: str
    kubernetes: KubernetesApis
    production: bool
    after: list[pulumi.Resource]
    mount_account_token: bool = False  # only where the sidecar authenticates with it (Istio 1.6, first-party-jwt)
    mtls_mode: str = "STRICT"  # security.mtlsMode: whether the members' own addresses need mutual TLS said explicitly


ROOT_CREDENTIALS_MOUNT = k8s.core.v1.VolumeMountArgs(name="root-credentials", mount_path=ROOT_CREDENTIALS_DIR, read_only=True)


def root_credentials_volume(root_secret: k8s.core.v1.Secret) -> k8s.core.v1.VolumeArgs:
    # World-readable inside the pod: the volume is this pod's alone and the container's one user (999) reads it,
    # whether or not the pod sets an fsGroup.
    return k8s.core.v1.VolumeArgs(name="root-credentials", secret=k8s.core.v1.SecretVolumeSourceArgs(
        secret_name=root_secret.metadata.apply(lambda meta: meta["name"]), default_mode=0o444))


class MongoDB(pulumi.ComponentResource):
    """Owns the MongoDB StatefulSet, its Services, volume template, credentials Secrets and seeding Jobs."""

    connection_url: pulumi.Output[str]
    connection_secret_name: str
    # The Services clients connect through, and the identities of its own that connect to it: the seeding Jobs and,
    # in a replica set, the members.
    service_hosts: tuple[str, ...]
    own_clients: tuple[Identity, ...]
    # The seeding Job of each seeded service.
    jobs: dict[str, k8s.batch.v1.Job]

    def __init__(self, name: str, args: MongoDBArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:data:MongoDB", name, None, opts)
        self._name, self._args = name, args
        # In production the data and the credentials that open it must survive a destroy or a rename.
        self._keep = pulumi.ResourceOptions(parent=self, protect=args.production, retain_on_delete=args.production)
        replica_set = args.settings.replicas > 1
        self.service_hosts = (SERVICE_NAME, HEADLESS_SERVICE) if replica_set else (SERVICE_NAME,)
        self.own_clients = (identity(SEED_ACCOUNT, SEED_POD_LABELS),
                            *((identity(MEMBER_ACCOUNT, LABELS),) if replica_set else ()))
        self.connection_secret_name = CONNECTION_SECRET

        root_secret, connection_secret = self._credentials()
        member_account = self._identities()
        headless, client = self._services()
        members_mtls = self._members_mtls() if headless_needs_explicit_mtls(args.istio_minor, replica_set, args.mtls_mode) else None
        statefulset = self._members(root_secret, member_account, [headless, *([members_mtls] if members_mtls else [])],
                                    self._keyfile() if replica_set else None)
        database_up = self._replica_set(root_secret, statefulset) if replica_set else statefulset
        self.jobs = {service: self._seed_job(service, connection_secret, database_up) for service in args.seeded_services}
        # What any client waits for: the Services it connects through, the database up (initiated, for a replica set)
        # and the connection Secret. Not every seeding Job: that would make each client wait for O(services) resources.
        self._ready = (headless, client, *dict.fromkeys([statefulset, database_up]), connection_secret)
        self.register_outputs({"connectionUrl": self.connection_url, "connectionSecretName": CONNECTION_SECRET})

    def _after_mesh(self, protected: bool) -> pulumi.ResourceOptions:
        base = self._keep if protected else pulumi.ResourceOptions(parent=self)
        return pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=self._args.after))

    def _credentials(self) -> tuple[k8s.core.v1.Secret, k8s.core.v1.Secret]:
        """The generated root user and password, as the members' Secret and as the clients' connection URL."""
        name, args = self._name, self._args
        user = random.RandomString(f"{name}-root-user", length=12, special=False, upper=False, numeric=False, opts=self._keep)
        password = random.RandomPassword(f"{name}-root-password", length=32, special=False, opts=self._keep)
        root_secret = k8s.core.v1.Secret(
            f"{name}-root-credentials",
            metadata=metadata("mongodb-root", args.namespace, LABELS),
            string_data=pulumi.Output.secret({"username": user.result, "password": password.result}),
            opts=self._after_mesh(protected=True),
        )
        replicas = args.settings.replicas
        self.connection_url = pulumi.Output.secret(
            pulumi.Output.all(user.result, password.result).apply(lambda parts: connection_url(*parts, replicas))
        )
        connection_secret = k8s.core.v1.Secret(
            f"{name}-connection",
            metadata=metadata(CONNECTION_SECRET, args.namespace, LABELS),
            string_data={CONNECTION_KEY: self.connection_url},
            opts=self._after_mesh(protected=True),
        )
        return root_secret, connection_secret

    def _identities(self) -> k8s.core.v1.ServiceAccount:
        """The members' identity, and the seeding Jobs' own: the authorization policy lets exactly them and the v2 backends in."""
        name, namespace = self._name, self._args.namespace
        member = k8s.core.v1.ServiceAccount(f"{name}-service-account", metadata=metadata(MEMBER_ACCOUNT, namespace, LABELS),
                                            opts=self._after_mesh(protected=False))
        k8s.core.v1.ServiceAccount(f"{name}-seed-service-account", metadata=metadata(SEED_ACCOUNT, namespace, LABELS),
                                   opts=self._after_mesh(protected=False))
        return member

    def _services(self) -> tuple[k8s.core.v1.Service, k8s.core.v1.Service]:
        """The members' own DNS names (headless) and the one clients connect through."""
        return (self._service("headless", HEADLESS_SERVICE, headless=True),
                self._service("client", SERVICE_NAME, headless=False))

    def _members_mtls(self) -> pulumi.Resource:
        """Mutual TLS to each member's own address (headless_needs_explicit_mtls says when), before any member talks."""
        args = self._args
        return istio_resource(f"{self._name}-members-destination-rule", "DestinationRule", HEADLESS_SERVICE, args.namespace_name,
                              headless_mtls_rule_spec(args.namespace_name), self._after_mesh(protected=False))

    def _members(self, root_secret: k8s.core.v1.Secret, account: k8s.core.v1.ServiceAccount, after: list[pulumi.Resource],
                 keyfile: k8s.core.v1.Secret | None) -> k8s.apps.v1.StatefulSet:
        """The StatefulSet whose pods and volume claims hold the data, after its headless Service (and the members'
        mutual TLS where it is said explicitly)."""
        args = self._args
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{self._name}-statefulset",
            metadata=metadata("mongodb", args.namespace, LABELS),
            spec=self._statefulset_spec(args, root_secret, account, keyfile),
            opts=pulumi.ResourceOptions.merge(self._keep, pulumi.ResourceOptions(depends_on=[*after, *args.after])),
        )
        return self.statefulset

    def _replica_set(self, root_secret: k8s.core.v1.Secret, statefulset: k8s.apps.v1.StatefulSet) -> k8s.batch.v1.Job:
        """The disruption budget that keeps a majority up, and the Job that makes the members one replica set."""
        self._disruption_budget(statefulset)
        return self._replica_set_job(root_secret, statefulset)

    def ready_for(self, service: str) -> tuple[pulumi.Resource, ...]:
        """What a version of `service` keeping its data here waits for: the database, its Secret and its own data."""
        return (*self._ready, self.jobs[service]) if service in self.jobs else self._ready

    def _keyfile(self) -> k8s.core.v1.Secret:
        name, args = self._name, self._args
        # The members authenticate to each other with a shared key: 756 base64 characters, as MongoDB suggests.
        key = random.RandomPassword(f"{name}-keyfile-value", length=756, special=False, opts=self._keep)
        return k8s.core.v1.Secret(
            f"{name}-keyfile",
            metadata=metadata("mongodb-keyfile", args.namespace, LABELS),
            string_data=pulumi.Output.secret({"keyfile": key.result}),
            opts=self._after_mesh(protected=True),
        )

    def _disruption_budget(self, statefulset: k8s.apps.v1.StatefulSet) -> None:
        name, args = self._name, self._args
        policy = args.kubernetes.policy
        policy.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata("mongodb", args.namespace, LABELS),
            # A drain may take members only while a majority stays up to hold the primary.
            spec=policy.PodDisruptionBudgetSpecArgs(min_available=args.settings.replicas // 2 + 1,
                                                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[statefulset]),
        )

    def _replica_set_job(self, root_secret: k8s.core.v1.Secret, statefulset: k8s.apps.v1.StatefulSet) -> k8s.batch.v1.Job:
        name, args = self._name, self._args
        labels = {"app": "mongodb-replica-set-init", "version": f"mongo-{args.settings.version}", **SEED_POD_LABELS}
        shell = ping_command(args.settings.version)[0]
        login = (f'--username "$(cat {ROOT_CREDENTIALS_DIR}/username)" --password "$(cat {ROOT_CREDENTIALS_DIR}/password)" '
                 '--authenticationDatabase admin')
        # Initiating works on any member, but only the primary can change the members, wherever it is by now.
        body = (f'set -o pipefail; primary=$({shell} --quiet --host mongodb-0.{HEADLESS_SERVICE} {login} '
                f'--eval "$REPLICA_SET_SCRIPT" | tail -n 1) && echo "primary: $primary" && '
                f'{shell} --quiet --host "$primary" {login} --eval "$MEMBERS_SCRIPT"')
        container = k8s.core.v1.ContainerArgs(
            name="replica-set-init",
            image=mongo_image(args.images, args.settings.version),
            image_pull_policy=args.images.pull_policy,
            command=["/bin/bash", "-c", proxy_script(args.istio_minor, body)],
            env=[
                k8s.core.v1.EnvVarArgs(name="REPLICA_SET_SCRIPT", value=replica_set_script(args.settings.replicas)),
                k8s.core.v1.EnvVarArgs(name="MEMBERS_SCRIPT", value=members_script(args.settings.replicas)),
                k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
            ],
            resources=JOB_RESOURCES,
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True, run_as_user=MONGO_UID, allow_privilege_escalation=False,
                read_only_root_filesystem=True, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"), ROOT_CREDENTIALS_MOUNT],
        )
        return self._job(f"{name}-replica-set-init", "mongodb-replica-set-init", labels, container,
                         volumes=[k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                                  root_credentials_volume(root_secret)],
                         depends_on=[statefulset, root_secret])

    def _job(self, resource_name: str, job_name: str, labels: dict[str, str],
             container: k8s.core.v1.ContainerArgs, depends_on: list[pulumi.Resource],
             volumes: list[k8s.core.v1.VolumeArgs] | None = None) -> k8s.batch.v1.Job:
        """A Job that talks to MongoDB through its sidecar, under the seeding identity the mesh lets in."""
        return k8s.batch.v1.Job(
            resource_name,
            metadata=metadata(job_name, self._args.namespace, labels),
            spec=k8s.batch.v1.JobSpecArgs(
                # A retry must be a new pod: the sidecar has already been told to quit in the old one.
                backoff_limit=4,
                active_deadline_seconds=JOB_DEADLINE_SECONDS,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=self._args.kubernetes.seccomp_annotations or None),
                    spec=k8s.core.v1.PodSpecArgs(restart_policy="Never", service_account_name=SEED_ACCOUNT,
                                                 automount_service_account_token=self._args.mount_account_token,
                                                 security_context=self._args.kubernetes.pod_security_context(run_as_non_root=True),
                                                 containers=[container], volumes=volumes),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                        custom_timeouts=pulumi.CustomTimeouts(create=JOB_AWAIT, update=JOB_AWAIT)),
        )

    def _service(self, part: str, service_name: str, headless: bool) -> k8s.core.v1.Service:
        name, args = self._name, self._args
        # Named tcp-: Envoy's Mongo filter only adds stats and does not decode the OP_MSG protocol newer
        # drivers speak, so plain TCP is the robust choice. appProtocol says the same where the API takes it.
        app_protocol = "tcp" if args.kubernetes.service_app_protocol else None
        return workload_service(
            f"{name}-{part}-service", service_name, args.namespace, LABELS,
            k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None" if headless else None,
                selector=LABELS,
                ports=[k8s.core.v1.ServicePortArgs(name="tcp-mongo", port=PORT, target_port=PORT, protocol="TCP",
                                                   app_protocol=app_protocol)],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )

    def _statefulset_spec(self, args: MongoDBArgs, root_secret: k8s.core.v1.Secret, account: k8s.core.v1.ServiceAccount,
                          keyfile: k8s.core.v1.Secret | None) -> k8s.apps.v1.StatefulSetSpecArgs:
        settings = args.settings
        # A replica set member listens beyond localhost for its peers and proves itself to them with the key file.
        # The entrypoint drops these flags for its first, user-creating start, so initialisation works unchanged.
        member_args = ["--bind_ip_all", "--replSet", REPLICA_SET, "--keyFile", KEYFILE_PATH] if keyfile else None

        probe = k8s.core.v1.ProbeArgs(exec_=k8s.core.v1.ExecActionArgs(command=ping_command(settings.version)),
                                      initial_delay_seconds=10, period_seconds=10, timeout_seconds=5, failure_threshold=6)
        container = k8s.core.v1.ContainerArgs(
            name="mongodb",
            image=mongo_image(args.images, settings.version),
            image_pull_policy=args.images.pull_policy,
            args=member_args,
            env=[k8s.core.v1.EnvVarArgs(name=f"MONGO_INITDB_ROOT_{key.upper()}_FILE", value=f"{ROOT_CREDENTIALS_DIR}/{key}")
                 for key in ("username", "password")],
            ports=[container_port("tcp-mongo", PORT)],
            readiness_probe=probe,
            liveness_probe=probe,
            resources=settings.resources.model_dump(mode="json"),
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data/db"),
                # The entrypoint writes its init config to /tmp; configdb is declared a volume by the image.
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                k8s.core.v1.VolumeMountArgs(name="configdb", mount_path="/data/configdb"),
                ROOT_CREDENTIALS_MOUNT,
                *([k8s.core.v1.VolumeMountArgs(name="keyfile", mount_path=KEYFILE_PATH.rsplit("/", 1)[0], read_only=True)]
                  if keyfile else []),
            ],
        )
        return k8s.apps.v1.StatefulSetSpecArgs(
            service_name=HEADLESS_SERVICE,
            replicas=settings.replicas,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={**LABELS, "version": f"mongo-{settings.version}"},
                                                    annotations=args.kubernetes.seccomp_annotations or None),
                spec=k8s.core.v1.PodSpecArgs(
                    service_account_name=account.metadata.apply(lambda meta: meta["name"]),
                    automount_service_account_token=args.mount_account_token,
                    security_context=args.kubernetes.pod_security_context(
                        run_as_non_root=True, run_as_user=MONGO_UID, run_as_group=MONGO_UID, fs_group=MONGO_UID),
                    init_containers=[self._keyfile_copier(container.image, args.images, container.resources)] if keyfile else None,
                    containers=[container],
                    volumes=[
                        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        k8s.core.v1.VolumeArgs(name="configdb", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        root_credentials_volume(root_secret),
                        *(self._keyfile_volumes(keyfile) if keyfile else []),
                    ],
                ),
            ),
            volume_claim_templates=[k8s.core.v1.PersistentVolumeClaimArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=LABELS),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"],
                    storage_class_name=settings.storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": settings.storage_size}),
                ),
            )],
        )

    @staticmethod
    def _keyfile_copier(image: str, images: ImageSettings, resources: dict) -> k8s.core.v1.ContainerArgs:
        # mongod refuses a key file readable by its group, and a Secret volume under fsGroup is group-readable,
        # so the key is copied into memory-backed storage with owner-only permissions first.
        folder = KEYFILE_PATH.rsplit("/", 1)[0]
        return k8s.core.v1.ContainerArgs(
            name="keyfile",
            image=image,
            image_pull_policy=images.pull_policy,
            command=["/bin/sh", "-c", f"cp /keyfile-source/keyfile {KEYFILE_PATH} && chmod 0400 {KEYFILE_PATH}"],
            resources=resources,
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False, read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="keyfile-source", mount_path="/keyfile-source", read_only=True),
                           k8s.core.v1.VolumeMountArgs(name="keyfile", mount_path=folder)],
        )

    @staticmethod
    def _keyfile_volumes(keyfile: k8s.core.v1.Secret) -> list[k8s.core.v1.VolumeArgs]:
        return [
            k8s.core.v1.VolumeArgs(name="keyfile-source", secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=keyfile.metadata.apply(lambda meta: meta["name"]), default_mode=0o400)),
            k8s.core.v1.VolumeArgs(name="keyfile", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory")),
        ]

    def _seed_job(self, service: str, connection_secret: k8s.core.v1.Secret, database_up: pulumi.Resource) -> k8s.batch.v1.Job:
        name, args = self._name, self._args
        labels = {"app": f"seed-{service}", "version": args.images.seed_tag[:12], **SEED_POD_LABELS}
        container = k8s.core.v1.ContainerArgs(
            name="seed",
            image=seed_image(args.images, service),
            image_pull_policy=args.images.pull_policy,
            command=seed_command(args.istio_minor),
            env=[
                k8s.core.v1.EnvVarArgs(name="DATABASE", value="mongodb"),
                # Upload the bundled data set; the seeder drops and re-inserts its collections, so running it again is safe.
                k8s.core.v1.EnvVarArgs(name="GENERATE_DATA", value="false"),
                k8s.core.v1.EnvVarArgs(name=CONNECTION_KEY, value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=connection_secret.metadata.apply(lambda meta: meta["name"]), key=CONNECTION_KEY))),
                # The image's root is read-only: no bytecode files, and anything else temporary goes to /tmp.
                k8s.core.v1.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
                k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
            ],
            resources=JOB_RESOURCES,
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True, run_as_user=1000, allow_privilege_escalation=False, read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
        )
        return self._job(f"{name}-seed-{service}", f"seed-{service}", labels, container,
                         volumes=[k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi"))],
                         depends_on=[database_up, connection_secret])
