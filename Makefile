# The two commands of the README. Each creates .venv and installs the project into it
# (once; again only when pyproject.toml changes), then runs.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: sweep test test-thorough install bench clean

sweep: $(STAMP)   ## the main job: the default sweep, writes reports/index.html
	$(VENV)/bin/gradcheck sweep

test: $(STAMP)    ## the whole test suite (pytest's "no tests collected", exit 5, counts as a failure)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

test-thorough: $(STAMP)   ## on demand (not CI): the suite with the random `thorough` Hypothesis profile, 200 examples per cell
	$(PY) -m pytest -n 2 --hypothesis-profile=thorough $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

install: $(STAMP)

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch is pinned in the `torch` extra to the CPU build that ships on this machine
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,all]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

bench: $(STAMP)   ## benchmarks, on demand (not part of CI)
	$(PY) benchmarks/bench_check.py

clean:
	rm -rf $(VENV) reports/*.html reports/*.json reports/*.xml
