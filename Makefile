# driftloop: every developer and CI entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION := 3.11
PYTHON ?= python$(PYTHON_VERSION)
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_LIBS := $(CACHE)/kafka/$(KAFKA_VERSION)/libs
PROTO_OUT := libs/api
UV := $(CACHE)/tools/bin/uv
GO_BIN := $(CACHE)/go/bin
KUSTOMIZE_VERSION := v5.8.0
KUSTOMIZE := $(GO_BIN)/kustomize
PROMETHEUS_VERSION := 3.16.0
# Prometheus 3.X.Y is the Go module github.com/prometheus/prometheus v0.3XX.Y.
PROMETHEUS_MODULE_VERSION := v0.$(shell echo $(PROMETHEUS_VERSION) | awk -F. '{printf "%d%02d.%d", $$1, $$2, $$3}')
PROMTOOL := $(GO_BIN)/promtool
PROMETHEUS := $(GO_BIN)/prometheus
export UV_PYTHON_DOWNLOADS := never
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: bench-drift-sink bench-drift-window bench-gateway bench-inference bench-inference-path bench-inference-sklearn bench-loop bench-online bench-scaling bench-training help setup run test test-unit test-integration lint typecheck lock proto proto-check kafka-jars clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(BIN)/.synced $(KAFKA_LIBS)/.complete $(KUSTOMIZE) $(PROMTOOL) $(PROMETHEUS) ## install everything: Python environment (uv), Kafka broker jars (Maven), kustomize, promtool and Prometheus (Go)

# uv, pinned, in a tools venv of its own (nothing installed outside the repository).
$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "Python $(PYTHON_VERSION) is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(CACHE)/tools
	$(CACHE)/tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(BIN)/.synced: $(UV) pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

kafka-jars: $(KAFKA_LIBS)/.complete ## fetch the Apache Kafka broker jars with Maven (once)

$(KAFKA_LIBS)/.complete: deploy/kafka/pom.xml
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	    echo "Java 17+ and Maven are needed for the local Kafka broker; installing them"; \
	    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven; }
	@echo "fetching Apache Kafka $(KAFKA_VERSION) broker jars into $(KAFKA_LIBS)"
	mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies \
	    -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS) -DincludeScope=runtime
	@touch $@

# Headless Chromium opens the HTML report in tests/e2e/test_report.py (Debian's package).
.PHONY: chromium
setup: chromium
chromium: ## install Debian's chromium when it is missing (the report test opens its page in it)
	@command -v chromium >/dev/null || { echo "installing chromium for the report test"; \
	    apt-get update -qq && apt-get install -y -qq chromium; }

# kustomize renders deploy/k8s in the tests; built from the Go module proxy.
$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "Go is needed to build kustomize (deploy/k8s checks)"; exit 1; }
	GOBIN=$(CURDIR)/$(GO_BIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# promtool checks deploy/prometheus (config, rules, rule unit tests) and the Prometheus
# server scrapes the standalone stack in the tests; both built from the Go module proxy, their
# version set (with an empty Go cache about 8 minutes for promtool on 2 cores, then about 2
# more for the server, which shares most packages; with a warm one, seconds: a link each).
$(PROMTOOL) $(PROMETHEUS):
	@command -v go >/dev/null || { echo "Go is needed to build $(@F) (deploy/prometheus checks)"; exit 1; }
	GOBIN=$(CURDIR)/$(GO_BIN) go install \
	    -ldflags "-X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION)" \
	    github.com/prometheus/prometheus/cmd/$(@F)@$(PROMETHEUS_MODULE_VERSION)

run: setup ## the main job: bring up a local broker and embedded ClickHouse and run the loop
	$(BIN)/driftloop demo

test: setup ## everything CI checks: lint, types, stale protos, unit and integration tests
	$(MAKE) --no-print-directory lint typecheck proto-check
	$(BIN)/pytest tests

test-unit: setup ## unit tests only (no broker, no ClickHouse)
	$(BIN)/pytest tests/unit

test-integration: setup ## integration and end-to-end tests (real broker, real ClickHouse engine)
	$(BIN)/pytest tests/integration tests/e2e

lint: $(BIN)/.synced ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.synced ## mypy --strict on our code
	$(BIN)/mypy libs services tests bench/harness.py bench/inference_vs_mlserver.py bench/gateway_vs_direct.py \
	    bench/drift_window_vs_evidently.py bench/drift_rule_table.py bench/online_vs_river.py bench/drift_sink.py \
	    bench/training_vs_sklearn.py bench/loop_timing.py bench/scaling.py bench/gateway_request_path.py \
	    bench/sink_costs.py bench/drift_sink_versus.py bench/inference_request_path.py bench/peers/echo_side.py \
	    bench/peers/sink_side.py bench/peers/forwarder_side.py bench/peers/bare_server.py bench/grpc_hop_options.py \
	    bench/peers/uvloop_site/sitecustomize.py

.PHONY: settings-doc
settings-doc: $(BIN)/.synced ## rewrite the README's configuration table from the settings classes
	$(BIN)/driftloop settings --readme README.md

lock: $(UV) ## re-resolve uv.lock after changing a pyproject.toml
	$(UV) lock --python $(PYTHON)

proto: $(BIN)/.synced ## regenerate the Python code of proto/ into libs/api
	rm -f $(PROTO_OUT)/driftloop/v1/*_pb2*.py $(PROTO_OUT)/driftloop/v1/*_pb2*.pyi \
	    $(PROTO_OUT)/driftloop/oip/v2/*_pb2*.py $(PROTO_OUT)/driftloop/oip/v2/*_pb2*.pyi
	$(BIN)/python -m grpc_tools.protoc -I proto \
	    -I $$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))') \
	    --python_out=$(PROTO_OUT) --mypy_out=quiet:$(PROTO_OUT) \
	    --grpc_python_out=$(PROTO_OUT) --mypy_grpc_out=only_async,quiet:$(PROTO_OUT) \
	    proto/driftloop/v1/*.proto proto/driftloop/oip/v2/*.proto

proto-check: $(BIN)/.synced ## fail when the generated code in libs/api is stale
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(MAKE) --no-print-directory proto PROTO_OUT=$$tmp >/dev/null && \
	diff -r -x __pycache__ -x __init__.py $$tmp/driftloop $(PROTO_OUT)/driftloop && echo "protos are up to date" || \
	{ echo "generated code is stale: run 'make proto' and commit"; exit 1; }

clean: ## remove the environment, caches and local data
	rm -rf $(VENV) $(CACHE) .data .mypy_cache .ruff_cache .pytest_cache

bench/.venv-peers/.ready: bench/peers/mlserver_side.py bench/peers/evidently_side.py bench/peers/sklearn_side.py | $(UV)
	$(UV) venv -q --clear bench/.venv-peers --python $(PYTHON)
	$(UV) pip install -q --python bench/.venv-peers/bin/python "mlserver==1.7.1" "mlserver-sklearn==1.7.1" scikit-learn "uvloop<0.22"
	$(UV) pip install -q --python bench/.venv-peers/bin/python "evidently==0.7.*" "pandas<3" pyarrow
	@touch $@

bench-inference: setup bench/.venv-peers/.ready ## benchmark: inference service vs MLServer (h2load)
	@command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client
	$(BIN)/python bench/inference_vs_mlserver.py

bench-inference-path: setup ## benchmark: the inference service's own CPU per Predict vs a bare grpc.aio handler, in-process
	$(BIN)/python bench/inference_request_path.py

bench-inference-sklearn: setup bench/.venv-peers/.ready ## benchmark: the sklearn flavor vs MLServer's scikit-learn runtime, same pipeline
	@command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client
	$(BIN)/python bench/inference_vs_mlserver.py --flavor sklearn --requests 8000 --serial 2000

bench-gateway: setup ## benchmark: the gateway hop against calling inference directly
	@command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client
	$(BIN)/python bench/gateway_vs_direct.py

bench-drift-window: setup bench/.venv-peers/.ready ## benchmark: a 100k x 20 drift window vs Evidently
	$(BIN)/python bench/drift_window_vs_evidently.py

bench-online: setup ## benchmark: online CUSUM vs river ADWIN (cost, delay)
	$(BIN)/python bench/online_vs_river.py

bench-drift-sink: setup ## benchmark: the drift sink (Kafka -> ClickHouse) vs a faust-streaming agent
	$(BIN)/python bench/drift_sink.py

bench-training: setup bench/.venv-peers/.ready ## benchmark: training the linear flavor vs scikit-learn LogisticRegression
	$(BIN)/python bench/training_vs_sklearn.py

bench-loop: setup ## benchmark: the closed loop, change -> promotion, by stage (3 runs of the demo scenario)
	$(BIN)/python bench/loop_timing.py --runs 3

bench-scaling: setup ## benchmark: how cost grows (drift round, window report, sink, gateway), table + docs/img/scaling.png
	$(BIN)/python bench/scaling.py $(BENCH_SCALING_ARGS)
