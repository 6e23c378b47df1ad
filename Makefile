# The README's two commands: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench load lint browser turn clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sfu serve $(ARGS)

# Debian's chromium for the browser end-to-end tests (installed only when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# Debian's coturn and iptables for the TURN relay test (tests/netns/test_turn_relay.py; installed
# only when missing); the test runs its own turnserver on a temporary config.
turn:
	@{ command -v turnserver >/dev/null 2>&1 && command -v iptables >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn iptables >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn iptables >/dev/null; fi; }

test: $(STAMP) browser turn
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not browser and not netns"

bench: $(STAMP)
	$(BIN)/python -m bench.forwarding $(ARGS)

load: $(STAMP)
	$(BIN)/python -m bench.load $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sfu tests bench
	$(BIN)/mypy sfu
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
