# The two commands a newcomer needs: `make demo` and `make test`. Both start with `make setup`.
PYTHON ?= python3
VENV   ?= .venv
TEST_WORKERS ?= 3  # `make test`: parallel workers for the suites that need the services (1: one process)
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup setup-dev setup-browser setup-promtool demo test test-unit fuzz chaos lint format docs services-up services-down bench bench-tools clean

setup: $(STAMP)  ## Create .venv and install lambdarec without the heavy extras (no torch).

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	@rm -f $(VENV)/.installed-*; touch $@

setup-dev: setup  ## Add the dev, torch and ray extras (test tools, torch trainer, Ray engine).
	@test -f $(VENV)/.dev-$(notdir $(STAMP)) || { $(PIP) install -e '.[dev,torch,ray]' && touch $(VENV)/.dev-$(notdir $(STAMP)); }

demo: setup  ## The main job on embedded defaults: SQLite store, SQLite log, no servers.
	$(BIN)/lambdarec demo

setup-browser:  ## Headless Chromium for the report tests (Debian package; needs root, else says how).
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: install Chromium for the HTML report tests: sudo apt-get install -y chromium" >&2; fi; }

setup-promtool:  ## promtool, which checks and unit-tests deploy/prometheus/ (Debian package `prometheus`; needs root, else says how).
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "make: install promtool for the alert rules tests: sudo apt-get install -y prometheus" >&2; fi; }

test: setup-dev setup-browser setup-promtool  ## Provide real Cassandra and Kafka (unless LAMBDAREC_TEST_* name them), run the whole suite.
	@# The lake's S3 server (SeaweedFS) is built once from source (~17 CPU-minutes, then cached) in the background
	@# while the first tests run; the S3 fixture waits for that build (a lock) and starts it.
	@if [ -z "$$LAMBDAREC_TEST_S3" ]; then (deploy/local/services fetch seaweedfs >/dev/null 2>&1 &); fi
	@# The unit tests first, in their own interpreter (about 4 min, and a failure there stops the run early) while
	@# Cassandra and Kafka start beside them (about a minute of their wall time saved), then the suites that need
	@# the services on TEST_WORKERS parallel workers, a test file to a worker (its module fixtures built once):
	@# those tests mostly wait on the services and their own subprocesses (one worker kept two cores 35% busy;
	@# three, 94%), so three workers take 14 min of wall time where one took 23 on a 2-core machine.
	@svc=; if [ -z "$$LAMBDAREC_TEST_CASSANDRA" ] || [ -z "$$LAMBDAREC_TEST_KAFKA" ]; then \
	  svc="$$(mktemp -d)"; deploy/local/services up > "$$svc/env" 2> "$$svc/err" & up=$$!; fi; \
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS); unit=$$?; \
	if [ -n "$$svc" ]; then \
	  if wait $$up; then cat "$$svc/err" >&2; eval "$$(cat "$$svc/env")"; rm -rf "$$svc"; \
	  else cat "$$svc/err" >&2; rm -rf "$$svc"; echo "make test: could not start Cassandra and Kafka (see above)" >&2; exit 1; fi; fi; \
	[ $$unit -eq 0 ] || exit $$unit; \
	$(BIN)/python -m pytest tests --ignore=tests/unit -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: setup-dev  ## Only the tests that need no service.
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

fuzz: setup-dev  ## The fuzz suite only, FUZZ_SCALE (default 10) times the examples CI runs; needs the services as `test`.
	@if [ -z "$$LAMBDAREC_TEST_CASSANDRA" ] || [ -z "$$LAMBDAREC_TEST_KAFKA" ]; then \
	  lines="$$(deploy/local/services up)" || { echo "make fuzz: could not start Cassandra and Kafka (see above)" >&2; exit 1; }; \
	  eval "$$lines"; fi; \
	LAMBDAREC_TEST_FUZZ_SCALE=$(or $(FUZZ_SCALE),10) $(BIN)/python -m pytest -m fuzz $(PYTEST_ARGS)

chaos: setup-dev  ## Every chaos scenario (tests/chaos) on its own Cassandra and Kafka, TRIALS (3) seeded trials each.
	LAMBDAREC_TEST_CHAOS_FULL=1 LAMBDAREC_TEST_CHAOS_TRIALS=$(or $(TRIALS),3) \
	  $(BIN)/python -m pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

lint: setup-dev  ## ruff check and format check.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: setup  ## Regenerate docs/configuration.md from the settings tree.
	$(BIN)/lambdarec config reference --out docs/configuration.md

services-up:  ## Start real Cassandra and Kafka on the JDK (prints LAMBDAREC_TEST_* lines).
	@deploy/local/services up

services-down:
	@deploy/local/services down

bench: setup-dev $(if $(filter serve,$(NAME)),bench-tools)  ## make bench NAME=topk SCALE=small [CHECK=1: exit 1 on a missed goal]
	$(BIN)/python -m benchmarks $(NAME) --scale $(or $(SCALE),small)$(if $(CHECK), --check)

bench-tools:  ## The serve benchmark's load generators: wrk (max QPS) from the distribution where this user may install it; vegeta (p99, open loop) built with Go into $LAMBDAREC_CACHE/bin
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get install -y -qq wrk >/dev/null 2>&1 && echo "installed wrk"; } || \
		echo "wrk not installed: the serve benchmark uses its Python load generator (and says so)"
	@$(PYTHON) -m benchmarks.vegeta install

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
