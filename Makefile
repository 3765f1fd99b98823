# `make book` builds the website into _build/html; `make test` runs every test.
# Both create .venv and install requirements.txt on first use (or when it changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed

.PHONY: book test lint lab clean

# --all: rebuild every page. An incremental build can leave references.html
# stale after a chapter gains a citation, with links into it that go nowhere.
book: $(STAMP)
	$(BIN)/jupyter-book build . -n -W --keep-going --all

# pytest-xdist runs the tests on one worker per CPU, plus one: each notebook,
# each test module and the browser tests as a whole stay on one worker, in
# order (see conftest.py), and the browser tests, which mostly wait for
# Chromium, take the extra worker.
WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadscope

# Open the chapters in JupyterLab, with the pinned environment as the kernel.
lab: $(STAMP)
	$(BIN)/jupyter lab book/

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

clean:
	rm -rf _build .pytest_cache .hypothesis
