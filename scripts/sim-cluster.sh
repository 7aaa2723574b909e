#!/usr/bin/env bash
# Local Kubernetes control plane for tests: no containers, loopback only. KUBERNETES_VERSION picks the release:
# 1.33 (default; current Istio's stacks) or 1.18 (Istio 1.6's: the dev and prod stacks).
#
#   scripts/sim-cluster.sh start       start etcd, kube-apiserver, kube-controller-manager,
#                                      kube-scheduler and kwok; create fake nodes; wait Ready;
#                                      the last line printed is KUBECONFIG=<path>
#   scripts/sim-cluster.sh stop        stop exactly the processes recorded in pid files
#   scripts/sim-cluster.sh status      show which components run
#   scripts/sim-cluster.sh kubeconfig  print the admin kubeconfig path
#   scripts/sim-cluster.sh reset       stop, then delete the state dir (etcd data, certs)
#   scripts/sim-cluster.sh stop-component|start-component NAME
#                                      one component goes away, or comes back and is healthy
#                                      (the fault tests: an API server or etcd lost mid-update)
#
# Binaries: kube-* and kwok from tools/toolchain/kube-<version>/build.sh (built on first start
# if missing), etcd from the Debian package etcd-server (installed on first start if
# missing and running as root). kwok fakes the kubelet: nodes stay Ready, scheduled pods
# become Running/Ready, pods owned by a Job succeed.
#
# Network safety: every listener binds 127.0.0.1. The Service range is loopback, so
# anything the apiserver might dial through a Service ClusterIP stays on loopback;
# admission webhooks are disabled, the apiserver publishes no endpoints for itself, and
# it reaches "kubelets" (kwok) only at InternalIP 127.0.0.1. Fake pod IPs must not be
# loopback (Endpoints validation forbids it) so they come from 198.18.0.0/16 (RFC 2544
# benchmarking range, never globally routed); nothing in this cluster dials pod IPs.
# Do not use kubectl logs/exec/port-forward/proxy, APIServices or CRD conversion
# webhooks against this cluster.
#
# Environment: KUBERNETES_VERSION (1.33 or 1.18), SIM_DIR (state, default /tmp/bee-sim-cluster, or
# /tmp/bee-sim-cluster-1.18), KUBE_BIN (binaries), SIM_NODES (fake nodes, default 2), SIM_*_PORT (see below;
# 1.18's defaults differ from 1.33's, so both clusters can run at once), SIM_START_TIMEOUT (s).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.33}
case $KUBERNETES_VERSION in
  1.33) default_dir=/tmp/bee-sim-cluster port_offset=0 ;;
  1.18) default_dir=/tmp/bee-sim-cluster-1.18 port_offset=1000 ;;
  *) echo "KUBERNETES_VERSION must be 1.33 or 1.18, not $KUBERNETES_VERSION" >&2; exit 2 ;;
esac
SIM_DIR=${SIM_DIR:-$default_dir}
KUBE_BIN=${KUBE_BIN:-$HOME/.cache/bee-travels-toolchain/kube-$KUBERNETES_VERSION/bin}
SIM_NODES=${SIM_NODES:-2}
SIM_START_TIMEOUT=${SIM_START_TIMEOUT:-180}

ADDR=127.0.0.1
APISERVER_PORT=${SIM_APISERVER_PORT:-$((16443 + port_offset))}
ETCD_PORT=${SIM_ETCD_PORT:-$((12379 + port_offset))}
ETCD_PEER_PORT=${SIM_ETCD_PEER_PORT:-$((12380 + port_offset))}
KCM_PORT=${SIM_KCM_PORT:-$((20257 + port_offset))}
SCHED_PORT=${SIM_SCHEDULER_PORT:-$((20259 + port_offset))}
KWOK_PORT=${SIM_KWOK_PORT:-$((20247 + port_offset))}

SERVICE_CIDR=127.0.100.0/24   # kubernetes Service ClusterIP = 127.0.100.1
POD_CIDR_PREFIX=198.18        # node i gets 198.18.<i+1>.0/24

PKI=$SIM_DIR/pki
RUN=$SIM_DIR/run
LOGS=$SIM_DIR/logs
KUBECONFIG_FILE=$SIM_DIR/kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[sim-cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

bin_of() {
  case $1 in
    etcd) command -v etcd || echo /usr/bin/etcd ;;
    *) echo "$KUBE_BIN/$1" ;;
  esac
}

# pid of a running component we started, or nothing. The pid file is trusted only if
# the live process still runs the same executable (guards against pid reuse).
pid_of() {
  local f=$RUN/$1.pid pid exe
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  exe=${exe% (deleted)}
  if [[ -n $exe && $exe == "$(readlink -f "$(bin_of "$1")")" ]]; then
    echo "$pid"
  fi
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

ensure_binaries() {
  local b missing=0
  for b in kube-apiserver kube-controller-manager kube-scheduler kwok kwok-stages.yaml; do
    [[ -e $KUBE_BIN/$b ]] || missing=1
  done
  if [[ $missing == 1 ]]; then
    log "binaries missing in $KUBE_BIN; building (10-25 min cold)"
    "$REPO_ROOT/tools/toolchain/kube-$KUBERNETES_VERSION/build.sh" "$KUBE_BIN"
  fi
  if ! command -v etcd >/dev/null; then
    [[ $(id -u) == 0 ]] || die "etcd not found: apt-get install -y etcd-server"
    log "installing Debian etcd-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  fi
}

gen_pki() {
  mkdir -p "$PKI"
  [[ -f $PKI/.done ]] && return 0
  log "generating certificates in $PKI"
  (
    cd "$PKI"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj /CN=bee-sim-cluster-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj /CN=kube-apiserver 2>/dev/null
    cat > apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:127.0.100.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=kubernetes-admin" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out admin.crt -days 3650 -extfile admin.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ca.srl
    touch .done
  )
}

write_kubeconfig() {
  local tmp=$KUBECONFIG_FILE.tmp
  umask 077
  cat > "$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bee-sim
  cluster:
    server: https://$ADDR:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: bee-sim-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI/admin.crt")
    client-key-data: $(base64 -w0 "$PKI/admin.key")
contexts:
- name: bee-sim
  context:
    cluster: bee-sim
    user: bee-sim-admin
current-context: bee-sim
EOF
  mv "$tmp" "$KUBECONFIG_FILE"
}

args_of() {
  case $1 in
    etcd)
      # Debian etcd 3.4; own data dir and ports, not the system service.
      ARGS=(
        --name=sim --data-dir="$SIM_DIR/etcd"
        --listen-client-urls="http://$ADDR:$ETCD_PORT" --advertise-client-urls="http://$ADDR:$ETCD_PORT"
        --listen-peer-urls="http://$ADDR:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://$ADDR:$ETCD_PEER_PORT"
        --initial-cluster="sim=http://$ADDR:$ETCD_PEER_PORT" --initial-cluster-state=new
        --enable-v2=false --auto-compaction-retention=1 --quota-backend-bytes=4294967296
        --log-level=warn --logger=zap
      ) ;;
    kube-apiserver)
      ARGS=(
        --etcd-servers="http://$ADDR:$ETCD_PORT"
        --bind-address="$ADDR" --secure-port="$APISERVER_PORT" --advertise-address="$ADDR"
        # the apiserver would publish its advertise address as the "kubernetes" Service
        # endpoint (loopback is invalid there); publish nothing instead
        --endpoint-reconciler-type=none
        --service-cluster-ip-range="$SERVICE_CIDR"
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key"
        --client-ca-file="$PKI/ca.crt"
        # published for the controller-manager/scheduler delegated authn (silences their
        # "missing requestheader-client-ca-file" errors). No front-proxy client cert is
        # issued and no --proxy-client-cert-file is set: the apiserver proxies nothing.
        --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group
        --requestheader-extra-headers-prefix=X-Remote-Extra-
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
        --service-account-issuer=https://kubernetes.default.svc.cluster.local
        "--authorization-mode=Node,RBAC"
        # no admission webhooks: nothing is ever dialled for admission
        "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
        # reach kwok's fake kubelet only by InternalIP (127.0.0.1), never by hostname
        "--kubelet-preferred-address-types=InternalIP"
        --allow-privileged=true
        --profiling=false
      ) ;;
    kube-controller-manager)
      ARGS=(
        --kubeconfig="$KUBECONFIG_FILE"
        --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE"
        --bind-address="$ADDR" --secure-port="$KCM_PORT" --cert-dir="$SIM_DIR/kcm-certs"
        --controllers='*'
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt"
        --use-service-account-credentials=false
        --allocate-node-cidrs=false --cluster-signing-cert-file="$PKI/ca.crt"
        --cluster-signing-key-file="$PKI/ca.key"
        --leader-elect=false --kube-api-qps=200 --kube-api-burst=400
        # A node whose lease lapses past this is marked NotReady, and so are its pods. A kubelet sets them Ready
        # again on its next status sync; kwok's stages do not (they take a pod to Ready once), so an API server or
        # etcd outage longer than the default 40-50 s would leave pods NotReady for good. Longer than any outage
        # the fault tests cause.
        --node-monitor-grace-period=5m
        --profiling=false
      ) ;;
    kube-scheduler)
      ARGS=(
        --kubeconfig="$KUBECONFIG_FILE"
        --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE"
        --bind-address="$ADDR" --secure-port="$SCHED_PORT"
        --leader-elect=false --kube-api-qps=200 --kube-api-burst=400
        --profiling=false
      ) ;;
    kwok)
      ARGS=(
        --kubeconfig="$KUBECONFIG_FILE"
        --config="$KUBE_BIN/kwok-stages.yaml"
        --manage-all-nodes=false
        --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
        # explicit address: with only --node-port kwok would listen on 0.0.0.0
        --server-address="$ADDR:$KWOK_PORT" --node-port="$KWOK_PORT" --node-ip="$ADDR"
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key"
        --cidr="$POD_CIDR_PREFIX.0.0/24"
        --node-lease-duration-seconds=40
      ) ;;
  esac
}

port_of() {
  case $1 in
    etcd) echo "$ETCD_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) echo "$KCM_PORT" ;;
    kube-scheduler) echo "$SCHED_PORT" ;;
    kwok) echo "$KWOK_PORT" ;;
  esac
}

start_component() {
  local c=$1 p pid
  if [[ -n $(pid_of "$c") ]]; then
    log "$c already running (pid $(pid_of "$c"))"
    return 0
  fi
  for p in $(port_of "$c"); do
    port_free "$p" || die "port $ADDR:$p is taken by another process (set SIM_*_PORT)"
  done
  args_of "$c"
  # fd 9 holds the state-dir lock; the daemons must not inherit it
  setsid "$(bin_of "$c")" "${ARGS[@]}" >"$LOGS/$c.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$RUN/$c.pid"
  log "started $c (pid $pid, log $LOGS/$c.log)"
}

wait_for() { # wait_for DESCRIPTION COMPONENT CMD...
  local what=$1 c=$2 deadline=$((SECONDS + SIM_START_TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ -z $(pid_of "$c") ]]; then
      tail -n 30 "$LOGS/$c.log" >&2 || true
      die "$c exited while waiting for $what"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$LOGS/$c.log" >&2 || true; die "timeout waiting for $what"; }
    sleep 0.5
  done
}

etcd_healthy() { curl -fsS "http://$ADDR:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { kc get --raw /readyz; }
default_sa_exists() { kc -n default get serviceaccount default; }
nodes_ready() {
  local n
  n=$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
  ((n >= SIM_NODES))
}

apply_nodes() {
  local i
  for ((i = 0; i < SIM_NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    # a kubelet still sets the beta labels, and Istio 1.6's charts schedule by them (nodeAffinity)
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    node-role.kubernetes.io/agent: ""
spec:
  podCIDR: $POD_CIDR_PREFIX.$((i + 1)).0/24
  podCIDRs: [$POD_CIDR_PREFIX.$((i + 1)).0/24]
status:
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  # every field: 1.18's schema requires them all (kubectl validates against it)
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
    machineID: kwok-node-$i
    systemUUID: kwok-node-$i
    bootID: kwok-node-$i
    kernelVersion: fake
    osImage: fake
    containerRuntimeVersion: fake
EOF
  done | kc apply -f - >/dev/null
}

cmd_start() {
  local t0=$SECONDS
  ensure_binaries
  mkdir -p "$RUN" "$LOGS"
  gen_pki
  write_kubeconfig
  start_component etcd
  wait_for "etcd health" etcd etcd_healthy
  start_component kube-apiserver
  wait_for "kube-apiserver /readyz" kube-apiserver apiserver_ready
  start_component kube-controller-manager
  start_component kube-scheduler
  start_component kwok
  apply_nodes
  wait_for "$SIM_NODES Ready nodes" kwok nodes_ready
  wait_for "default ServiceAccount (controller-manager up)" kube-controller-manager default_sa_exists
  log "Kubernetes $KUBERNETES_VERSION cluster ready in $((SECONDS - t0))s"
  echo "KUBECONFIG=$KUBECONFIG_FILE"
}

stop_component() {
  local c=$1 pid i
  pid=$(pid_of "$c")
  if [[ -z $pid ]]; then
    rm -f "$RUN/$c.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    [[ -z $(pid_of "$c") ]] && break
    sleep 0.2
  done
  if [[ -n $(pid_of "$c") ]]; then
    log "$c (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$RUN/$c.pid"
  log "stopped $c (pid $pid)"
}

cmd_stop() {
  local i
  [[ -d $RUN ]] || { log "nothing to stop"; return 0; }
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    stop_component "${COMPONENTS[i]}"
  done
}

cmd_status() {
  local c pid rc=0
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if [[ -n $pid ]]; then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      rc=3
    fi
  done
  return "$rc"
}

component_named() {
  [[ " ${COMPONENTS[*]} " == *" ${1:-} "* ]] || die "no component '${1:-}'; one of: ${COMPONENTS[*]}"
}

cmd_stop-component() { component_named "${1:-}" && stop_component "$1"; }

cmd_start-component() {
  component_named "${1:-}"
  start_component "$1"
  case $1 in
    etcd) wait_for "etcd health" etcd etcd_healthy ;;
    kube-apiserver) wait_for "kube-apiserver /readyz" kube-apiserver apiserver_ready ;;
  esac
}

cmd_reset() {
  cmd_stop
  if [[ -d $SIM_DIR ]]; then
    [[ -f $PKI/.done || -d $RUN ]] || die "$SIM_DIR does not look like a sim-cluster state dir; not deleting"
    rm -rf "$SIM_DIR"
    log "removed $SIM_DIR"
  fi
}

main() {
  local cmd=${1:-}
  case $cmd in
    start|stop|status|reset|stop-component|start-component)
      mkdir -p "$SIM_DIR"
      exec 9>"$SIM_DIR/.lock"
      flock 9
      "cmd_$cmd" "${@:2}"
      ;;
    kubeconfig)
      [[ -f $KUBECONFIG_FILE ]] || die "no kubeconfig yet; run: $0 start"
      echo "$KUBECONFIG_FILE"
      ;;
    *)
      echo "usage: $0 start|stop|status|kubeconfig|reset|stop-component NAME|start-component NAME" >&2
      exit 2
      ;;
  esac
}

main "$@"
