# Two commands on a fresh machine: `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
# The client's pyproject.toml too: its dependencies and console script are installed from it.
INSTALLED_FROM := requirements.txt requirements-dev.txt clients/python/pyproject.toml
STAMP := $(VENV)/.installed-$(shell cat $(INSTALLED_FROM) | cksum | cut -d' ' -f1)

.PHONY: install run test test-fast lint bench redis-server chromium prometheus

install: $(STAMP) redis-server chromium prometheus

$(STAMP): $(INSTALLED_FROM)
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

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

# Three test processes, each with its own redis-server and fake Anthropic server: the
# tests mostly wait on real processes, so this roughly halves the time on 2 cores.
test: install lint
	$(BIN)/pytest -n 3 --durations=25

# The unit layer alone: pure modules, no Redis, no processes, no network; seconds, not minutes.
test-fast: install
	$(BIN)/pytest -q tests/unit

bench: install
	@echo "start the stack with make run, then:"; $(BIN)/python -m bench.load --help
