"""The in-cluster MongoDB's addresses and the scripts its Jobs run: connection URLs, the replica set's initiation and
membership, and the wait for (and exit of) a Job's sidecar around a command."""

from __future__ import annotations

from domain.mongodb import PORT

SERVICE_NAME = "mongo"  # the host name the Bee Travels v2 images were built against
DATABASE = "beetravels"
HEADLESS_SERVICE = "mongodb-headless"
REPLICA_SET = "rs0"
def headless_needs_explicit_mtls(istio_minor: str, replica_set: bool, mtls_mode: str) -> bool:
    """Whether the members' own addresses need a DestinationRule saying ISTIO_MUTUAL.

    A replica set's clients and members connect to each member by its headless name. Istio 1.6 makes a headless
    Service an ORIGINAL_DST cluster and leaves such clusters out of auto mTLS (pilot/pkg/networking/core/v1alpha3/
    cluster.go at 1.6.14, conditionallyConvertToIstioMtls: "Do not enable auto mtls when cluster type is
    Cluster_ORIGINAL_DST"), so those connections would leave the sidecar in plain text, which a STRICT peer refuses
    and in which an AuthorizationPolicy sees no principal. Istio 1.30 applies auto mTLS to them as to any other.
    """
    return istio_minor == "1.6" and replica_set and mtls_mode != "DISABLE"


def headless_mtls_rule_spec(namespace: str) -> dict:
    """A DestinationRule for every member's own address: mutual TLS with the mesh's certificates."""
    return {"host": f"{HEADLESS_SERVICE}.{namespace}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}


# How long the replica-set Job waits for a primary.
PRIMARY_WAIT_SECONDS = 600


def member_hosts(replicas: int) -> list[str]:
    return [f"mongodb-{index}.{HEADLESS_SERVICE}:{PORT}" for index in range(replicas)]


def connection_url(user: str, password: str, replicas: int = 1) -> str:
    if replicas == 1:
        return f"mongodb://{user}:{password}@{SERVICE_NAME}:{PORT}/{DATABASE}?authSource=admin"
    # Every member is listed so the drivers find the primary wherever it is after an election.
    return f"mongodb://{user}:{password}@{','.join(member_hosts(replicas))}/{DATABASE}?authSource=admin&replicaSet={REPLICA_SET}"


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


def proxy_script(istio_minor: str, body: str) -> str:
    """Bash: wait for the sidecar, run `body`, then stop the sidecar and exit with body's status.

    The same sequence as seed_command, for images without wget (the mongo image): bash's /dev/tcp speaks the HTTP.
    """
    ready_port = 15020 if istio_minor == "1.6" else 15021
    return (
        "http() { exec 3<>/dev/tcp/127.0.0.1/$1 && printf '%s /%s HTTP/1.0\\r\\nContent-Length: 0\\r\\n\\r\\n' \"$2\" \"$3\" >&3 "
        "&& head -n1 <&3; exec 3>&-; }; "
        f"until http {ready_port} GET healthz/ready 2>/dev/null | grep -q ' 200'; do sleep 1; done; "
        f"{body}; status=$?; "
        "http 15000 POST quitquitquit >/dev/null 2>&1; "
        "exit $status"
    )


def replica_set_script(replicas: int) -> str:
    """mongo shell JavaScript: initiate the replica set unless it already is, wait for a primary and print its host
    as the last line. Safe to re-run."""
    members = ",".join(f'{{_id:{index},host:"{host}"}}' for index, host in enumerate(member_hosts(replicas)))
    return (
        "function state(){try{return rs.status()}catch(e){return {ok:0,code:e.code,errmsg:e.message}}}"
        "var s=state();"
        f'if(s.ok!==1&&s.code===94){{var r=rs.initiate({{_id:"{REPLICA_SET}",members:[{members}]}});'
        "if(r.ok!==1){throw new Error('rs.initiate: '+tojson(r))}print('replica set initiated')}"
        "else if(s.ok!==1){throw new Error('rs.status: '+tojson(s))}else{print('replica set already initiated')}"
        f"var until=Date.now()+{PRIMARY_WAIT_SECONDS * 1000};"
        "while(!db.isMaster().primary){if(Date.now()>until){throw new Error('no primary elected')}sleep(2000)}"
        "print(db.isMaster().primary)"
    )


def members_script(replicas: int) -> str:
    """mongo shell JavaScript, run on the primary: make the set's members exactly the StatefulSet's pods.

    Members that left (a smaller `mongodb.replicas`: the StatefulSet has already removed their pods) are removed,
    then new pods are added, one member per reconfiguration, as MongoDB 4.4 requires. A member's _id is its pod's
    ordinal, so a pod that comes back is the same member. Safe to re-run: with nothing to change it changes nothing.
    """
    hosts = ",".join(f'"{host}"' for host in member_hosts(replicas))
    return (
        f"var want=[{hosts}];"
        "function conf(){var r=db.adminCommand({replSetGetConfig:1});if(r.ok!==1){throw new Error('replSetGetConfig: '+tojson(r))}return r.config}"
        "function reconfig(c,what){c.version=c.version+1;var r=db.adminCommand({replSetReconfig:c});"
        "if(r.ok!==1){throw new Error('replSetReconfig ('+what+'): '+tojson(r))}print(what)}"
        "function hosts(c){return c.members.map(function(m){return m.host})}"
        "hosts(conf()).forEach(function(h){if(want.indexOf(h)<0){var c=conf();"
        "c.members=c.members.filter(function(m){return m.host!==h});reconfig(c,'removed '+h)}});"
        "want.forEach(function(h,i){var c=conf();if(hosts(c).indexOf(h)<0){c.members.push({_id:i,host:h});reconfig(c,'added '+h)}});"
        "print('members: '+hosts(conf()).join(','))"
    )
