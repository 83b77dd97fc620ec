# polyrank: `make demo` runs the main job, `make test` the tests. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?=
USERS ?= 8
DURATION ?= 60s
HOST ?=

.PHONY: demo test test-fast load bench clean

# torch==2.13.0 first: the local CPU build, so no other torch (with GBs of CUDA) is pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/polyrank demo $(if $(MODEL),--model $(MODEL))

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -ra tests

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

# Headless Locust against a server it starts (or HOST=127.0.0.1:PORT); reports in perf/results/.
load: $(VENV)/.installed
	$(BIN)/python perf/load.py --users $(USERS) --duration $(DURATION) $(if $(HOST),--host $(HOST))

bench: $(VENV)/.installed
	$(BIN)/python perf/bench_latency.py
	$(BIN)/python perf/bench_precision.py

clean:
	rm -rf build $(VENV)
