# Two commands for a fresh machine: `make run` (main job on the bundled sample) and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/chain/node/node_modules/.installed

.PHONY: setup run test test-all bench client clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first: a plain `torch` requirement pulls gigabytes of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	# compile and cache the per-bar kernels now, so the first run is as lively as later ones
	$(BIN)/python -m app.warmup
	touch $(STAMP)

setup: $(STAMP)

# runs until Ctrl-C; bounded: make run ARGS="--max-seconds 30"
run: $(STAMP)
	$(BIN)/crypto-intel run $(ARGS)

# a local Hardhat node and solc from npm for the on-chain tests (offline once installed)
$(NODE_STAMP): tests/chain/node/package-lock.json
	npm ci --prefix tests/chain/node --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $(BENCH_STAMP)

# every section; some: make bench ARGS="throughput memory" (sizes: BENCH_* variables, see benchmarks/)
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

# the API's openapi.json and a typed Python client generated from it (openapi-python-client) in build/client
client: $(STAMP)
	$(BIN)/python -m serve.openapi build/client

clean:
	rm -rf $(VENV) data/out .pytest_cache  # data/ keeps the embedded databases: remove it by hand to start afresh
