# The two commands: `make run` (the whole system) and `make test` (the whole test suite).
# Both set up everything they need on a fresh machine: a virtualenv with the package, and the
# Apache Kafka broker (fetched with Maven on first use, cached under ~/.cache/signupflow).
# `make test` also installs the Debian packages its tests need when they are missing (apt, as
# root or with sudo): chromium for the browser test, postgresql for the PostgreSQL run (the tests
# start a private server of their own on a free loopback port, never the package's cluster), and
# docker-compose (v1), whose `docker-compose config` checks docker-compose.yml without a Docker
# engine (tests/unit/test_compose.py), and prometheus for its `promtool`, which checks and
# tests the alerting rules in deploy/prometheus (tests/unit/test_alerts.py; `make test-unit`
# installs only these two).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SOAK_RUNS ?= 10
SOAK_TESTS ?= tests/integration/test_chaos.py
SOAK_LOG ?= var/soak

.PHONY: run test test-unit lint bench down clean test-packages unit-packages soak lock

# The environment is the locked set of constraints.txt (`make lock` makes it), and `pip check`
# fails the build on any conflict. PYTHONWARNINGS: setuptools' "Editable installation" notice
# (a BuildBackendWarning block of a dozen lines) is no news to anyone running `make run`.
LOCK := constraints.txt
PIP_INSTALL = PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install --quiet -c $(LOCK)

$(BIN)/.installed: setup.cfg pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[dev]'
	$(BIN)/pip check
	touch $@

run: $(BIN)/.installed
	$(BIN)/signupflow up

test: lint test-packages
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast tier: no broker, no PostgreSQL, no worker process (well under a minute).
test-unit: lint unit-packages
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

# Installs the Debian packages named in the shell variable `missing`, if any.
APT_INSTALL = [ -z "$$missing" ] || $(SUDO) sh -c "apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing"

test-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	$(APT_INSTALL)

unit-packages:
	@missing=""; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	$(APT_INSTALL)

# The kill-combination chaos tests, SOAK_RUNS times in a row; each run's output is kept in
# $(SOAK_LOG)/run-N.log, and the databases, logs and broker of a run that failed or stalled in
# $(SOAK_LOG)/tmp-N.
# Each run also counts, in the workers' logs, the offsets Faust's fetch loop skipped and the
# partitions read again because of it (each a ~10 s stall of one partition: the consumer
# guard in signupflow/transport.py). Exits 1 if any run failed. (`make test` runs each
# scenario once.)
soak: $(BIN)/.installed test-packages
	@mkdir -p $(SOAK_LOG); failed=0; stalls=0; \
	for i in $$(seq $(SOAK_RUNS)); do \
		if $(BIN)/pytest -q --basetemp=$(SOAK_LOG)/tmp-$$i $(SOAK_TESTS) \
			> $(SOAK_LOG)/run-$$i.log 2>&1; \
		then result=passed; else result=FAILED; failed=$$((failed + 1)); fi; \
		skips=$$(cat $$(find $(SOAK_LOG)/tmp-$$i -name '*.log' -path '*log*') /dev/null \
			| grep -c 'skipped by the fetch loop'); \
		lost=$$(cat $$(find $(SOAK_LOG)/tmp-$$i -name '*.log' -path '*log*') /dev/null \
			| grep -c 'never reached the agent'); \
		stalls=$$((stalls + lost)); \
		echo "run $$i: $$result; fetch-loop skips $$skips, partitions read again $$lost"; \
		if [ $$result = passed ] && [ $$skips -eq 0 ] && [ $$lost -eq 0 ]; then \
			rm -rf $(SOAK_LOG)/tmp-$$i; \
		else echo "  see $(SOAK_LOG)/run-$$i.log and $(SOAK_LOG)/tmp-$$i"; fi; \
	done; \
	echo "soak: $(SOAK_RUNS) runs, $$failed failed, $$stalls partition(s) read again"; \
	[ $$failed -eq 0 ]

# pip check (the environment is one consistent set), ruff, then mypy in strict mode
# (setup.cfg [mypy]): one target for CI and for people.
lint: $(BIN)/.installed
	$(BIN)/pip check
	$(BIN)/ruff check signupflow tests
	$(BIN)/mypy

# The benchmark's peers (confluent-kafka, Quix Streams) come from the `bench` extra; `dev` has
# them too, so this adds nothing to a venv made by the targets above.
$(BIN)/.bench-installed: $(BIN)/.installed
	$(PIP_INSTALL) -e '.[bench]'
	$(BIN)/pip check
	touch $@

bench: $(BIN)/.bench-installed
	$(BIN)/signupflow bench --signups 20000

# constraints.txt: every package of every extra resolved together in a fresh virtualenv (no
# conflict: pip check), pinned. Run it after changing a requirement in setup.cfg, and commit
# the file; tests/unit/test_lock.py fails while it lags behind setup.cfg.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install --quiet --upgrade pip && \
	PYTHONWARNINGS=ignore::UserWarning "$$tmp/venv/bin/pip" install --quiet -e '.[dev,bench,postgres]' && \
	"$$tmp/venv/bin/pip" check && \
	{ echo "# Made by \`make lock\` (every extra of setup.cfg, resolved together; \`pip check\` clean)."; \
	  echo "# Used by the Makefile's installs as pip constraints. Python $$("$$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())')."; \
	  "$$tmp/venv/bin/pip" freeze --exclude-editable; } > $(LOCK).new && \
	mv $(LOCK).new $(LOCK) && echo "$(LOCK): $$(grep -c '==' $(LOCK)) packages pinned"

down: $(BIN)/.installed
	$(BIN)/signupflow down

clean:
	rm -rf $(VENV) var .pytest_cache *.egg-info
