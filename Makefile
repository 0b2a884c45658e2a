# conversation-sessions — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

include deploy/kafka-local/kafka.mk

.PHONY: help install native clean-native run test test-unit test-integration bench-core bench chaos clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[test,rocksdb,native]'
	touch $(STAMP)

install: $(STAMP) native ## create .venv, install the pinned project, compile the core

native: $(STAMP) ## compile worker/domain + worker/codec + worker/keyhash with mypyc (pure Python, with a warning, if that fails; NATIVE=0 skips)
	$(PY) -m worker.native build

clean-native: ## delete the compiled modules: back to pure Python
	rm -f worker/*.so worker/domain/*.so worker/domain/_native.json
	rm -rf build/mypyc

run: install ## worker + local broker + demo traffic, lifecycle events printed live (Ctrl-C stops)
	$(PY) deploy/demo.py

test: install ## every test against a local broker started and stopped here
	@set -o pipefail; status=0; \
	$(MAKE) --no-print-directory kafka-up || exit $$?; \
	KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$${KAFKA_PORT:-9092}} \
	  $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	$(MAKE) --no-print-directory kafka-down || true; \
	exit $$status

test-unit: install ## unit and property tests only (no broker)
	$(PY) -m pytest tests/unit tests/property $(PYTEST_ARGS)

test-integration: install ## integration and e2e tests only (needs a broker: make kafka-up)
	$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench-core: install ## 1M synthetic events through codec + core, no Kafka
	$(PY) bench/core_bench.py

# make chaos's crash runs (100 records per fetch: the faults land during the consumption)
CHAOS_RUN = $(PY) -m tests.chaos.chaos --events 200000 --users 20000 --kills 10 --terms 3 \
	--workers 2 --partitions 8 --max-poll-records 100

chaos: install ## crash test (at-least-once, then exactly-once + 3 kills inside transactions): 2 workers, 8 partitions, 200k events, 10 SIGKILLs + 3 SIGTERMs vs replay; one-key abuse
	$(MAKE) --no-print-directory kafka-up
	$(CHAOS_RUN) $(CHAOS_ARGS)
	$(CHAOS_RUN) --guarantee exactly_once --in-txn-kills 3 --out bench/results/chaos-eos-latest.json $(CHAOS_ARGS)
	$(PY) -m tests.chaos.chaos --abuse
	$(PY) -m pytest tests/integration/test_worker_restart.py tests/integration/test_crash_recovery.py tests/integration/test_broker_restart.py

# every figure in one run: the state phase at ~1.1M open sessions, memory store then
# RocksDB (6.5 min on 2026-11-27). `make bench BENCH_ARGS=` runs
# the state phase at 200k open with the memory store only (~4 min).
BENCH_ARGS ?= --big --state-stores memory://,rocksdb://
bench: install ## Kafka bench: P/N/W throughput, W latency; memory, close lateness, recovery at 1M (both stores)
	$(MAKE) --no-print-directory kafka-up
	$(PY) bench/run_bench.py $(BENCH_ARGS)

clean: clean-native ## remove the virtualenv, caches and compiled modules (the Kafka jar cache is kept)
	rm -rf $(VENV) .pytest_cache .hypothesis build
