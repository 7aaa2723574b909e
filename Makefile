# Entry points named in README.md. `make up` deploys the stack this machine can run (dev or dev-current); `make test` runs every check offline.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
ISTIO_VERSION ?= 1.6.14
# The pinned toolchain's versions (CLI, providers, simulated cluster) live in one file.
include tools/toolchain/versions
# One kind for both generations of node image (tools/up_plan.py pins the images and says why).
KIND_VERSION := v0.29.0
LEGACY_SCHEMAS := .cache/kubernetes-validate-legacy

.PHONY: help venv schemas promtool node toolchain sim-cluster-tools sim-cluster-tools-all sim-cluster sim-cluster-stop test lint config-schema istio-charts policy-pack render bench up down preview destroy delete-cluster recover deploy-deps e2e-checks promote diagnose analyze scanner scan scan-charts

help:
	@echo "make up        set up and run 'pulumi up': with no context, a kind cluster and the stack it can run (dev on cgroup v1, dev-current otherwise)"
	@echo "make down      destroy what 'make up' deployed, then delete the kind cluster if 'make up' created it"
	@echo "make test      set up and run every check: unit, mock-engine and schema tests, then the real Pulumi CLI on every stack"
	@echo "make toolchain build or find the pinned Pulumi CLI, language host and providers (prints the folder holding them)"
	@echo "make sim-cluster / sim-cluster-stop [KUBERNETES_VERSION=1.18]  a local Kubernetes 1.33 (or 1.18) control plane with fake nodes (prints KUBECONFIG=...)"
	@echo "make preview   'pulumi preview' on STACK=$(STACK)"
	@echo "make istio-charts  fetch and verify the Istio $(ISTIO_VERSION) Helm charts into .cache/istio"
	@echo "make policy-pack   set up the policy pack's virtualenv (policy/venv) for 'pulumi preview --policy-pack policy'"
	@echo "make render    render dev and prod offline into rendered/ (YAML per object, Helm releases, routing diagram)"
	@echo "make recover STACK=dev  after an interrupted update: stale lock, pending operations, Helm releases left pending (make up does it)"
	@echo "make promote STACK=prod SERVICE=hotel [APPLY=1]  judge a canary on Prometheus and move its weight in the stack file"
	@echo "make diagnose STACK=prod  when requests fail: proxy sync, istioctl analyze, sidecars, empty subsets, drift, mTLS, recent 5xx (reads only)"
	@echo "make analyze STACK=dev    istioctl analyze (the stack's Istio release) of the rendered objects, offline; fails on an error"
	@echo "make scan STACK=prod  failed checks per workload of a misconfiguration scanner (checkov) over the rendered objects"
	@echo "make scan-charts STACK=prod [CHARTS_DIR=..]  the same over the Helm releases' workloads, rendered from the pinned charts"
	@echo "make bench     measure program evaluation (dev, prod, 20-400 services) and write docs/performance.md"
	@echo "make bench-real  the real CLI on simulated clusters: dev-shaped, 20, 200 services, 200 split into stacks, every lever (over an hour)"
	@echo "make bench-profile  where the CLI's CPU goes in the 200-service update (go tool pprof)"
	@echo "make config-schema regenerate Pulumi.yaml's config block and docs/configuration.md from config/settings.py"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.installed-runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed-dev

# Kubernetes 1.10-1.24 JSON schemas (Istio 1.6's clusters); the installed kubernetes-validate has 1.25+.
schemas: $(LEGACY_SCHEMAS)/.installed
$(LEGACY_SCHEMAS)/.installed: | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps --target $(LEGACY_SCHEMAS) kubernetes-validate==1.24.1
	touch $@

# debian_command COMMAND PACKAGE: COMMAND on PATH, else Debian's PACKAGE installed (as root); the target fails where
# neither works, since the tests that need the command fail without it.
define debian_command
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	  else echo "$(1) not found and not installable here (needs root and apt-get): install $(2) and put $(1) on PATH" >&2; exit 1; fi; }
	@command -v $(1) >/dev/null || { echo "$(1) is still not on PATH after installing Debian's $(2)" >&2; exit 1; }
endef

# Prometheus' promtool evaluates the service-level rules in the tests; Debian's prometheus package ships it.
promtool:
	$(call debian_command,promtool,prometheus)

# Node.js runs the MongoDB replica-set scripts and the UI pod's request loop in the tests; Debian's nodejs has it.
node:
	$(call debian_command,node,nodejs)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/shellcheck -x scripts/*.sh tools/toolchain/*.sh tools/toolchain/*/build.sh .ci/run
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/python -m tools.config_schema --check

# The pinned Pulumi CLI, its Python language host and the providers, outside the clone (cold: built from Go modules).
toolchain:
	@scripts/toolchain.sh

# A local Kubernetes control plane with fake nodes (no containers, loopback only) for the real-cluster tests:
# 1.33 (current Istio's stacks) by default, KUBERNETES_VERSION=1.18 for Istio 1.6's (dev and prod). Both can run at once.
KUBERNETES_VERSION ?= 1.33
SIM_KUBERNETES_VERSIONS := 1.18 1.33
kube_bin = $(HOME)/.cache/bee-travels-toolchain/kube-$(1)/bin
sim-cluster-tools:
	@tools/toolchain/kube-$(KUBERNETES_VERSION)/build.sh $(call kube_bin,$(KUBERNETES_VERSION))
	@command -v etcd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } \
	  || { echo "etcd is needed: apt-get install etcd-server"; exit 1; }

# Both control planes, which the real-cluster tier runs.
sim-cluster-tools-all:
	@for version in $(SIM_KUBERNETES_VERSIONS); do $(MAKE) --no-print-directory sim-cluster-tools KUBERNETES_VERSION=$$version || exit 1; done

sim-cluster: sim-cluster-tools
	KUBERNETES_VERSION=$(KUBERNETES_VERSION) scripts/sim-cluster.sh start

sim-cluster-stop:
	KUBERNETES_VERSION=$(KUBERNETES_VERSION) scripts/sim-cluster.sh stop

test: venv schemas promtool node policy-pack toolchain sim-cluster-tools-all scanner lint
	$(BIN)/python -m pytest -q

render: $(VENV)/.installed-runtime
	$(BIN)/python -m tools.render $(if $(RENDER_STACK),--stack $(RENDER_STACK))

# Program evaluation at growing stack sizes against the bare SDK floor, where the time goes, the suite's and set-up's wall times.
bench: venv schemas
	$(BIN)/python -m bench.program_scaling --profile 200 --cold 5 --suite --setup --write docs/performance.md

# The real CLI's preview and up of dev-shaped, 20- and 200-service stacks on fresh simulated clusters (own ports), next to kubectl's dry-run.
.PHONY: bench-real
bench-real: venv toolchain sim-cluster-tools policy-pack
	$(BIN)/python -m bench.real_cluster --write docs/performance.md

# The CLI's own CPU profile through the 200-service update: how much of it saving the state takes (needs go).
.PHONY: bench-profile
bench-profile: venv toolchain sim-cluster-tools policy-pack
	$(BIN)/python -m bench.cli_profile --services 200 --write docs/performance.md

config-schema: venv
	$(BIN)/python -m tools.config_schema

istio-charts: $(VENV)/.installed-runtime
	$(BIN)/python -m tools.istio_charts fetch --version $(ISTIO_VERSION) $(if $(ISTIO_SHA256),--sha256 $(ISTIO_SHA256),--use-published-checksum)

policy-pack: policy/venv/.installed
policy/venv/.installed: policy/requirements.txt
	$(PYTHON) -m venv policy/venv
	policy/venv/bin/pip install --quiet -r policy/requirements.txt
	touch $@

# STACK_ORIGIN tells up.sh whether STACK was given or is only the default above ("file").
RUN_STACK_SCRIPT = STACK=$(STACK) STACK_ORIGIN="$(origin STACK)" PULUMI_VERSION=$(PULUMI_VERSION) KIND_VERSION=$(KIND_VERSION) scripts/up.sh

up: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) up

down: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) down

preview: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) preview

destroy: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) destroy

delete-cluster: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) delete-cluster

# What an interrupted update left (a stale lock, pending operations, a Helm release left pending), recovered (tools/recover.py).
recover: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) recover

# What a CI job needs before `pulumi preview`/`up` through pulumi/actions: the program's venv, the pack's, the charts.
deploy-deps: $(VENV)/.installed-runtime policy-pack istio-charts

# After `make up` on kind: canary split, header route, plain text refused under STRICT mTLS, istio-system fenced (e2e.yml).
e2e-checks: $(VENV)/.installed-runtime
	$(RUN_STACK_SCRIPT) e2e

# Judge a canary on its metrics and move its weight in Pulumi.$(STACK).yaml; APPLY=1 also runs `pulumi up` (policy pack applied).
promote: $(VENV)/.installed-runtime $(if $(APPLY),policy-pack)
	@test -n "$(SERVICE)" || { echo "usage: make promote STACK=prod SERVICE=hotel [APPLY=1]"; exit 2; }
	PATH="$$HOME/.pulumi/bin:$$PATH" $(BIN)/python -m tools.promote --stack $(STACK) --service $(SERVICE) $(if $(APPLY),--apply)

# When requests fail: findings first, raw data after (tools/diagnose.py). KUBECONFIG/context as for kubectl;
# PROMETHEUS=URL if it is not port-forwarded to canary.prometheusUrl.
diagnose: $(VENV)/.installed-runtime
	$(BIN)/python -m tools.diagnose --stack $(STACK) $(if $(PROMETHEUS),--prometheus $(PROMETHEUS))

# Offline `istioctl analyze` of what the stack renders (the pull-request workflow runs it on dev and prod).
analyze: $(VENV)/.installed-runtime
	$(BIN)/python -m tools.analyze --stack $(STACK)

# checkov and its pinned dependencies, in a cache venv named by the lock file, and Helm built from its Go module
# (tools/scanner/helm), in a cache folder named by that module's files: like the toolchain, outside the clone.
scanner: $(VENV)/.installed-runtime
	$(BIN)/python -m tools.scan --install

scan: $(VENV)/.installed-runtime scanner
	$(BIN)/python -m tools.scan --stack $(STACK) $(if $(PIN_DIGESTS),--pin-digests)

# The Helm releases' workloads, rendered by `helm template` from the charts the stack installs (CHARTS_DIR: a folder
# of pulled charts; ISTIO_CHARTS: Istio 1.6's charts folder, else `make istio-charts`' cache).
scan-charts: $(VENV)/.installed-runtime scanner
	$(BIN)/python -m tools.scan --stack $(STACK) --charts $(if $(CHARTS_DIR),--charts-dir $(CHARTS_DIR)) $(if $(ISTIO_CHARTS),--istio-charts $(ISTIO_CHARTS))
