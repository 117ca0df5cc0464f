# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test crashtest lint bench clean system

# What pip cannot install (PostgreSQL server, plpgsql_check, python3-venv, qemu-utils):
# installed with apt when run as root, else one line saying what to install.
system:
	@scripts/setup-system

$(STAMP): pyproject.toml
	@scripts/setup-system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/movedisk demo

# The full suite: behaviour, crash and upgrade tests, and the SQL lint checks.
test: system $(STAMP)
	$(BIN)/python -m pytest -n auto

# The whole crash matrix (every crash point x every fault; `make test` runs a slice of it):
# a table of cells, and last `crash matrix: N cells, N passed, N failed`. Exit 1 if a cell failed.
CRASH_REPORT ?= .crash-matrix.jsonl
crashtest: system $(STAMP)
	@rm -f $(CRASH_REPORT)
	-MOVEDISK_CRASH_MATRIX=full MOVEDISK_CRASH_REPORT=$(CRASH_REPORT) $(BIN)/python -m pytest -q \
		-p no:cacheprovider --no-header -rN tests/crash
	@$(BIN)/python tests/crash/crash_table.py $(CRASH_REPORT)

lint: system $(STAMP)
	$(BIN)/python -m pytest tests/test_lint.py

# Every benchmark, interleaved against its baseline: bench/results.json, bench/plots/*.png,
# bench/results.md and a summary table (about 6 minutes on 2 cores).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .movedisk .pytest_cache .crash-matrix.jsonl
