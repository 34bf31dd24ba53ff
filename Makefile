# saliency-audit: `make demo` runs the workflow on the embedded demo, `make test` runs the tests.
# Both create .venv first when it is missing or older than the requirements it was built from:
# requirements.txt (what the rules run with) for the demo, plus requirements-dev.txt for the tests and tools.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.requirements.txt
INSTALLED_DEV := $(VENV)/.requirements-dev.txt
RESULTS ?= results
# The fast layer: every test that is not end to end (pyproject.toml lists the markers)
FAST := not workflow and not slurm and not browser and not slow
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-fast lint setup setup-dev browser clean

demo: $(INSTALLED)
	snakemake --cores all --config results=$(RESULTS)
	snakemake --cores all --config results=$(RESULTS) --report $(RESULTS)/report.html

# The tools first, then every layer: unit, slow, workflow (the tiny demo and own catalogs), slurm, browser.
test: lint browser
	python -m pytest

# The unit tests only, in about half a minute on 2 cores: for day-to-day work.
test-fast: $(INSTALLED_DEV)
	python -m pytest -m "$(FAST)"

# What CI enforces; .pre-commit-config.yaml runs the same hooks.
lint: $(INSTALLED_DEV)
	ruff check scripts tests benchmarks
	ruff format --check scripts tests benchmarks
	snakefmt --check workflow
	snakemake --lint --config results=$$(mktemp -d)
	mypy

# The report test opens the HTML report in headless Chromium (Debian package `chromium`).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		{ echo "the report test needs Chromium: install it with 'sudo apt-get install chromium'"; exit 1; }

setup: $(INSTALLED)

setup-dev: $(INSTALLED_DEV)

$(INSTALLED): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "saliency-audit needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input -r requirements.txt
	cp requirements.txt $(INSTALLED)

$(INSTALLED_DEV): requirements-dev.txt $(INSTALLED)
	$(BIN)/python -m pip install --no-input -r requirements-dev.txt
	cp requirements-dev.txt $(INSTALLED_DEV)

clean:
	rm -rf $(RESULTS) .snakemake
