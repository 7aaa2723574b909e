"""Policy pack entry point: `pulumi preview --policy-pack policy`. Starts the analyzer and serves until the engine stops it."""

from mesh_policies import ENFORCEMENT, POLICIES
from pulumi_policy import PolicyPack

PolicyPack(name="bee-travels-mesh", policies=POLICIES, enforcement_level=ENFORCEMENT,
           description="Mandatory rules for Bee Travels mesh stacks: mTLS, routing, workload hardening, data, exposure, secrets.")
