# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install, run the main job on the bundled models and data (no network)
#   make test   - create .venv, install with test extras, run `make lint`, then the test suite
#   make lint   - formatter, linter and type checker: ruff format --check, ruff check, mypy (the package)
#   make docs   - install the docs extra and build the site into build/site (mkdocs, strict)
#   make fuzz   - the command-line fuzzer at length (hypothesis; `make test` runs a short pass)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs bench clean fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/patchscope zoo
	$(BIN)/patchscope demo --out demo-report

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	$(BIN)/mkdocs build --strict -d build/site

# the command-line fuzzer at length (CI runs a few hundred cases inside `make test`)
fuzz: $(STAMP)
	PATCHSCOPE_FUZZ=long $(BIN)/python -m pytest -q tests/cli/test_fuzz.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
