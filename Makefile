# Two commands on a fresh machine: `make book` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The staged datasets beside the checkout, unless GPVAE_DATA_DIR is already set.
SHARED_DATA := $(abspath ../shared/data)
export GPVAE_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
# Chapters execute at smoke scale unless GPVAE_SMOKE=0.
export GPVAE_SMOKE ?= 1

# The book's build executes every chapter (_config.yml). make test's build instead renders what nbval has just
# executed: book/conftest.py stores it in CHAPTER_CACHE, and TEST_CONFIG (this config in cache mode) reads it.
CHAPTER_CACHE := _build/.jupyter_cache
TEST_CONFIG := _build/_config.test.yml
BOOK_BUILD = $(BIN)/jupyter-book build . --all -n -W --keep-going
NBVAL := --nbval-lax --nbval-sanitize-with book/sanitize.cfg --nbval-cell-timeout=1200
# One pytest-xdist worker per core, a test file (or chapter) per worker, each worker single-threaded.
WORKERS := -n auto --dist loadfile
# Debian's Chromium and its driver, for the browser test (tests/test_browser.py).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install browser test book results converged study iw park clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/python -c "import torch, torchvision, gpytorch, gpvae; print('installed: torch', torch.__version__, 'torchvision', torchvision.__version__, 'gpytorch', gpytorch.__version__)"
	touch $@

# Installs Chromium from Debian's packages, only when chromium or chromedriver is missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "browser: $$(chromium --version 2>/dev/null), $$(chromedriver --version | cut -d' ' -f1-2)"; \
	else \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# Every chapter executes once: under nbval, beside the tests in one pool of workers (the longest files first,
# tests/conftest.py), and is stored in the cache the build then renders from; then the browser test opens the
# built HTML. The pool ends with its 25 slowest items (--durations): where the suite's time goes.
test: install browser
	rm -rf $(CHAPTER_CACHE)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(WORKERS) $(NBVAL) --chapter-cache $(CHAPTER_CACHE) --durations=25 \
	  --ignore tests/test_browser.py book tests
	mkdir -p _build && sed 's/^  execute_notebooks: force$$/  execute_notebooks: cache/' _config.yml > $(TEST_CONFIG)
	grep -q 'execute_notebooks: cache' $(TEST_CONFIG)
	$(BOOK_BUILD) --config $(TEST_CONFIG)
	rm -rf $(CHAPTER_CACHE)
	$(BIN)/python -m pytest $(WORKERS) tests/test_browser.py

book: install
	$(BOOK_BUILD)
	@echo "book: $(CURDIR)/_build/html/index.html"

# The runs of record on this machine (workflow/config/cpu.yaml). First the datasets FIRST for every
# seed, one after the other (the MLP datasets, an hour of the machine each, get their seed spread
# before the conv one, which costs as much as both), then seed by seed so that every dataset and model
# has seed 0 before any has seed 1; the benchmarks (all cores, alone) come with the first seed's pass.
# Rerun to resume.
# GPU: .venv/bin/snakemake --profile workflow/profiles/gpu; cluster: --profile workflow/profiles/slurm.
SEEDS ?= 0 1 2
FIRST ?= mnist omniglot
SNAKEMAKE_CPU := $(BIN)/snakemake --profile workflow/profiles/cpu
TARGETS = $(BIN)/python -m gpvae.runs targets workflow/config/cpu.yaml
results: install
	$(foreach d,$(FIRST),$(SNAKEMAKE_CPU) -- $(foreach s,$(SEEDS),$$($(TARGETS) $(d) $(s))) &&) true
	for seed in $(SEEDS); do \
	  $(SNAKEMAKE_CPU) --config seeds=$$seed || exit $$?; \
	done
	$(SNAKEMAKE_CPU)

# The converged MNIST grid (workflow/config/converged.yaml): hours on this machine; rerun to resume.
# `make park` commits the checkpoints of unfinished runs so that a fresh clone resumes them.
converged: install
	$(BIN)/snakemake --profile workflow/profiles/converged

# The GP-RF readings study (workflow/config/study.yaml): about 4.5 CPU-hours here; rerun to resume.
study: install
	$(BIN)/snakemake --profile workflow/profiles/study

# The importance-weighted screen (workflow/config/iw.yaml): about 4.5 CPU-hours here; rerun to resume.
iw: install
	$(BIN)/snakemake --profile workflow/profiles/iw

park: install
	$(BIN)/python -m gpvae.runs park workflow/config/converged.yaml

clean:
	rm -rf _build runs
