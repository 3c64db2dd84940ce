# MedVision: `make run` starts the stack, `make test` runs every test. Both install first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := training,export,triton,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8080
TRITON_GRPC_PORT ?= 8001
TRITON_HTTP_PORT ?= 8000
TRITON_METRICS_PORT ?= 8002
export MEDVISION_DATA_DIR ?= $(CURDIR)/var

.PHONY: install run test lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "MedVision needs Python 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(BIN)/medvision export demo --repository model_repository
	@echo "MedVision on http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/schema)"
	@echo "Triton Inference Server on 127.0.0.1:$(TRITON_GRPC_PORT) (gRPC), serving model_repository/"
	@echo "Data directory: $(MEDVISION_DATA_DIR)"
	@echo "Create the first admin in another shell:"
	@echo "  MEDVISION_DATA_DIR=$(MEDVISION_DATA_DIR) $(BIN)/medvision users create --role admin --username admin"
	@$(BIN)/medvision triton serve --repository model_repository \
		--grpc-port $(TRITON_GRPC_PORT) --http-port $(TRITON_HTTP_PORT) --metrics-port $(TRITON_METRICS_PORT) & \
	triton=$$!; trap 'kill $$triton 2>/dev/null; wait $$triton' EXIT INT TERM; \
	MEDVISION_TRITON_URL=127.0.0.1:$(TRITON_GRPC_PORT) $(BIN)/medvision serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check control export training tests
	$(BIN)/ruff format --check control export training tests

typecheck: install
	$(BIN)/mypy control export

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
