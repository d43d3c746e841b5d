# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
# `make lint`: ruff (pinned in requirements.lock, configured in pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench slurm-test clean

$(STAMP): requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	touch $(STAMP)

demo: $(STAMP)
	$(PY) run_MAP.py --demo --method map $(ARGS)

# Two pytest-xdist workers: many tests wait on Ray or SLURM processes, so two workers halve
# the wall time on 2 cores. PYTEST_WORKERS=0 runs in this process. One OpenMP thread per
# process (TEST_THREADS): the demo model's ops are tiny, and a second thread in each worker
# only spins against the other worker (5 min 26 s -> 5 min 15 s on 2 cores).
PYTEST_WORKERS ?= 2
TEST_THREADS ?= 1
test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	for b in $(filter-out bench/common.py bench/mobo.py,$(wildcard bench/*.py)); do \
		$(PY) $$b || exit 1; done

# The batch scripts of scripts/slurm under a private single-node SLURM (root; installs
# Debian's slurm-wlm and munge if missing).
slurm-test: $(STAMP)
	$(PY) scripts/slurm/slurm_selftest.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
