# Two entry points: `make demo` runs the pipeline on the embedded demo data set,
# `make test` runs the test suite. Each creates the virtual environment when missing.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.pasm-installed

.PHONY: demo test test-fast gpu-check lint format env clean-results

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision first, pinned: these exact wheels are cached locally on our machines.
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) results/demo/round3/metrics.json

# The Python code as ruff wants it, the rule files as Snakemake's linter and snakefmt want them
# (CI runs this before the tests); `make format` rewrites both into that form.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --lint --workflow-profile none
	$(BIN)/snakefmt --check workflow/

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt workflow/

# Every test (CI), or the ones that need no Snakemake run (a minute or two).
test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not workflow"

# Is pasm healthy on this GPU machine: the CUDA tests, one Snakemake run with profiles/gpu and the
# benchmarks against their floors (at most ~8 minutes), summarised in results/gpu_check.json; exits
# non-zero if a step failed or a threshold was missed. Without CUDA it runs in a CPU mode
# (docs/operations.md, "Checking a GPU machine").
gpu-check: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python benchmarks/gpu_check.py

clean-results:
	rm -rf results data/demo .snakemake
