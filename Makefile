# airflow-ssh-heartbeat: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv system-deps lint test test-fast wheel screenshots demo demo-sites up bench clean

# System packages the tests and the demo run for real: OpenSSH sshd, a PostgreSQL server, Redis (the
# Celery broker of the sites tests and demo) and iproute2 (network namespaces).
system-deps:
	@need=""; \
	[ -x /usr/sbin/sshd ] || need="$$need openssh-server"; \
	command -v ssh-keygen >/dev/null || need="$$need openssh-client"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v docker-compose >/dev/null || need="$$need docker-compose"; \
	[ -x /usr/bin/redis-server ] || need="$$need redis-server"; \
	command -v ip >/dev/null || need="$$need iproute2"; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing system packages:$$need (install them, or run as root)"; exit 1; fi; \
	  echo "installing system packages:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; \
	fi

$(STAMP): requirements.txt pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	[ -x $(BIN)/uv ] || { $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null; \
	  $(BIN)/python -m pip install -q --disable-pip-version-check uv; }
	$(BIN)/uv pip install -q --compile-bytecode -p $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	@# setuptools leaves the build's metadata beside the package; with plugins/ on sys.path (an Airflow
	@# plugins folder) it would be a second copy of the distribution and its plugin entry point.
	rm -rf plugins/*.egg-info
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "unit or dag_validation" $(PYTEST_ARGS)

# The installable package: dist/airflow_ssh_heartbeat-<version>-py3-none-any.whl and its sdist (the
# wheel built from the sdist, as a package index's users get it). README: "Add it to your Airflow".
wheel: venv
	rm -rf dist
	$(BIN)/uv build --out-dir dist .
	rm -rf build plugins/*.egg-info

# The README's screenshots, taken by the browser test (which otherwise writes to .state/test-screenshots).
SCREENSHOTS_DIR ?= docs/screenshots
screenshots: system-deps venv
	SCREENSHOTS_DIR="$(abspath $(SCREENSHOTS_DIR))" $(BIN)/python -m pytest tests/ui -k real_browser $(PYTEST_ARGS)

demo: system-deps venv
	$(BIN)/python -m heartbeat_lab.demo $(DEMO_ARGS)

# Two sites in two network namespaces on CeleryExecutor (root only); Ctrl-C stops it.
demo-sites: system-deps venv
	$(BIN)/python -m heartbeat_lab.demo_sites $(DEMO_ARGS)

up: system-deps venv
	$(BIN)/python -m heartbeat_lab.demo --no-fleet $(DEMO_ARGS)

# Benchmarks (not part of make test): the fleet through the real scheduler, then the store alone.
bench: system-deps venv
	$(BIN)/python -m bench.fleet_bench
	$(BIN)/python -m bench.bench_store

clean:
	rm -rf .state dist build
