# Two entry points (see README): `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# pip finds the CPU build of torch on machines that ship it in their wheel folder; elsewhere set
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" to keep CUDA packages off a CPU box.
TORCH_PIP_ARGS ?=
# test files run on this many processes (pytest-xdist); a file's tests stay on one (shared fixtures); the files
# marked heavy start first, in the order tests/conftest.py gives them (--no-loadscope-reorder keeps it)
TEST_WORKERS ?= 2
NO_BYTECODE := /tests?/|/transformers/models/(?!(auto|bert)/)[^/]+/|/(kubernetes|moto|cfnlint)/
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export COBUY_DATA_DIR ?= $(CURDIR)/data
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export MLFLOW_ENABLE_TELEMETRY := false
# no progress bar per model MLflow downloads: noise in a run's log (a comment after the value would end up in it)
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export DO_NOT_TRACK := 1

.PHONY: install demo test benchmark dev serve clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) torch==2.13.0 uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[dev,production]'
	# SANSA builds scikit-sparse from source against SuiteSparse's headers; without them the build fails after ~15 s,
	# so it is not tried
	if [ -e /usr/include/suitesparse/cholmod.h ]; then \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[scale]' \
	  || echo "SANSA (EASE at 50k+ items) not installed: scikit-sparse did not build"; \
	else echo "SANSA (EASE at 50k+ items) not installed: it needs SuiteSparse (apt-get install libsuitesparse-dev)"; fi
	# bytecode now, once: uv installs none, and where PYTHONDONTWRITEBYTECODE is set every run would recompile
	# each imported module from source (seconds per process: dagster, pandas, transformers, mlflow); skipped:
	# what no local run imports (libraries' own tests, transformers' other architectures, kubernetes, moto)
	$(PY) -m compileall -q -j 0 -x '$(NO_BYTECODE)' $(VENV)/lib cobuy_files data_checks training serving orchestration benchmarks \
	  > /dev/null || true
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	cp infra/local/dagster.yaml $@

# Dagster mirrors a run's output through `tail -F` (1 s polls); waiting 2 s before stopping it keeps the last
# lines (the final STEP_SUCCESS, RUN_SUCCESS) on the console (dagster-io/dagster#23336)
demo: install $(DAGSTER_HOME)/dagster.yaml
	DAGSTER_COMPUTE_LOG_TAIL_WAIT_AFTER_FINISH=2 \
	  $(VENV)/bin/dg launch --job full_pipeline -m orchestration.definitions -c configs/demo.yaml
	@echo "answers: $(COBUY_DATA_DIR)/answers/latest/ (open report.html)"

test: install
	-sh tests/setup_chromium.sh  # Debian's chromium for the UI screenshot test; never fails (the test skips)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# the live service on MLflow's cobuy-serving@champion (after `make demo`: the demo's); settings: SERVE_ARGS=--help
serve: install
	$(VENV)/bin/python -m serving.service $(SERVE_ARGS)

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dg dev -m orchestration.definitions

clean:
	rm -rf $(VENV) .dagster_home data
