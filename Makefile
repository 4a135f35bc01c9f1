# The two commands of README.md: `make up` starts the system, `make test` tests it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installed when setup.cfg changes (or the venv is new).
STAMP := $(VENV)/.installed
# checkov and kubernetes-validate, for make deploy-check: a venv of their own, so their
# dependencies never meet the project's.
CHECKERS := .venv-deploy
CHECKERS_STAMP := $(CHECKERS)/.installed

.PHONY: up down ps logs status test install migrate bench bank chaos chaos-cluster test-cluster help compose-test \
	deploy-generate deploy-check config-docs

help:
	@echo "make up      start every service (creates .venv on first use); prints the gateway URL"
	@echo "make down    stop everything make up started"
	@echo "make ps      state of every process;  make logs: their last lines;  make status: /ready"
	@echo "make test    the whole test suite (starts what it needs, stops it after)"
	@echo "make test-cluster   the system test of the system run as a cluster (replicas, RabbitMQ cluster, PostgreSQL failover)"
	@echo "make bench   Locust benchmark with baselines; report in reports/bench-<time>/ (BENCH_ARGS=--help)"
	@echo "make bank    the bank workload against the running system, then its books checked (BANK_ARGS=--help)"
	@echo "make chaos   every chaos experiment on a sandbox of the system; EXP=name for one (EXP=list)"
	@echo "make chaos-cluster   the cluster's experiments on a sandbox run as a cluster (replicas, RabbitMQ, PostgreSQL)"
	@echo "make compose-test   the compose stack for real: up, bank workload, a container killed, down"
	@echo "make deploy-check   compose, Kubernetes and monitoring files: up to date, rendered, validated, promtool, checkov"
	@echo "make config-docs   rewrite docs/configuration.md from the settings models (after adding a setting)"
	@echo "make deploy-generate   rewrite them from shared/catalog.py (after adding or dropping a service)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet --upgrade 'pip>=24'
	$(BIN)/pip install --quiet -e '.[local,test,load]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/paysys up

down:
	@if [ -x $(BIN)/paysys ]; then $(BIN)/paysys down; else echo "Nothing to stop (no $(VENV))"; fi

ps: $(STAMP)
	@$(BIN)/paysys ps

logs: $(STAMP)
	@$(BIN)/paysys logs

status: $(STAMP)
	@$(BIN)/paysys status

migrate: $(STAMP)
	$(BIN)/paysys migrate

# The unit and system suites side by side (tests/run-suite); PYTEST_ARGS: one pytest run.
test: $(STAMP)
ifeq ($(strip $(PYTEST_ARGS)),)
	PYTHON=$(BIN)/python tests/run-suite
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

# The system run as a cluster (about four minutes): tests/system/test_cluster.py.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -m cluster tests/system/test_cluster.py

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

bank: $(STAMP)
	$(BIN)/python -m loadtests.bank --reconcile $(BANK_ARGS)

# EXP=name runs one experiment, EXP=list lists them; CHAOS_ARGS passes more (--help).
chaos: $(STAMP)
	$(BIN)/python -m chaos $(if $(filter list,$(EXP)),--list,$(if $(EXP),--exp $(EXP))) $(CHAOS_ARGS)

# The sandbox as a cluster: 2 replicas, 3 RabbitMQ nodes, a pg_auto_failover pair.
chaos-cluster: $(STAMP)
	$(BIN)/python -m chaos --cluster $(CHAOS_ARGS)

# Containers: deploy/docker/compose-test.sh --help says what it does and what it takes.
compose-test: $(STAMP)
	PYTHON=$(BIN)/python deploy/docker/compose-test.sh

# Rewrites docs/configuration.md from the settings models and config.yml.
config-docs: $(STAMP)
	$(BIN)/paysys config --docs > docs/configuration.md

# Rewrites the compose files, the Kubernetes Deployments and deploy/monitoring's scrape config
# and dashboard from shared/catalog.py.
deploy-generate: $(STAMP)
	$(BIN)/python -m deploy.generate

$(CHECKERS_STAMP): deploy/check-requirements.txt
	$(PYTHON) -m venv $(CHECKERS)
	$(CHECKERS)/bin/pip install --quiet --upgrade 'pip>=24'
	$(CHECKERS)/bin/pip install --quiet -r deploy/check-requirements.txt
	touch $(CHECKERS_STAMP)

# deploy/check.sh --help says what it checks.
deploy-check: $(STAMP) $(CHECKERS_STAMP)
	PYTHON=$(BIN)/python CHECKERS=$(CHECKERS)/bin deploy/check.sh
