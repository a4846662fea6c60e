# Two commands: `make demo` and `make test`. Both create .venv (Python 3.11,
# pinned versions from requirements.lock) when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_DIR ?= jobs/demo
# Tests run in this many pytest-xdist workers, a test file per worker at a
# time: trials spend much of their time in single-threaded start-up. Files go
# in collection order (the long CLI tests of tests/e2e first, the many short
# unit tests last), not xdist's most-tests-first, which left the long files
# with few tests to the end.
TEST_WORKERS ?= 2
PYTEST := $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile \
  --no-loadscope-reorder

.PHONY: demo test test-unit test-all clean

$(STAMP): requirements.lock setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing requirements.lock into $(VENV) (log: $(VENV)/install.log)"
	@{ $(VENV)/bin/python -m pip install -q --upgrade pip && \
	  $(VENV)/bin/python -m pip install -q -r requirements.lock && \
	  $(VENV)/bin/python -m pip install -q --no-deps -e . ; \
	} > $(VENV)/install.log 2>&1 || { tail -n 30 $(VENV)/install.log; \
	  echo "install failed: see $(VENV)/install.log"; exit 1; }
	touch $(STAMP)

# Search, full training of the best, export and report (ends with its path).
demo: $(STAMP)
	@rm -rf $(DEMO_DIR)
	$(VENV)/bin/nas-garden --mode=pipeline --job_dir=$(DEMO_DIR) \
	  --search_space=mnasnet --population_size=3 --tournament_size=3 \
	  --max_trials=5 --top_k=1 --seed=0

test: $(STAMP)
	$(PYTEST) tests

# Only the tests that import modules (minutes), not those that run the CLI.
test-unit: $(STAMP)
	$(PYTEST) tests/unit

# Also the slow matrix: a real 2-trial search for every space and task.
test-all: $(STAMP)
	$(PYTEST) tests -m "slow or not slow"

clean:
	rm -rf $(VENV) jobs *.egg-info
