# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean system

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
	$(BIN)/python -m pytest

lint: system $(STAMP)
	$(BIN)/python -m pytest tests/test_lint.py

# Every benchmark, interleaved against its baseline: bench/results.json, bench/plots/*.png,
# bench/results.md and a summary table (about 6 minutes on 2 cores).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .movedisk .pytest_cache
