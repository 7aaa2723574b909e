"""In-cluster MongoDB for the mongodb data tier: StatefulSet, volume, generated credentials and seeding Jobs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.catalogue import SEED_IMAGES
from components.kube import metadata
from components.settings import ImageSettings, MongoSettings

SERVICE_NAME = "mongo"  # the host name the Bee Travels v2 images were built against
DATABASE = "beetravels"
PORT = 27017
CONNECTION_SECRET = "mongodb-connection"
CONNECTION_KEY = "MONGO_CONNECTION_URL"
LABELS = {"app": "mongodb"}
MONGO_UID = 999  # the mongodb user of the official image
SEED_ACCOUNT = "mongodb-seed"
SEED_POD_LABELS = {"app.kubernetes.io/component": "seed"}


@dataclass(frozen=True)
class MongoDBArgs:
    settings: MongoSettings
    images: ImageSettings
    namespace: pulumi.Input[str]
    # Backends whose data lives here; each gets a seeding Job.
    seeded_services: tuple[str, ...]
    # Istio minor ("1.6", "1.30"): decides how a Job's sidecar is told to exit.
    istio_minor: str
    production: bool
    after: list[pulumi.Resource]


def connection_url(user: str, password: str) -> str:
    return f"mongodb://{user}:{password}@{SERVICE_NAME}:{PORT}/{DATABASE}?authSource=admin"


def ping_command(version: str) -> list[str]:
    # The legacy `mongo` shell left the image in 6.0; `mongosh` replaced it.
    shell = "mongosh" if int(version.split(".")[0]) >= 6 else "mongo"
    return [shell, "--quiet", "--eval", "db.adminCommand('ping').ok"]


def seed_command(istio_minor: str) -> list[str]:
    """Run the seeder, then stop the sidecar so the Job can complete.

    Istio 1.6 has no way to end a sidecar with its Job (no native sidecars, no holdApplicationUntilProxyStarts),
    and without the sidecar the Job could not reach MongoDB under STRICT mTLS. So the seeder waits for the proxy
    to be ready, runs, then asks Envoy to quit through its local admin port and exits with the seeder's status.
    """
    ready_port = 15020 if istio_minor == "1.6" else 15021
    script = (
        f"until wget -q -O /dev/null http://127.0.0.1:{ready_port}/healthz/ready; do sleep 1; done; "
        "python gen_upload.py; status=$?; "
        "wget -q -O /dev/null --post-data= http://127.0.0.1:15000/quitquitquit; "
        "exit $status"
    )
    return ["/bin/sh", "-c", script]


class MongoDB(pulumi.ComponentResource):
    """Owns the MongoDB StatefulSet, its Services, volume template, credentials Secrets and seeding Jobs."""

    connection_url: pulumi.Output[str]
    connection_secret_name: str

    def __init__(self, name: str, args: MongoDBArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:data:MongoDB", name, None, opts)
        # In production the data and the credentials that open it must survive a destroy or a rename.
        keep = pulumi.ResourceOptions(parent=self, protect=args.production, retain_on_delete=args.production)

        user = random.RandomString(f"{name}-root-user", length=12, special=False, upper=False, numeric=False, opts=keep)
        password = random.RandomPassword(f"{name}-root-password", length=32, special=False, opts=keep)
        root_secret = k8s.core.v1.Secret(
            f"{name}-root-credentials",
            metadata=metadata("mongodb-root", args.namespace, LABELS),
            string_data=pulumi.Output.secret({"username": user.result, "password": password.result}),
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=args.after)),
        )
        self.connection_url = pulumi.Output.secret(
            pulumi.Output.all(user.result, password.result).apply(lambda parts: connection_url(*parts))
        )
        connection_secret = k8s.core.v1.Secret(
            f"{name}-connection",
            metadata=metadata(CONNECTION_SECRET, args.namespace, LABELS),
            string_data={CONNECTION_KEY: self.connection_url},
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=args.after)),
        )
        self.connection_secret_name = CONNECTION_SECRET

        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", metadata=metadata("mongodb", args.namespace, LABELS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        # The seeding Jobs' own identity: the authorization policy lets exactly them and the v2 backends in.
        k8s.core.v1.ServiceAccount(
            f"{name}-seed-service-account", metadata=metadata(SEED_ACCOUNT, args.namespace, LABELS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )
        headless = self._service(name, "headless", "mongodb-headless", args, headless=True)
        self._service(name, "client", SERVICE_NAME, args, headless=False)
        statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=metadata("mongodb", args.namespace, LABELS),
            spec=self._statefulset_spec(args, root_secret, account),
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=[headless, *args.after])),
        )
        self.statefulset = statefulset
        self.jobs = [self._seed_job(name, service, args, connection_secret, statefulset) for service in args.seeded_services]
        self.register_outputs({"connectionUrl": self.connection_url, "connectionSecretName": CONNECTION_SECRET})

    def _service(self, name: str, part: str, service_name: str, args: MongoDBArgs, headless: bool) -> k8s.core.v1.Service:
        # Named tcp-: Envoy's Mongo filter only adds stats and does not decode the OP_MSG protocol newer
        # drivers speak, so plain TCP is the robust choice.
        return k8s.core.v1.Service(
            f"{name}-{part}-service",
            metadata=metadata(service_name, args.namespace, LABELS),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None" if headless else None,
                selector=LABELS,
                ports=[k8s.core.v1.ServicePortArgs(name="tcp-mongo", port=PORT, target_port=PORT, protocol="TCP")],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after),
        )

    def _statefulset_spec(self, args: MongoDBArgs, root_secret: k8s.core.v1.Secret,
                          account: k8s.core.v1.ServiceAccount) -> k8s.apps.v1.StatefulSetSpecArgs:
        settings = args.settings

        def from_root(key: str) -> k8s.core.v1.EnvVarArgs:
            return k8s.core.v1.EnvVarArgs(
                name=f"MONGO_INITDB_ROOT_{key.upper()}",
                value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                    name=root_secret.metadata.apply(lambda meta: meta["name"]), key=key)),
            )

        probe = k8s.core.v1.ProbeArgs(exec_=k8s.core.v1.ExecActionArgs(command=ping_command(settings.version)),
                                      initial_delay_seconds=10, period_seconds=10, timeout_seconds=5, failure_threshold=6)
        container = k8s.core.v1.ContainerArgs(
            name="mongodb",
            image=f"docker.io/library/mongo:{settings.version}",
            image_pull_policy="IfNotPresent",
            env=[from_root("username"), from_root("password")],
            ports=[k8s.core.v1.ContainerPortArgs(name="tcp-mongo", container_port=PORT)],
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
            ],
        )
        return k8s.apps.v1.StatefulSetSpecArgs(
            service_name="mongodb-headless",
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={**LABELS, "version": f"mongo-{settings.version}"}),
                spec=k8s.core.v1.PodSpecArgs(
                    service_account_name=account.metadata.apply(lambda meta: meta["name"]),
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_non_root=True, run_as_user=MONGO_UID, run_as_group=MONGO_UID, fs_group=MONGO_UID),
                    containers=[container],
                    volumes=[
                        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        k8s.core.v1.VolumeArgs(name="configdb", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
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

    def _seed_job(self, name: str, service: str, args: MongoDBArgs, connection_secret: k8s.core.v1.Secret,
                  statefulset: k8s.apps.v1.StatefulSet) -> k8s.batch.v1.Job:
        labels = {"app": f"seed-{service}", "version": args.images.seed_tag[:12], **SEED_POD_LABELS}
        return k8s.batch.v1.Job(
            f"{name}-seed-{service}",
            metadata=metadata(f"seed-{service}", args.namespace, labels),
            spec=k8s.batch.v1.JobSpecArgs(
                # A retry must be a new pod: the sidecar has already been told to quit in the old one.
                backoff_limit=4,
                active_deadline_seconds=900,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        service_account_name=SEED_ACCOUNT,
                        containers=[k8s.core.v1.ContainerArgs(
                            name="seed",
                            image=f"{args.images.registry}/{SEED_IMAGES[service]}:{args.images.seed_tag}",
                            image_pull_policy=args.images.pull_policy,
                            command=seed_command(args.istio_minor),
                            env=[
                                k8s.core.v1.EnvVarArgs(name="DATABASE", value="mongodb"),
                                # Upload the bundled data set; the seeder drops and re-inserts its collections,
                                # so running it again is safe.
                                k8s.core.v1.EnvVarArgs(name="GENERATE_DATA", value="false"),
                                k8s.core.v1.EnvVarArgs(name=CONNECTION_KEY, value_from=k8s.core.v1.EnvVarSourceArgs(
                                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                                        name=connection_secret.metadata.apply(lambda meta: meta["name"]), key=CONNECTION_KEY))),
                            ],
                            resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                            security_context=k8s.core.v1.SecurityContextArgs(
                                run_as_non_root=True, run_as_user=1000, allow_privilege_escalation=False,
                                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                        )],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[statefulset, connection_secret]),
        )
