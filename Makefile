# Vigie — the commands a newcomer and CI need. Everything installs itself on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# The stamp is rebuilt whenever the pinned requirements change.
STAMP := $(VENV)/.installed

.PHONY: help venv bytecode axe demo demo-seed test test-postgres lint typecheck check lock bench clean

help:
	@echo "make demo       set up and run the demo clinic on SQLite (http://127.0.0.1:8000)"
	@echo "make test       set up and run the whole test suite (SQLite)"
	@echo "make lint       ruff + mypy"
	@echo "make bench      benchmarks"
	@echo "make lock       recompile the pinned, hashed requirements from pyproject.toml"

$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	# --require-hashes: every wheel must match the hash recorded when we locked.
	# --compile-bytecode: uv (unlike pip) writes no .pyc, and where PYTHONDONTWRITEBYTECODE is
	# set (this CI) every process then compiled Django from source: 2.3 s per `vigie` start.
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The demo: explicit demo mode, its own VIGIE_HOME under var/ and its keys apart in var-keys/
# (the production layout: serving var/ gives away no key), seeded once, served by granian.
demo: $(STAMP)
	VIGIE_MODE=demo VIGIE_HOME=$(CURDIR)/var VIGIE_KEYS_DIR=$(CURDIR)/var-keys $(BIN)/vigie demo

# The demo with Pro Santé Connect, through the tests' own OpenID provider on localhost:8001
# (from a checkout only: tests/psc/provider.py is test code, never installed). On the login
# page (http://127.0.0.1:8000), "Se connecter avec Pro Santé Connect", then type a doctor's
# "PSC card" number from the logins table where the provider asks for the card.
PSC_DEMO := http://localhost:8001/auth/realms/esante-wallet/.well-known/openid-configuration
demo-psc: $(STAMP)
	$(BIN)/python -m tests.psc.provider --port 8001 --host-name localhost \
		--client-id vigie-demo --client-secret demo-only-psc-secret \
		--redirect-uri http://127.0.0.1:8000/accounts/psc/callback/ > /dev/null & \
	trap "kill $$!" EXIT; \
	VIGIE_MODE=demo VIGIE_HOME=$(CURDIR)/var VIGIE_KEYS_DIR=$(CURDIR)/var-keys \
		VIGIE_PSC_DISCOVERY_URL=$(PSC_DEMO) VIGIE_PSC_CLIENT_ID=vigie-demo \
		VIGIE_PSC_CLIENT_SECRET=demo-only-psc-secret $(BIN)/vigie demo

demo-seed: $(STAMP)
	VIGIE_MODE=demo VIGIE_HOME=$(CURDIR)/var VIGIE_KEYS_DIR=$(CURDIR)/var-keys $(BIN)/vigie demo --no-serve

# Our own modules' bytecode too (the whole-system tests start hundreds of `vigie` processes).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 vigie tests bench build_hooks.py > /dev/null

# axe-core for the browser tests' accessibility checks, from the npm registry, as locked.
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --ignore-scripts --silent
	touch $(AXE)

axe: $(AXE)

test: bytecode $(AXE)
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

# Same suite against the real PostgreSQL (pytest-django creates and drops test_vigie).
# Tests marked sqlite_only run the same whatever the database (bare environments, the guard
# drill's network namespaces, the wheel): the SQLite pass runs them and this one leaves them out.
test-postgres: bytecode $(AXE)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/vigie} $(BIN)/pytest -p no:cacheprovider -m "not sqlite_only" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

check: lint test

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -q -o requirements/base.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -q -o requirements/dev.txt

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
