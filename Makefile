# Entry points. `make setup` builds .venv; every other target uses it.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= eval,serve,operator,leaderboard,dev
# The raw-data mirror beside the checkout (offline machines, CI); without one, data is downloaded.
ifneq ($(wildcard ../shared/datasets/raw),)
export NEJUMI_DATA_MIRROR ?= $(abspath ../shared/datasets/raw)
endif

.PHONY: help setup setup-demo test unit check fmt demo bench crd crd-check argocd-testdata clean

## Every target with what it does (the first line of the `##` comment above it).
help:
	@awk '/^## /{if (!doc) doc = substr($$0, 4); next} /^[a-z][-a-z0-9]*:/{if (doc) {split($$0, t, ":"); printf "  %-14s %s\n", t[1], doc}; doc = ""}' $(MAKEFILE_LIST)

## The README's main command: the embedded default evaluation (tiny model, CPU, offline, MT-bench
## rated by the synthetic judge). `make demo MODEL=org/name` evaluates a real model instead.
demo: setup-demo
	$(BIN)/nejumi-eval run $(if $(MODEL),--model $(MODEL) --synthetic-judge)

## Performance ratios, measured in one run (not tests): see tests/bench/run_bench.py.
## flux_bench runs the real Flux on the test control plane (push → Job, done → Kustomization Ready);
## leaderboard_resource_bench the real operator keeping a NejumiLeaderboard current (170 evaluations);
## gpu_bench GPU-held vs serving seconds of a served stub: one pod vs the stages vs the same model again;
## group_bench a 2-node LeaderWorkerSet group (real Kueue + LWS): admission → server ready, generation's
## end → group released → deleted, requests resent after a worker loss.
bench: setup browser versitygw-bin k8s-bin flux-bin kueue-bin lws-bin
	$(BIN)/python -m tests.bench.run_bench
	$(BIN)/python -m tests.bench.leaderboard_bench
	$(BIN)/python -m tests.bench.store_bench
	$(BIN)/python -m tests.bench.flux_bench
	$(BIN)/python -m tests.bench.gpu_bench
	$(BIN)/python -m tests.bench.group_bench
	$(BIN)/python -m tests.bench.leaderboard_resource_bench

## The CRDs (NejumiEvaluation, NejumiLeaderboard), generated from the API models (crd-check: CI
## fails on drift). The chart ships byte-identical copies in charts/nejumi-operator/crds/.
CRD_FILES := crds/nejumi.wandb.ai_nejumievaluations.yaml crds/nejumi.wandb.ai_nejumileaderboards.yaml
crd: setup
	$(BIN)/python -m nejumi_eval.api.v1alpha1.crd
	cp $(CRD_FILES) charts/nejumi-operator/crds/
crd-check: setup
	$(BIN)/python -m nejumi_eval.api.v1alpha1.crd --check
	@for f in $(CRD_FILES); do cmp -s $$f charts/nejumi-operator/$$f || { echo "charts/nejumi-operator/$$f differs from $$f: run \`make crd\`" >&2; exit 1; }; done

## The Argo CD health check's testdata (charts/nejumi-operator/argocd/…/testdata), written by the
## operator's reducer; tests/unit/charts/test_argocd_health.py fails when it is stale.
argocd-testdata: setup
	$(BIN)/python -m tests.support.argocd_testdata

## Helm for the chart tests, built from source with Go (no-op when present; cold ~2 min on 2 cores).
## The -X flags are helm's own release flags: its version, and the Kubernetes minor version of its
## client-go (read from helm's go.mod) as the default for `helm template`/`helm lint` capabilities.
HELM_VERSION := v3.22.0
HELM_BIN_DIR := .cache/helm-bin/$(HELM_VERSION)
# tests/unit/charts/test_chart.py and tests/integration/test_chart.py find helm through this.
export NEJUMI_HELM := $(abspath $(HELM_BIN_DIR))/helm
.PHONY: helm-bin
helm-bin: $(HELM_BIN_DIR)/helm

$(HELM_BIN_DIR)/helm:
	@echo "building helm $(HELM_VERSION) into $(HELM_BIN_DIR) (cold: ~2 min)"
	rm -rf $(HELM_BIN_DIR).tmp && mkdir -p $(HELM_BIN_DIR).tmp
	gomod=$$(GOTOOLCHAIN=local $(GO) mod download -json helm.sh/helm/v3@$(HELM_VERSION) \
	    | sed -n 's/.*"GoMod": "\([^"]*\)".*/\1/p') && \
	  minor=$$(awk '$$1 == "k8s.io/client-go" {split($$2, v, "."); print v[2]; exit}' "$$gomod") && \
	  test -n "$$minor" && \
	  GOBIN=$(abspath $(HELM_BIN_DIR)).tmp GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) install -trimpath -ldflags "-s -w \
	    -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$$minor \
	    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$$minor" \
	    helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	$(HELM_BIN_DIR).tmp/helm version --short | grep -qx '$(HELM_VERSION)'
	rm -rf $(HELM_BIN_DIR) && mv $(HELM_BIN_DIR).tmp $(HELM_BIN_DIR)

## Helm 4 for tests/integration/test_helm4_wait.py, built from source with Go (no-op when present).
## Cold ~3 min on 2 cores, module download included. Its `--wait` (the `watcher` strategy) reads
## health with kstatus (Flux's fork of cli-utils), so `helm install --wait` over a chart of
## evaluations returns when they are Current and fails when one is Failed. Only the version is an -X
## flag: Helm 4 reads its client-go version (the default capabilities) from the binary's build info.
HELM4_VERSION := v4.3.2
HELM4_BIN_DIR := .cache/helm4-bin/$(HELM4_VERSION)
# tests/support/helm.py finds the binary through this (and falls back to the same folder itself).
export NEJUMI_HELM4 := $(abspath $(HELM4_BIN_DIR))/helm
.PHONY: helm4-bin
helm4-bin: $(HELM4_BIN_DIR)/helm

$(HELM4_BIN_DIR)/helm:
	@echo "building helm $(HELM4_VERSION) into $(HELM4_BIN_DIR) (cold: ~3 min)"
	rm -rf $(HELM4_BIN_DIR).tmp && mkdir -p $(HELM4_BIN_DIR).tmp
	GOBIN=$(abspath $(HELM4_BIN_DIR)).tmp GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) install -trimpath \
	  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM4_VERSION)" \
	  helm.sh/helm/v4/cmd/helm@$(HELM4_VERSION)
	$(HELM4_BIN_DIR).tmp/helm version --short | grep -qx '$(HELM4_VERSION)'
	rm -rf $(HELM4_BIN_DIR) && mv $(HELM4_BIN_DIR).tmp $(HELM4_BIN_DIR)

## Kueue for tests/integration/test_kueue.py, built from source with Go (no-op when present; cold
## ~3 min on 2 cores, plus module download). tests/cluster/kueue.py runs it against the test
## control plane and installs its CRDs, RBAC and webhooks from the same module's config/.
KUEUE_VERSION := v0.17.0
KUEUE_BIN_DIR := .cache/kueue-bin/$(KUEUE_VERSION)
# tests/cluster/kueue.py finds the binary through this (and falls back to the same folder itself).
export NEJUMI_KUEUE := $(abspath $(KUEUE_BIN_DIR))/kueue
.PHONY: kueue-bin
kueue-bin: $(KUEUE_BIN_DIR)/kueue

$(KUEUE_BIN_DIR)/kueue:
	@echo "building kueue $(KUEUE_VERSION) into $(KUEUE_BIN_DIR) (cold: ~3 min)"
	rm -rf $(KUEUE_BIN_DIR).tmp && mkdir -p $(KUEUE_BIN_DIR).tmp
	GOBIN=$(abspath $(KUEUE_BIN_DIR)).tmp GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) install -trimpath \
	  -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$(KUEUE_VERSION)" \
	  sigs.k8s.io/kueue/cmd/kueue@$(KUEUE_VERSION)
	$(GO) version -m $(KUEUE_BIN_DIR).tmp/kueue \
	  | awk '$$1 == "mod" && $$2 == "sigs.k8s.io/kueue" && $$3 == "$(KUEUE_VERSION)" {ok = 1} END {exit !ok}'
	rm -rf $(KUEUE_BIN_DIR) && mv $(KUEUE_BIN_DIR).tmp $(KUEUE_BIN_DIR)

## LeaderWorkerSet (LWS) for tests/integration/test_lws.py, built from source with Go (no-op when
## present; cold ~3 min on 2 cores, plus module download). `go install sigs.k8s.io/lws/cmd@version`
## fails here (it asks the module proxy for lws's version list, which is refused), so the tool of
## the wrapper module tests/lws-bin/ is built: the same module zip, the dependency versions of lws's
## own go.mod; the version is tests/lws-bin/go.mod's. tests/cluster/lws.py runs it against the test
## control plane and installs its CRDs, RBAC and webhooks from the same module's config/.
LWS_MOD := tests/lws-bin
LWS_VERSION := $(shell awk '$$1 == "sigs.k8s.io/lws" && $$2 ~ /^v/ {print $$2; exit}' $(LWS_MOD)/go.mod)
LWS_BIN_DIR := .cache/lws-bin/$(LWS_VERSION)
# tests/cluster/lws.py finds the binary through this (and falls back to the same folder itself).
export NEJUMI_LWS := $(abspath $(LWS_BIN_DIR))/lws
.PHONY: lws-bin
lws-bin: $(LWS_BIN_DIR)/lws

$(LWS_BIN_DIR)/lws: $(LWS_MOD)/go.mod $(LWS_MOD)/go.sum
	@echo "building LeaderWorkerSet $(LWS_VERSION) into $(LWS_BIN_DIR) (cold: ~3 min)"
	rm -rf $(LWS_BIN_DIR).tmp && mkdir -p $(LWS_BIN_DIR).tmp
	cd $(LWS_MOD) && GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
	  -ldflags "-s -w -X sigs.k8s.io/lws/pkg/version.GitVersion=$(LWS_VERSION)" \
	  -o $(abspath $(LWS_BIN_DIR)).tmp/lws sigs.k8s.io/lws/cmd
	$(GO) version -m $(LWS_BIN_DIR).tmp/lws \
	  | awk '$$1 == "mod" && $$2 == "sigs.k8s.io/lws" && $$3 == "$(LWS_VERSION)" {ok = 1} END {exit !ok}'
	rm -rf $(LWS_BIN_DIR) && mv $(LWS_BIN_DIR).tmp $(LWS_BIN_DIR)

## Flux (source-controller and kustomize-controller) for tests/integration/test_flux.py, built from
## their Go modules (no-op when present; cold ~10 min on 2 cores, plus module download).
## tests/cluster/flux.py runs both against the test control plane and installs their CRDs and RBAC
## from the same modules' config/. Each go.mod replaces its api module with ./api, a folder its
## module zip lacks (api/ is a module of its own), so `go install …@version` refuses them: the build
## copies each module's tree, drops that replace and requires the api module at the controller's
## version (what the release's own go.sum pins). The pair is Flux v2.9.3's (fluxcd/flux2:
## manifests/bases/*/kustomization.yaml at that tag); v2.9.4's source-controller v1.9.4 needs
## fluxcd/pkg/artifact v0.18.2, which the module proxy does not serve, and v2.10 (v1.10.x) Go 1.27.
FLUX_VERSION := v2.9.3
FLUX_SOURCE_VERSION := v1.9.3
FLUX_KUSTOMIZE_VERSION := v1.9.4
FLUX_BIN_DIR := .cache/flux-bin/$(FLUX_VERSION)
# tests/cluster/flux.py finds the binaries through this (and falls back to the same folder itself).
export NEJUMI_FLUX_BIN := $(abspath $(FLUX_BIN_DIR))
.PHONY: flux-bin
flux-bin: $(FLUX_BIN_DIR)/.complete

$(FLUX_BIN_DIR)/.complete:
	@echo "building Flux $(FLUX_VERSION) controllers into $(FLUX_BIN_DIR) (cold: ~10 min)"
	rm -rf $(FLUX_BIN_DIR).tmp && mkdir -p $(FLUX_BIN_DIR).tmp
	set -e; for cv in source-controller@$(FLUX_SOURCE_VERSION) kustomize-controller@$(FLUX_KUSTOMIZE_VERSION); do \
	  c=$${cv%@*}; v=$${cv#*@}; \
	  dir=$$(GOTOOLCHAIN=local $(GO) mod download -json github.com/fluxcd/$$cv \
	      | sed -n 's/.*"Dir": "\([^"]*\)".*/\1/p') && test -n "$$dir"; \
	  cp -r "$$dir" $(FLUX_BIN_DIR).tmp/src && chmod -R u+w $(FLUX_BIN_DIR).tmp/src; \
	  ( cd $(FLUX_BIN_DIR).tmp/src && \
	    GOTOOLCHAIN=local $(GO) mod edit -dropreplace=github.com/fluxcd/$$c/api -require=github.com/fluxcd/$$c/api@$$v && \
	    GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o ../$$c . ); \
	  rm -rf $(FLUX_BIN_DIR).tmp/src; \
	  $(GO) version -m $(FLUX_BIN_DIR).tmp/$$c \
	    | awk -v m=github.com/fluxcd/$$c/api -v v=$$v '$$1 == "dep" && $$2 == m && $$3 == v {ok = 1} END {exit !ok}'; \
	done
	touch $(FLUX_BIN_DIR).tmp/.complete
	rm -rf $(FLUX_BIN_DIR) && mv $(FLUX_BIN_DIR).tmp $(FLUX_BIN_DIR)

## versitygw, the real S3 server (over a local folder) of tests/support/s3.py, built from source
## with Go (no-op when present; cold ~1 min on 2 cores, plus module download).
VERSITYGW_VERSION := v1.8.0
VERSITYGW_BIN_DIR := .cache/versitygw-bin/$(VERSITYGW_VERSION)
# tests/support/s3.py finds the binary through this (and falls back to the same folder itself).
export NEJUMI_VERSITYGW := $(abspath $(VERSITYGW_BIN_DIR))/versitygw
.PHONY: versitygw-bin
versitygw-bin: $(VERSITYGW_BIN_DIR)/versitygw

$(VERSITYGW_BIN_DIR)/versitygw:
	@echo "building versitygw $(VERSITYGW_VERSION) into $(VERSITYGW_BIN_DIR) (cold: ~1 min)"
	rm -rf $(VERSITYGW_BIN_DIR).tmp && mkdir -p $(VERSITYGW_BIN_DIR).tmp
	GOBIN=$(abspath $(VERSITYGW_BIN_DIR)).tmp GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) install -trimpath \
	  -ldflags "-s -w" github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	$(GO) version -m $(VERSITYGW_BIN_DIR).tmp/versitygw \
	  | awk '$$1 == "mod" && $$2 == "github.com/versity/versitygw" && $$3 == "$(VERSITYGW_VERSION)" {ok = 1} END {exit !ok}'
	rm -rf $(VERSITYGW_BIN_DIR) && mv $(VERSITYGW_BIN_DIR).tmp $(VERSITYGW_BIN_DIR)

## kstatus for tests/support/kstatus.py, built with Go from tests/kstatus/ (a small command).
## It is sigs.k8s.io/cli-utils/pkg/kstatus, the library Flux and Helm 4's --wait read health with,
## so the tests ask the real library what it makes of an evaluation, not a copy of its rules. No-op
## when present (cold ~30 s on 2 cores, plus module download); the version is tests/kstatus/go.mod's,
## and an edit of the command rebuilds it.
KSTATUS_MOD := tests/kstatus
KSTATUS_VERSION := $(shell awk '$$1 == "sigs.k8s.io/cli-utils" && $$2 ~ /^v/ {print $$2; exit}' $(KSTATUS_MOD)/go.mod)
KSTATUS_BIN_DIR := .cache/kstatus-bin/$(KSTATUS_VERSION)
# tests/support/kstatus.py finds the binary through this (and falls back to the same folder itself).
export NEJUMI_KSTATUS := $(abspath $(KSTATUS_BIN_DIR))/kstatus
.PHONY: kstatus-bin
kstatus-bin: $(KSTATUS_BIN_DIR)/kstatus

$(KSTATUS_BIN_DIR)/kstatus: $(KSTATUS_MOD)/main.go $(KSTATUS_MOD)/go.mod $(KSTATUS_MOD)/go.sum
	@echo "building kstatus (cli-utils $(KSTATUS_VERSION)) into $(KSTATUS_BIN_DIR) (cold: ~30 s)"
	rm -rf $(KSTATUS_BIN_DIR).tmp && mkdir -p $(KSTATUS_BIN_DIR).tmp
	cd $(KSTATUS_MOD) && GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false \
	  -ldflags "-s -w" -o $(abspath $(KSTATUS_BIN_DIR)).tmp/kstatus .
	$(GO) version -m $(KSTATUS_BIN_DIR).tmp/kstatus \
	  | awk '$$1 == "dep" && $$2 == "sigs.k8s.io/cli-utils" && $$3 == "$(KSTATUS_VERSION)" {ok = 1} END {exit !ok}'
	rm -rf $(KSTATUS_BIN_DIR) && mv $(KSTATUS_BIN_DIR).tmp $(KSTATUS_BIN_DIR)

## Argo CD's own code on the chart's Argo CD health check (opt-in: not part of `test`): builds Argo
## CD's CLI from its Go module (cold ~10 min on 2 cores, plus module download) and runs every case of
## health_test.yaml through `argocd admin settings resource-overrides health` with the README's
## argocd-cm. Argo CD's go.mod replaces its gitops-engine with a folder its module zip lacks, so
## `go install …@version` refuses it: the build takes the module's tree and gitops-engine from the
## module proxy (the health Lua runs in argo-cd's own util/lua either way). v3.6 needs Go 1.27.
ARGOCD_VERSION := v3.5.8
ARGOCD_GITOPS_ENGINE := v0.0.0-20260914071520-c9c369efcc5b
ARGOCD_BIN_DIR := .cache/argocd-bin/$(ARGOCD_VERSION)
.PHONY: argocd-bin argocd-health
argocd-bin: $(ARGOCD_BIN_DIR)/argocd

$(ARGOCD_BIN_DIR)/argocd:
	@echo "building argocd $(ARGOCD_VERSION) into $(ARGOCD_BIN_DIR) (cold: ~10 min)"
	rm -rf $(ARGOCD_BIN_DIR).tmp && mkdir -p $(ARGOCD_BIN_DIR).tmp
	dir=$$(GOTOOLCHAIN=local $(GO) mod download -json github.com/argoproj/argo-cd/v3@$(ARGOCD_VERSION) \
	    | sed -n 's/.*"Dir": "\([^"]*\)".*/\1/p') && test -n "$$dir" && \
	  cp -r "$$dir" $(ARGOCD_BIN_DIR).tmp/src && chmod -R u+w $(ARGOCD_BIN_DIR).tmp/src && \
	  cd $(ARGOCD_BIN_DIR).tmp/src && \
	  GOTOOLCHAIN=local $(GO) mod edit -dropreplace=github.com/argoproj/argo-cd/gitops-engine \
	    -require=github.com/argoproj/argo-cd/gitops-engine@$(ARGOCD_GITOPS_ENGINE) && \
	  GOTOOLCHAIN=local GOFLAGS=-mod=mod $(GO) build -o ../argocd ./cmd
	rm -rf $(ARGOCD_BIN_DIR).tmp/src
	$(ARGOCD_BIN_DIR).tmp/argocd admin settings resource-overrides health --help >/dev/null
	rm -rf $(ARGOCD_BIN_DIR) && mv $(ARGOCD_BIN_DIR).tmp $(ARGOCD_BIN_DIR)

argocd-health: setup argocd-bin
	$(BIN)/python -m tests.support.argocd_health --argocd $(ARGOCD_BIN_DIR)/argocd

## Chromium for tests/e2e/test_leaderboard_html.py (the HTML leaderboard in a real headless
## browser) and Japanese fonts, from Debian (root; `apt-get update` first). No-op when installed.
BROWSER_PKGS := chromium chromium-driver fonts-noto-cjk
.PHONY: browser
browser:
	@dpkg -s $(BROWSER_PKGS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS); }

## `make setup`: .venv with the project and all of EXTRAS; `make demo` needs only DEMO_EXTRAS.
## Installed by uv (from PyPI, into the venv): parallel downloads, and a wheel cache (~/.cache/uv)
## that works here, where pip's stays empty (the registry sends no caching headers, so every pip
## install downloaded every wheel again). Bytecode is compiled at install, as pip does.
## SKIP_DEPS are left out of the resolution: triton, torch's GPU kernel compiler (~1 GB), used only
## by torch.compile on a GPU; CPU serving and the tests never import it. torch's NVIDIA libraries
## (~3 GB) stay: PyPI has no CPU-only Linux x86_64 torch, and libtorch links against them
## (`import torch` fails without them). `make setup SKIP_DEPS=` installs triton as well.
DEMO_EXTRAS ?= eval,serve
SKIP_DEPS ?= triton
define venv_install
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install -q "uv>=0.13,<1"
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode \
	  --excludes <(printf '%s\n' $(SKIP_DEPS)) -e ".[$(1)]"
endef

setup: $(VENV)/.installed
# A full setup covers the demo's extras: once there is one, `make demo` keeps that one up to date.
setup-demo: $(if $(wildcard $(VENV)/.installed),$(VENV)/.installed,$(VENV)/.installed-demo)

$(VENV)/.installed: pyproject.toml
	$(call venv_install,$(EXTRAS))
	touch $@

$(VENV)/.installed-demo: pyproject.toml
	$(call venv_install,$(DEMO_EXTRAS))
	touch $@

## The README's test command: everything, including the real control plane.
test: setup k8s-bin helm-bin kueue-bin lws-bin versitygw-bin kstatus-bin helm4-bin flux-bin browser
	$(BIN)/pytest -q

## Only the fast unit tests (no cluster, no model server).
unit: setup helm-bin kstatus-bin
	$(BIN)/pytest -q tests/unit

## ruff (lint + format) and mypy over the product (`[tool.mypy]` in pyproject.toml); CI runs it.
check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Fix what ruff can (imports, format).
fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Remove the venv and every cache (built binaries included: the next test run builds them again).
clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

# ---- control plane (issue 3) ----------------------------------------------
# (targets k8s-bin, cluster-up, cluster-down are defined below)
# The wrapper Go module tests/k8s-bin pins k8s.io/kubernetes and etcd; its go.sum hash keys the
# binary cache, so a fresh machine builds once (~10 min on 2 cores) and later runs reuse it.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
K8S_MOD := tests/k8s-bin
K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" && $$2 ~ /^v/ {print $$2; exit}' $(K8S_MOD)/go.mod)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
K8S_BIN_KEY := $(shell sha256sum $(K8S_MOD)/go.sum | cut -c1-16)
K8S_BIN_DIR := .cache/k8s-bin/$(K8S_BIN_KEY)
K8S_LDFLAGS := -s -w \
  -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
  -X k8s.io/component-base/version.gitTreeState=clean
# tests/cluster finds the binaries through this (and falls back to the same hash itself).
export NEJUMI_K8S_BIN := $(abspath $(K8S_BIN_DIR))

.PHONY: k8s-bin cluster-up cluster-down

## Build kube-apiserver, kube-controller-manager, kube-scheduler and etcd (no-op when cached).
k8s-bin: $(K8S_BIN_DIR)/.complete

# No file prerequisites on purpose: the directory name is the go.sum hash, so existence is enough.
# Build into a temporary folder and rename it, so an interrupted build never looks complete.
$(K8S_BIN_DIR)/.complete:
	@echo "building control-plane binaries $(K8S_VERSION) into $(K8S_BIN_DIR) (cold: ~10 min)"
	rm -rf $(K8S_BIN_DIR).tmp && mkdir -p $(K8S_BIN_DIR).tmp
	cd $(K8S_MOD) && GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(K8S_LDFLAGS)" \
	  -o $(abspath $(K8S_BIN_DIR)).tmp/ k8s.io/kubernetes/cmd/kube-apiserver \
	  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
	cd $(K8S_MOD) && GOTOOLCHAIN=local CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" \
	  -o $(abspath $(K8S_BIN_DIR)).tmp/etcd go.etcd.io/etcd/server/v3
	$(K8S_BIN_DIR).tmp/kube-apiserver --version | grep -qx "Kubernetes $(K8S_VERSION)"
	touch $(K8S_BIN_DIR).tmp/.complete
	rm -rf $(K8S_BIN_DIR) && mv $(K8S_BIN_DIR).tmp $(K8S_BIN_DIR)

## Start a control plane + test node agent for poking with kubectl (state in .cache/cluster/).
cluster-up: setup k8s-bin
	$(BIN)/python -m tests.cluster up

## Stop what cluster-up started.
cluster-down: setup
	$(BIN)/python -m tests.cluster down

