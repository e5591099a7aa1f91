# Quick start: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA wheels.
GENLAB_TORCH ?= torch==2.13.0
STAMP := $(VENV)/.genlab-installed

.PHONY: demo test install bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(GENLAB_TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,text,diffusers]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/genlab demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/genlab bench samplers

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
