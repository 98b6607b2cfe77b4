# tagger's entry points. Only Python 3.11 and make are needed: the first target run creates
# .venv and installs requirements-dev.lock into it (again whenever a requirements file
# changes). The .lock files pin every package, transitive ones included (`make lock`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Written once requirements-dev.lock is installed; older than a requirements file = reinstall.
STAMP := $(VENV)/.requirements-installed
BOOTSTRAP_PYTHON ?= $(shell command -v python3.11 || command -v python3)

PORT ?= 8000
FLOWER_PORT ?= 5555
PYTEST_ARGS ?=
BENCH_ARGS ?=
export PORT FLOWER_PORT

.PHONY: help install lock run test test-slow bench migrate superuser lint format clean

help: ## List the targets
	@echo "Usage: make TARGET [VAR=value ...]"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "  make run PORT=8001 FLOWER_PORT=5556       a second stack beside the first"
	@echo "  make test PYTEST_ARGS='-k engine -x'      pass arguments to pytest"

$(PY):
	@test -n "$(BOOTSTRAP_PYTHON)" || { echo "Python 3.11 not found (python3.11 or python3)" >&2; exit 1; }
	@$(BOOTSTRAP_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "$(BOOTSTRAP_PYTHON) is older than Python 3.11" >&2; exit 1; }
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)

REQUIREMENTS := requirements.txt requirements-local.txt requirements-dev.txt
LOCKS := requirements.lock requirements-dev.lock
PIP_COMPILE = $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links

$(STAMP): $(REQUIREMENTS) $(LOCKS) | $(PY)
	@echo "Installing requirements-dev.lock into $(VENV) (a minute or two the first time)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	@touch $@

install: $(STAMP) ## Create .venv and install the requirements (the other targets do it too)

run: $(STAMP) ## Run the whole stack: API, worker, beat, Flower (+ embedded Redis); Ctrl-C stops it
	@scripts/run-stack

test: $(STAMP) ## Run the test suite, but for the slow fault tests (PYTEST_ARGS="..." for pytest)
	@mkdir -p var
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP) ## Run only the slow fault tests (minute-long broker outages, failover)
	@mkdir -p var
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lock: $(STAMP) ## Move every pin in requirements*.lock to the newest release allowed; then run the fault tests
	$(PIP_COMPILE) --upgrade --output-file=requirements.lock requirements.txt
	$(PIP_COMPILE) --upgrade --output-file=requirements-dev.lock requirements-dev.txt
	@echo "Pins moved (git diff requirements*.lock). Now: make install && make test && make test-slow"

bench: $(STAMP) ## Benchmarks: engine vs rio-cogeo, then the whole stack; see docs/performance.md
	@mkdir -p var
	$(PY) bench/run.py convert $(BENCH_ARGS)
	$(PY) bench/run.py stack
	$(PY) bench/run.py plot

migrate: $(STAMP) ## Apply database migrations
	@mkdir -p var
	$(PY) manage.py migrate

superuser: $(STAMP) ## Create an admin user (it can then get an API token)
	@mkdir -p var
	$(PY) manage.py createsuperuser

lint: $(STAMP) ## Check the code with ruff (lint and formatting)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Fix what ruff can fix and reformat the code
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## Stop a leftover embedded Redis and remove sockets and pid files (keeps data)
	@scripts/run-stack --clean
