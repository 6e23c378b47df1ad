# The README's two commands: `make run` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run run-cluster test test-fast fuzz bench bench-cluster load lint browser turn redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sfu serve $(ARGS)

# Every core of this box: WORKERS nodes sharing the public port, with a private redis-server
# (docs/cluster.md). `make run-cluster WORKERS=4 ARGS="--config sfu.toml"`.
WORKERS ?= $(shell nproc)

run-cluster: $(STAMP) redis
	$(BIN)/sfu serve --workers $(WORKERS) $(ARGS)

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

# Debian's redis-server for the cluster (`make run-cluster`, tests/cluster; installed only when
# missing); the tests and `sfu serve --workers` start their own, on a private socket.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; fi; }

test: $(STAMP) browser turn redis
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not browser and not netns"

# Long fuzzing (docs/fuzzing.md): every tests/fuzz property with 100x the examples `make test`
# runs (fewer for the slow ones) and fresh random inputs, then atheris on the byte parsers for FUZZ_SECONDS each. Niced.
FUZZ_SECONDS ?= 60
FUZZ_STAMP := $(VENV)/.fuzz-installed

$(FUZZ_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	HYPOTHESIS_PROFILE=fuzz nice -n 10 $(BIN)/python -m pytest -q -p no:cacheprovider \
	  --timeout=0 --hypothesis-show-statistics tests/fuzz
	nice -n 10 $(BIN)/python -m tests.fuzz.atheris_run --seconds $(FUZZ_SECONDS)

bench: $(STAMP)
	$(BIN)/python -m bench.forwarding $(ARGS)

load: $(STAMP)
	$(BIN)/python -m bench.load $(ARGS)

# CPU per consultation on N workers against one server, and Redis commands (docs/load-testing.md,
# "Cluster"): `make bench-cluster ARGS="--repeat 3 --json cluster.json"`.
bench-cluster: $(STAMP) redis
	$(BIN)/python -m bench.cluster $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sfu tests bench
	$(BIN)/mypy sfu
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
