"""The cloud tier's external MongoDB: the Secret holding its connection URL and CA, which its versions mount."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from builders.kube import metadata, moved_from
from builders.workloads import CLOUD_SECRET


@dataclass(frozen=True)
class CloudDatabaseArgs:
    url: pulumi.Output[str]
    cert: pulumi.Output[str] | None
    namespace: pulumi.Input[str]
    after: list[pulumi.Resource]


class CloudDatabase(pulumi.ComponentResource):
    """Owns the connection Secret of the external database the cloud-tier versions use."""

    def __init__(self, name: str, args: CloudDatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("beetravels:data:CloudDatabase", name, None, opts)
        data = {"url": args.url, **({"ca.pem": args.cert} if args.cert is not None else {})}
        # Named as it was when the services' component owned it, so existing stacks keep the Secret.
        self.secret = k8s.core.v1.Secret(
            "bee-travels-cloud-database", metadata=metadata(CLOUD_SECRET, args.namespace),
            string_data=pulumi.Output.secret(data),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.after, aliases=[moved_from("workload")]),
        )
        self.has_cert = args.cert is not None
        self.register_outputs({"secretName": CLOUD_SECRET})
