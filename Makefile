# dp-lakehouse: every target bootstraps what it needs from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JARS := .jars
AZURITE_DIR := .azurite
AZURITE_PID := $(AZURITE_DIR)/azurite.pid
# Spark's Python workers must run the venv's interpreter (pipeline_dp lives there).
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: setup run test unit bench bench-smoke azurite azurite-stop lint image image-test clean distclean

setup: $(VENV)/.installed $(JARS)/manifest.json node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@echo "setup: creating $(VENV) and installing the Python packages (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

# Delta and hadoop-azure jars, resolved once from Maven Central by Spark's own resolver into a
# project-local Ivy cache; later sessions load them from disk and start offline.
$(JARS)/manifest.json: $(VENV)/.installed $(wildcard lakehouse/jvm/*.java)
	$(BIN)/python -m lakehouse.jars --dest $(JARS)

node_modules/.installed: package.json package-lock.json
	@echo "setup: installing Azurite, the Azure Blob emulator the tests use (npm, about 20 s)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.installed $(JARS)/manifest.json
	$(BIN)/lakehouse run --generate-if-empty 100000 --show

# Two workers, each with its own Spark session: the suite is mostly JVM warm-up and subprocess
# waits, which overlap well on two cores.
# Lint first (seconds), then every test. `make unit` is the fast inner loop: tests/unit only.
test: setup lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

unit: setup
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	$(BIN)/python -m bench

# The job image, dp-lakehouse:local, built with this machine's container engine (dockerd is started
# and stopped again if none runs); its base is made locally where no registry answers.
image:
	deploy/image-build.sh

# Builds the image, then runs it offline on generated Bronze: --help, run, SIGTERM mid-run and a clean
# rerun; Gold checked from the host with delta-rs (the venv's deltalake).
image-test: $(VENV)/.installed
	deploy/image-test.sh

azurite: node_modules/.installed
	@mkdir -p $(AZURITE_DIR)
	@if [ -f $(AZURITE_PID) ] && kill -0 $$(cat $(AZURITE_PID)) 2>/dev/null; then \
		echo "azurite already running (pid $$(cat $(AZURITE_PID)))"; \
	else \
		nohup node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort 10000 \
			--location $(AZURITE_DIR) --skipApiVersionCheck --disableTelemetry --loose \
			> $(AZURITE_DIR)/azurite.log 2>&1 & echo $$! > $(AZURITE_PID); \
		echo "azurite started (pid $$(cat $(AZURITE_PID)), blob endpoint http://127.0.0.1:10000/devstoreaccount1)"; \
	fi

azurite-stop:
	@if [ -f $(AZURITE_PID) ]; then kill $$(cat $(AZURITE_PID)) 2>/dev/null || true; rm -f $(AZURITE_PID); echo "azurite stopped"; \
	else echo "azurite not running"; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck --external-sources deploy/*.sh .ci/run

clean:
	rm -rf lakehouse-data spark-warehouse metastore_db derby.log .pytest_cache

# .cache holds the base image's rootfs tarball and the image build's logs.
distclean: clean azurite-stop
	rm -rf $(VENV) $(JARS) node_modules $(AZURITE_DIR) .cache
