# The two commands of the README. Each creates .venv and installs into it what it needs (once;
# again only when pyproject.toml changes), then runs: `make sweep` the core dependencies only,
# `make test` also the extras the tests use (frameworks, playwright, xdist, ...).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
SUM     := $(shell cksum pyproject.toml | cut -d' ' -f1)
CORE    := $(VENV)/.installed-core-$(SUM)
ALL     := $(VENV)/.installed-all-$(SUM)
PIP     := $(PY) -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: sweep test test-thorough lint install bench docs clean

sweep: $(CORE)   ## the main job: the default sweep, writes reports/index.html
	$(VENV)/bin/gradcheck sweep

test: $(ALL)     ## the whole test suite (pytest's "no tests collected", exit 5, counts as a failure)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

test-thorough: $(ALL)   ## on demand (not CI): the suite with the random `thorough` Hypothesis profile, 200 examples per cell
	$(PY) -m pytest -n 2 --hypothesis-profile=thorough $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: $(ALL)     ## ruff (rules in pyproject.toml) and mypy; .ci/run runs it before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

install: $(ALL)

# core dependencies only (what the sweep needs); a stamp per pyproject.toml checksum
$(CORE):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	rm -f $(VENV)/.installed-core-*
	touch $(CORE)

# everything the tests need; torch is pinned in the `torch` extra to the CPU build that ships here
$(ALL):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[dev,all]"
	rm -f $(VENV)/.installed-*
	touch $(CORE) $(ALL)

bench: $(ALL)   ## benchmarks, on demand (not part of CI)
	$(PY) benchmarks/bench_check.py

docs: $(ALL)    ## the documentation site (API reference from the docstrings) into site/, offline; warnings are errors
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) reports/*.html reports/*.json reports/*.xml
