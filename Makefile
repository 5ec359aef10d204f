# Entry points. `make setup` builds .venv; every other target uses it.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= eval,serve,operator,dev
# The raw-data mirror beside the checkout (offline machines, CI).
export NEJUMI_DATA_MIRROR ?= $(abspath ../shared/datasets/raw)

.PHONY: setup test unit lint fmt demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

## The README's test command: everything, including the real control plane.
test: setup k8s-bin
	$(BIN)/pytest -q

## Only the fast unit tests (no cluster, no model server).
unit: setup
	$(BIN)/pytest -q tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

# ---- control plane (issue 3) ----------------------------------------------
# (targets k8s-bin, cluster-up, cluster-down are defined below)

