# Concord: `make demo` runs the main job, `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := .cache
INFRA := $(BIN)/python -m concord.infra

.PHONY: help venv demo test test-unit test-integration test-netsuite browser screenshots bench bench-reliability lint docs infra-up infra-down infra-status clean

help:
	@echo "make demo          the live closed loop: Kafka, Redis, a worker, the webhooks and the platform sandbox, until Ctrl-C"
	@echo "                   (SEED=7 CUSTOMERS=300 DRIFT_RATE=0.05 TIME_SCALE=3600 DURATION=60 to reproduce a run;"
	@echo "                   APPROVE=D01,D13: those rules' corrections wait for an operator on the board;"
	@echo "                   HISTORY=200 LOSE_RATE=0.05: customers at rest before the traffic, events lost;"
	@echo "                   RECONCILE_EVERY=60: the worker reconciles every platform every 60 s;"
	@echo "                   DEAL_RATE=0.2: share of new customers whose won deal the saga provisions, docs/saga.md)"
	@echo "make test          create .venv, bring Kafka and Redis up, run all tests, leave things as found"
	@echo "make test-netsuite the NetSuite SDF project's scripts (netsuite/) under Node's test runner"
	@echo "make bench         throughput benchmarks on the real broker (results in bench/results/)"
	@echo "make bench-reliability   seeded closed loops overloaded and under faults, scored against the"
	@echo "                   sandbox's ground truth (false findings, platform writes; docs/reliability.md)"
	@echo "make lint          ruff and mypy"
	@echo "make docs          regenerate docs/configuration.md and docs/metrics.md from the code"
	@echo "make screenshots   refresh the console's screenshots in docs/images/ from its browser test"
	@echo "make infra-up | infra-down | infra-status   local Kafka (KRaft) and Redis without Docker"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Concord needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# make demo SEED=7 CUSTOMERS=300 DRIFT_RATE=0.05 TIME_SCALE=3600 DURATION=60 reproduces a run;
# HISTORY=200 LOSE_RATE=0.05 give the sandbox customers at rest and lost events, RECONCILE_EVERY=60 the
# worker's reconciliation that finds them (the backstop, docs/reconcile.md).
SEED ?= 1
CUSTOMERS ?= 50
DRIFT_RATE ?= 0.05
TIME_SCALE ?= 3600
DURATION ?= 0
HISTORY ?= 0
LOSE_RATE ?= 0
DEAL_RATE ?= 0.2
RECONCILE_EVERY ?= 0
APPROVE ?=
demo: venv
	$(BIN)/concord demo --seed $(SEED) --customers $(CUSTOMERS) \
	  --drift-rate $(DRIFT_RATE) --time-scale $(TIME_SCALE) --duration $(DURATION) \
	  --history $(HISTORY) --lose-rate $(LOSE_RATE) --deal-rate $(DEAL_RATE) --reconcile-every $(RECONCILE_EVERY) \
	  $(if $(APPROVE),--approve $(APPROVE))

# The console's browser tests drive Debian's Chromium: installed here where apt can (as root); elsewhere
# those tests are skipped, and say why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    >/dev/null 2>&1 || echo "make: Chromium not installed: the console's browser tests will be skipped"; }

# The NetSuite SDF project's scripts (netsuite/, docs/netsuite-suitescript.md) under Node's own test runner;
# Node is installed here where apt can (as root), else the target fails and says so.
test-netsuite:
	@command -v node >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs) >/dev/null 2>&1; } || \
	  { echo "make: node not found: install Node.js 18 or later (apt-get install nodejs) to test netsuite/"; exit 1; }
	node --test netsuite/tests/

# Lint first (cheap), then every test. Brings up only what is not running, stops only what it brought up.
test: lint browser test-netsuite
	@$(INFRA) up --session $(CACHE)/test-session.json
	@status=0; $(BIN)/pytest -q -p no:cacheprovider tests || status=$$?; \
	  $(INFRA) down --session $(CACHE)/test-session.json; exit $$status

# The console's screenshots in docs/console.md: taken by its browser test on the real pipeline.
screenshots: venv browser
	@$(INFRA) up --session $(CACHE)/screenshots-session.json
	@status=0; CONCORD_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/integration/test_board_browser.py \
	  -k search_box || status=$$?; $(INFRA) down --session $(CACHE)/screenshots-session.json; exit $$status

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-integration: venv browser
	@$(INFRA) up --session $(CACHE)/test-session.json
	@status=0; $(BIN)/pytest -q tests/integration || status=$$?; \
	  $(INFRA) down --session $(CACHE)/test-session.json; exit $$status

bench: venv
	@$(INFRA) up --session $(CACHE)/bench-session.json
	@status=0; $(BIN)/python -m concord.bench || status=$$?; \
	  $(INFRA) down --session $(CACHE)/bench-session.json; exit $$status

# Each scenario is a whole `concord demo` (about 5 minutes each); results in bench/results/reliability-*.json.
bench-reliability: venv
	@for scenario in overload storm gaps; do $(BIN)/python -m concord.bench.reliability $$scenario || exit 1; done

PACKAGES := core app agents tables codecs drift connectors sandbox infra bench

lint: venv
	$(BIN)/ruff check .
	@rm -rf $(CACHE)/typecheck && mkdir -p $(CACHE)/typecheck/concord
	@cp concord/__init__.py $(CACHE)/typecheck/concord/
	@for p in $(PACKAGES); do ln -s ../../../$$p $(CACHE)/typecheck/concord/$$p; done
	$(BIN)/mypy -p concord

docs: venv
	$(BIN)/concord config --markdown > docs/configuration.md
	$(BIN)/python -m concord.core.metrics > docs/metrics.md

infra-up: venv
	$(INFRA) up

infra-down: venv
	$(INFRA) down

infra-status: venv
	$(INFRA) status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
