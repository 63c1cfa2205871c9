# Two commands on a fresh clone: `make serve` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp
REPO ?= model_repo
HOST ?= 127.0.0.1
PYTEST_ARGS ?=
# The CPU torch wheel lies in /opt/wheels on this kind of machine; pip finds it there.
FIND_LINKS := $(shell test -d /opt/wheels && echo --find-links /opt/wheels)

.PHONY: install deploy-tools bench-tools dashboards models serve test test-quick lint protos bench bench-peers bench-workers \
	loadtest loadtest-compare loadtest-sweep loadtest-compare-versions loadtest-rollouts

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install $(FIND_LINKS) -c constraints.txt -e ".[frameworks,loadtest,dev,tracing]"
	# Its metadata names the full `tensorflow` package; tensorflow-cpu provides it.
	$(PIP) install --no-deps tensorflow-serving-api==2.21.0
	# onnx2tf (PyTorch -> SavedModel/TFLite) hard-pins old TensorFlow/numpy/onnx: installed without its
	# pins into a folder of its own, only on the PYTHONPATH of the conversion subprocess.
	$(PIP) install --quiet --no-deps --upgrade --target $(VENV)/onnx2tf onnx2tf==1.29.24 \
		onnx-graphsurgeon==0.6.1 sng4onnx==2.0.1 psutil==7.2.2 tf-keras==2.21.0
	touch $(STAMP)

# Builds the demo models into model_repo/ if they are missing (never overwrites a version): the numpy MLP,
# then the Keras and PyTorch CNNs converted to every format, verified and published (a few minutes, once).
models: install
	$(PY) -m demo.mlp --model-repository $(REPO)
	$(PY) -m demo.cnn --model-repository $(REPO)

serve: models
	$(VENV)/bin/modelgate serve --model-repository $(REPO) --host $(HOST)

# Prometheus and promtool (Debian's `prometheus`) for the deploy/ tests; hadolint, kubernetes-validate and
# grafana-foundation-sdk come from the dev extra; kubectl (for `kubectl kustomize`) is in the machine image.
deploy-tools:
	command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus)

# wrk (Debian) for the benchmarks' load-generator tests (tests/bench/test_wrk_pace.py).
bench-tools:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

# Regenerate deploy/dashboards/*.json from deploy/dashboards/definitions.py.
dashboards: install
	$(PY) -m deploy.dashboards

test: models deploy-tools bench-tools
	$(PY) -m pytest -n 2 --dist loadscope $(PYTEST_ARGS)

# Core, protocol and end-to-end tests without TensorFlow/torch (seconds, not minutes).
test-quick: install deploy-tools bench-tools
	$(PY) -m pytest -n 2 --dist loadscope -m "not frameworks" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Load test a running gateway (`make serve` in another shell); exit 1 on an SLO breach or a wrong answer.
LOADTEST_ARGS ?= --protocol rest --shape constant:users=8 --duration 30
# Against `make serve` (metrics on :8002, the default). LOADTEST_MODEL=digits_keras tests a demo CNN.
LOADTEST_MODEL ?= digits_mlp
loadtest: install
	$(VENV)/bin/modelgate loadtest --host http://$(HOST):8000 --model $(LOADTEST_MODEL) --out reports/loadtest \
		--model-repository $(REPO) --slo loadtests/slo.example.yaml $(LOADTEST_ARGS)

# Latency versus load: concurrency 1..64, then open-loop rates doubling up to saturation (p99 <= 50 ms).
loadtest-sweep: install
	$(VENV)/bin/modelgate loadtest-sweep --host http://$(HOST):8000 --model $(LOADTEST_MODEL) --protocol binary \
		--users 1,8,32,64 --rate-start 100 --p99-ms 50 --duration 10 --out reports/sweep $(SWEEP_ARGS)

# Every published version of a demo CNN side by side with its conversion report.
loadtest-compare-versions: install
	$(VENV)/bin/modelgate loadtest-compare-versions --host http://$(HOST):8000 --model digits_keras \
		--model-repository $(REPO) --shape constant:users=4 --duration 10 --out reports/versions $(VERSIONS_ARGS)

# Deployment success under load: the demo MLP's good and bad versions (built from $(REPO)/digits_mlp) rolled out
# one after another under steady load, on a gateway of its own (free ports; `make serve` may keep running).
loadtest-rollouts: install
	$(PY) -m bench.rollouts_demo --model-repository $(REPO) --out reports/rollouts $(ROLLOUTS_ARGS)

loadtest-compare: install
	$(VENV)/bin/modelgate loadtest-compare --model digits_mlp --shape constant:users=8 --duration 20 \
		--out reports/compare --target rest=rest@http://$(HOST):8000 --target binary=binary@http://$(HOST):8000 \
		--target grpc=grpc@grpc://$(HOST):8001

# Gateway vs bare ASGI / bare grpc.aio floors (prints ratios; needs wrk and h2load from Debian).
bench: install
	command -v wrk >/dev/null && command -v h2load >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk nghttp2-client)
	$(PY) -m bench.v2_overhead

# The gateway vs Seldon MLServer, KServe, BentoML, Ray Serve, TorchServe and the bare floors, one run, same model
# and load generators; writes the dated table into docs/performance.md. Each peer gets its own pinned venv under
# .bench-peers/ (built once, reused; about 10 minutes and 1.8 GB the first time here); the run itself is in a
# private network namespace with only loopback (needs unshare and ip). BENCH_PEERS_ARGS="--duration 5" shortens it.
BENCH_PEERS_ARGS ?=
bench-peers: models
	command -v wrk >/dev/null && command -v h2load >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk nghttp2-client)
	command -v unshare >/dev/null && command -v ip >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq util-linux iproute2)
	$(PY) -m bench.peers.envs
	$(PY) -m bench.peers --model-repository $(REPO) $(BENCH_PEERS_ARGS)

# --workers 1 vs 2 and the bare floor at 1 vs 2 processes, interleaved in one run (needs wrk).
bench-workers: install
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m bench.workers_scaling

protos: install
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. gateway/protos/open_inference_grpc.proto
