# The README's two commands: `make run` (default recipe end to end) and `make test`.
# Both create the environment first, on a fresh clone with nothing installed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RECIPE ?= recipes/default.yaml
SMK := $(BIN)/snakemake --profile workflow/profiles/local

# Nothing is fetched from a model hub at run time.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg

.PHONY: setup run report test lint clean-runs check-results mutation

# torch==2.13.0 (CPU wheel on local disk) is pinned through constraints.txt on every pip call.
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt
	$(BIN)/pip install -q -c constraints.txt --no-deps -e .
	@# Debian sources are fetched with apt-get download, which needs package lists.
	@if command -v apt-get >/dev/null && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then \
		apt-get update -qq || echo "apt-get update failed: Debian sources need it (or use dvc pull)"; fi
	touch $@

setup: $(VENV)/.installed

run: setup
	$(SMK) --configfile $(RECIPE)
	$(SMK) --configfile $(RECIPE) --report runs/$(notdir $(basename $(RECIPE)))/report.html

# megatron-core is a GPU-cluster extra, never a CPU requirement, but its dataset code runs on CPU:
# the tests hand it what the Megatron plan generates (tests/unit/megatron_side.py). It gets its own
# venv layered over .venv (a .pth line puts .venv's packages, torch included, on its path).
MEGATRON_VENV := .venv-megatron
PURELIB := import sysconfig; print(sysconfig.get_paths()["purelib"])

$(MEGATRON_VENV)/.installed: constraints.txt $(VENV)/.installed
	$(PYTHON) -m venv $(MEGATRON_VENV)
	$(BIN)/python -c '$(PURELIB)' > "$$($(MEGATRON_VENV)/bin/python -c '$(PURELIB)')/openrecipe-venv.pth"
	$(MEGATRON_VENV)/bin/pip install -q -c constraints.txt --no-deps megatron-core==0.16.1
	touch $@

test: setup $(MEGATRON_VENV)/.installed
	@OPENRECIPE_MCORE_PYTHON=$${OPENRECIPE_MCORE_PYTHON:-$(CURDIR)/$(MEGATRON_VENV)/bin/python} \
	$(BIN)/python -m pytest -q -ra; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# Remake a committed result from scratch (a scratch copy of the project) and require every hash
# of its signed lock: make check-results RECIPE=recipes/tiny.yaml (or default, or a proxy).
check-results: setup
	$(BIN)/openrecipe check-results $(RECIPE)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/snakemake --lint --configfile recipes/tiny.yaml

# Mutation score of the modules the claims rest on (bench/mutation.py; hours on 2 cores, so not
# part of `make test` or CI). mutmut gets its own venv layered over .venv (a .pth line puts
# .venv's packages on its path), so the project's environment never carries it.
# Narrow it with MUTATION_ARGS="--only train/schedule.py --timeout 900".
MUTATION_VENV := .venv-mutation
MUTATION_ARGS ?=

$(MUTATION_VENV)/.installed: requirements-mutation.txt constraints.txt $(VENV)/.installed
	$(PYTHON) -m venv $(MUTATION_VENV)
	$(BIN)/python -c '$(PURELIB)' > "$$($(MUTATION_VENV)/bin/python -c '$(PURELIB)')/openrecipe-venv.pth"
	$(MUTATION_VENV)/bin/pip install -q -c constraints.txt -r requirements-mutation.txt
	touch $@

mutation: $(MUTATION_VENV)/.installed
	$(MUTATION_VENV)/bin/python bench/mutation.py $(MUTATION_ARGS)
