# Everything a developer or CI runs. Only python3 is assumed; the rest lands in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
comma := ,
PORT ?= 8000
# extras the test suite needs; ray is here because its install and tests fit CI (#15);
# torch is left out (its tests skip without it): pip install torch==2.13.0 on a machine
# that has it
EXTRAS ?= dev,numpy,fast,xml,flask,asgi,grpc,onnx,lightgbm,dashboard,otel,dvc,joblib,ray

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint typecheck unit docs docs-build bench proto clean reliability soak

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --editable ".[$(EXTRAS)]"
	@touch $@

venv: $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))  ## create .venv and install the package

demo: venv  ## serve the demo model on PORT (default 8000), printing curl commands
	@$(BIN)/python -m modeldeploy.demo --port $(PORT)
	$(BIN)/modeldeploy serve modeldeploy.demo:service --port $(PORT)

lint: venv  ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: venv  ## mypy --strict on src/
	$(BIN)/mypy

unit: venv  ## the pytest suite alone
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs-build: venv  ## strict docs build into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck unit docs-build  ## everything CI runs

docs: venv  ## serve the docs on localhost:8001
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

BENCH_INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))-bench
$(BENCH_INSTALLED): pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --editable ".[$(EXTRAS),bench]"
	@touch $@

bench: $(BENCH_INSTALLED)  ## run the benchmarks (installs the bench extra); writes docs/benchmarks.md
	$(BIN)/python benchmarks/run.py $(BENCH)

SOAK_SECONDS ?= 60
reliability: venv  ## the reliability suite at full size; writes docs/reliability.md's figures
	rm -rf tests/reliability/results
	MODELDEPLOY_RELIABILITY_FULL=1 MODELDEPLOY_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(BIN)/python -m pytest tests/reliability -q -p no:randomly \
		--junitxml=tests/reliability/results/junit.xml; \
	status=$$?; $(BIN)/python tests/reliability/report.py && exit $$status

soak: venv  ## 10 minutes of steady traffic: no memory, fd or thread growth
	MODELDEPLOY_SOAK_SECONDS=600 $(BIN)/python -m pytest tests/reliability/test_soak.py -q

# protoc writes modeldeploy/v1/value_pb2.py under its output dir (the .proto's path);
# the module lives in modeldeploy._proto, so generate into a scratch dir and copy
proto: venv  ## regenerate src/modeldeploy/_proto/ from proto/
	tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=$$tmp --pyi_out=$$tmp \
		proto/modeldeploy/v1/value.proto && \
	cp $$tmp/modeldeploy/v1/value_pb2.py $$tmp/modeldeploy/v1/value_pb2.pyi src/modeldeploy/_proto/ && \
	rm -rf $$tmp

clean:  ## remove the venv and build output
	rm -rf $(VENV) site build dist .mypy_cache .pytest_cache .ruff_cache .hypothesis
