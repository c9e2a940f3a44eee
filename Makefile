# Two commands on a fresh machine: `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
# The client's pyproject.toml too: its dependencies and console script are installed from it.
INSTALLED_FROM := requirements.txt requirements-dev.txt clients/python/pyproject.toml
STAMP := $(VENV)/.installed-$(shell cat $(INSTALLED_FROM) | cksum | cut -d' ' -f1)

.PHONY: install lock run test test-fast lint docs bench redis-server chromium prometheus

install: $(STAMP) redis-server chromium prometheus

# The dev lock holds every package with its hashes, and pip then refuses anything else.
# The Python client (clients/python) is installed editable on its own, without its
# dependencies: they are in the lock, and an editable line has no hash.
# pip byte-compiles file by file, half of a fresh install's minute; compileall on every core
# does the same in 8 s (install 61 s -> 37 s here). Left to first imports instead, the test
# processes that start together each compile the same modules (the suite took ~35 s longer).
$(STAMP): $(INSTALLED_FROM)
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile --require-hashes -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e ./clients/python
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	rm -f $(VENV)/.installed-* && touch $@

# The locks, from pyproject.toml: requirements.txt (runtime: the image installs it) and
# requirements-dev.txt (runtime + dev, the same runtime versions; `make install`). Existing
# pins are kept; to move one: make lock LOCK_ARGS='--upgrade-package NAME'.
# pip-tools runs from a venv of its own, so it never enters the locked one.
LOCK_VENV := .venv-lock
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) --output-file requirements.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint requirements.txt --output-file requirements-dev.txt \
	  pyproject.toml clients/python/pyproject.toml

$(LOCK_VENV)/bin/pip-compile:
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check pip-tools==7.6.2

# Tests start their own redis-server; install it when the machine has none.
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The dashboard's browser test (tests/test_dashboard_browser.py) drives headless Chromium.
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# tests/test_prometheus.py runs promtool on deploy/prometheus and a real Prometheus against the stack.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing prometheus (with promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

run: install
	./scripts/run-stack.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # service/, the client and the fake, as configured in pyproject.toml ([tool.mypy])
	$(BIN)/pyright --project pyproject.toml  # service/ in basic mode ([tool.pyright]); the file named, so that no pyrightconfig.json in a parent folder is taken instead
	$(MKDOCS) build --strict  # a broken link or anchor in docs/ fails it (mkdocs.yml; not --quiet: it hides the warnings from --strict too)

# The documentation site (docs/, mkdocs.yml), rebuilt as a page changes. Port 8001: the API has 8000.
# NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about MkDocs 2 on every run; it says nothing of this site.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
DOCS_ADDR ?= 127.0.0.1:8001
docs: install
	$(MKDOCS) serve --dev-addr $(DOCS_ADDR)

# Three test processes, each with its own redis-server and fake Anthropic server: the
# tests mostly wait on real processes, so this roughly halves the time on 2 cores.
# The fuzz module builds schemathesis' coverage cases while it is collected (~40 s of CPU
# for POST /v1/jobs and /v1/batches): in a process of its own beside the xdist run, it is
# collected once, not once per xdist worker (each collects every module). Its report
# follows the main one's; either failing fails the target.
FUZZ := tests/test_fuzz_openapi.py
# Most of a test's time is waiting on its processes (make test used 60 % of two cores at
# -n 3: 623 s; -n 5: 539 s, 70 %; -n 7: 455 s, 82 %), so more xdist processes than cores
# finish sooner. worksteal: an idle process takes tests queued for a busy one (the crash
# tests run up to 46 s), 464 -> 413 s at -n 7. Five, not seven: as fast within the noise
# (419 s), and less load leaves timing-bound tests more room. (The failover test's lost job at
# seven was a real loss window in the worker's dequeue, since closed: storage/claims.py.)
TEST_PROCESSES ?= 5
test: install lint
	@fuzz_log=$$(mktemp); $(BIN)/pytest -q $(FUZZ) >$$fuzz_log 2>&1 & fuzz=$$!; \
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal --durations=25 --ignore=$(FUZZ); main=$$?; \
	wait $$fuzz; fuzzed=$$?; echo "--- $(FUZZ)"; cat $$fuzz_log; rm -f $$fuzz_log; \
	exit $$(( main || fuzzed ))

# The unit layer alone: pure modules, no Redis, no processes, no network; seconds, not minutes.
test-fast: install
	$(BIN)/pytest -q tests/unit

bench: install
	@echo "start the stack with make run, then:"; $(BIN)/python -m bench.load --help
