# The operator's interface. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
# Debian's own Python, whatever else comes first on PATH: python3-venv is its
# venv module, and its build (optimised with a profile) ran the app's
# Python about a tenth faster than an unoptimised 3.11 (docs/performance.md).
PYTHON ?= /usr/bin/python3
PY := $(VENV)/bin/python
DEB_PACKAGES := python3-venv kamailio kamailio-mysql-modules kamailio-extra-modules kamailio-redis-modules mariadb-server mariadb-client redis-server sip-tester sipsak chromium chromium-driver galera-4 rsync
STAMP := $(VENV)/.installed$(subst /,-,$(PYTHON))

.PHONY: help install packages run demo up down cluster-up cluster-down cluster-soak test test-fast soak bench ping-cpu cluster-bench wrk check-cfg clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

install: packages $(STAMP) ## Install what is missing: Debian packages and the .venv

# The stack runs a Redis of its own under the state folder: Debian's
# redis-server service, when installed here, is switched off.
packages: ## Install the Debian packages that are missing
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		if [[ " $$missing " == *" redis-server "* ]] && command -v systemctl >/dev/null; then \
			systemctl disable --now redis-server >/dev/null 2>&1 || true; \
		fi; \
	fi

# Needs python3-venv only; `install` checks the other Debian packages first.
# A .venv made by another interpreter is made again.
$(STAMP): pyproject.toml
	@if [ -e $(VENV)/pyvenv.cfg ] && ! grep -qx 'home = $(patsubst %/,%,$(dir $(PYTHON)))' $(VENV)/pyvenv.cfg; then \
		echo "making $(VENV) again with $(PYTHON)"; rm -rf $(VENV); \
	fi
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

run: install ## Start MariaDB, Redis, Kamailio, gunicorn, the metrics exporter and the postback worker in the foreground (Ctrl-C stops)
	$(PY) -m app.stack run

demo: install ## `run` on its own ports and state ($RTB_VAR_DIR/demo), with a demo market and live pings and calls
	$(PY) -m app.stack.demo

up: install ## Start everything in the background; returns once all parts answer
	$(PY) -m app.stack up

down: ## Stop what `make up` started; the data stays
	@if [ -x $(PY) ]; then $(PY) -m app.stack down; fi

cluster-up: install ## Start what is not running of a cluster on loopback: 3 Galera nodes, 2 edges, 2 app nodes ($RTB_VAR_DIR/cluster)
	$(PY) -m app.stack.cluster up

cluster-down: ## Stop the cluster's parts; the data stays
	@if [ -x $(PY) ]; then $(PY) -m app.stack.cluster down; fi

check-cfg: install ## Check kamailio/kamailio.cfg with `kamailio -c`, also over several database nodes and as the bench's fixed route
	kamailio -c -f kamailio/kamailio.cfg
	kamailio -c -f kamailio/kamailio.cfg -A WITH_DB_CLUSTER
	kamailio -c -f kamailio/kamailio.cfg -A 'FIXED_ROUTE="sip:buyer@127.0.0.1:5090"'

test: install check-cfg wrk ## Run the whole test suite against real MariaDB, Kamailio, SIPp and sipsak
	$(VENV)/bin/pytest

# Only the .venv: no Debian packages, no server. The hypothesis, schemathesis
# and anyio plugins are left out: loading them takes longer than the tests.
test-fast: $(STAMP) ## Run the tests that need no server (tests/fast), in seconds
	$(VENV)/bin/pytest tests/fast -p no:hypothesispytest -p no:schemathesis -p no:anyio

soak: install ## About 2 minutes of pings, confirms and calls with a Kamailio restart; prints the totals
	$(PY) -m tests.soak

cluster-soak: install ## `soak` on a cluster of its own, over both app nodes and edges, the writer killed and an edge restarted halfway
	$(PY) -m tests.soak --cluster

bench: install wrk ## Measure pings and calls against their floors (private stack; about 10 minutes on 2 cores)
	$(PY) -m tests.bench

ping-cpu: install ## The app's and MariaDB's CPU per pass-through ping, in one thread (about a minute): steadier than `bench` on a busy machine
	$(PY) -m tests.bench.ping_cpu

cluster-bench: install wrk ## Pings, calls and claims on the single stack beside a loopback cluster, in one run (about 5 minutes)
	$(PY) -m tests.bench.cluster

# The benches' HTTP load generator (and the test of their wrk script), installed when first needed.
wrk:
	@dpkg-query -W -f='$${Status}' wrk 2>/dev/null | grep -q 'install ok installed' || { \
		echo "installing Debian package: wrk"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }

clean: down cluster-down ## Stop everything (the cluster too) and delete the state folder and the .venv
	rm -rf var $(VENV)
