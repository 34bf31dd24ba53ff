# saliency-audit: `make demo` runs the workflow on the embedded demo, `make test` runs the tests.
# Both create .venv from requirements.txt first when it is missing or older than requirements.txt.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.requirements.txt
RESULTS ?= results
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test setup clean

demo: $(INSTALLED)
	snakemake --cores all --config results=$(RESULTS)
	snakemake --cores all --config results=$(RESULTS) --report $(RESULTS)/report.html

test: $(INSTALLED)
	python -m pytest

setup: $(INSTALLED)

$(INSTALLED): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "saliency-audit needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input -r requirements.txt
	cp requirements.txt $(INSTALLED)

clean:
	rm -rf $(RESULTS) .snakemake
