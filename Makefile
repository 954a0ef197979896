# `make demo` and `make test` set everything up on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= autoseg_data/demo

.PHONY: setup demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_torch.sh
	$(PYTHON) -m venv $(VENV)
	bash scripts/install_torch.sh $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	AUTOSEG_HOME=$(DEMO_DIR) $(VENV)/bin/autoseg_synth atlas $(DEMO_DIR)/source/Atlas_2 --cases 20 --seed 1 --size small
	AUTOSEG_HOME=$(DEMO_DIR) $(VENV)/bin/autoseg_convert atlas $(DEMO_DIR)/source/Atlas_2 -d ATLAS
	AUTOSEG_HOME=$(DEMO_DIR) $(VENV)/bin/autoseg_verify -d ATLAS

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) autoseg_data
