# The README's two commands:  make demo  (round A at the demo preset on CPU)  and  make test.
# Both create .venv and install the pinned dependencies themselves (torch==2.13.0: a CPU build
# where one is on disk; never an unpinned torch).
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
ROUND ?= round_a
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-fast plan lint clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup  ## run round A (default preset: demo, CPU) from data generation to the report
	$(BIN)/snakemake --cores $(CORES) $(ROUND)
	@echo "report: results/$(ROUND)/report.html"

test: setup  ## the whole test suite (slow tests included), as CI runs it
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/pytest -ra

test-fast: setup  ## unit tests only
	$(BIN)/pytest -ra -m "not slow"

plan: setup
	$(BIN)/physweep plan $(ROUND)

clean-results:
	rm -rf results .snakemake
