# Two commands do everything on a fresh clone: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck architecture pytest bench dist clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/microcore dev --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  # mypy --strict (pyproject) over the framework, the plugins and the tests
	$(BIN)/mypy microcore tools domains tests

architecture: $(STAMP)
	$(BIN)/microcore check
	$(BIN)/microcore context --check

pytest: $(STAMP)
	@rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	@$(BIN)/coverage combine -q
	$(BIN)/coverage report --include='$(CURDIR)/microcore/*,$(CURDIR)/tools/*'  # >= 95 % together
	$(BIN)/coverage report --include='$(CURDIR)/microcore/*' --fail-under=100  # every branch

test: lint typecheck architecture pytest

bench: $(STAMP)  # every benchmark, one table each (see bench/*.py for what each measures)
	$(BIN)/python bench/run_all.py

dist: $(STAMP)  # dist/microcore-<version>.tar.gz and the wheel `pip install` takes
	rm -rf dist build
	$(BIN)/python -m build --outdir dist

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache .pytest_cache data dist build
