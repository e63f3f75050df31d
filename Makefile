# Coarse-to-Fine Video Moment Search - course automation.
# Every target bootstraps .venv (created with the system python3) on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SANITIZE := tests/nbval_sanitize.cfg

# Reproducible numerics: the stored outputs of solutions/ are compared cell by cell (nbval), and
# float results depend on which SIMD kernels PyTorch, MKL and oneDNN pick for the CPU at hand
# (AVX-512 and AVX2 kernels round differently). Pinning every library to its AVX2 code path makes
# the outputs the same on any x86-64 CPU with AVX2 (Intel or AMD), not just on the machine that
# stored them. Override on the command line, e.g. `make course ATEN_CPU_CAPABILITY=avx512`.
export ATEN_CPU_CAPABILITY ?= avx2
export MKL_CBWR ?= AVX2
export ONEDNN_MAX_CPU_ISA ?= AVX2

.PHONY: setup course test lint unit unit-fast nbval-solutions nbval-notebooks sync notebooks solutions results lab bench clean help

help:
	@echo "make course     set up .venv and execute every solution notebook (into build/)"
	@echo "make test       lint + unit tests + nbval on solutions/ and notebooks/ + sync check"
	@echo "make unit-fast  the tests not marked slow (development)"
	@echo "make lab        JupyterLab on notebooks/"
	@echo "make notebooks  regenerate notebooks/ from solutions/"
	@echo "make solutions  re-execute solutions/ in place (authors: refresh stored outputs)"
	@echo "make results    regenerate RESULTS.md from the committed result files"
	@echo "make bench      run the benchmark scripts"

# --- environment -----------------------------------------------------------
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,notebooks,faiss-cpu]"
	@touch $(STAMP)

setup: $(STAMP)

# --- learners --------------------------------------------------------------
course: $(STAMP)
	COURSE_FAST=$${COURSE_FAST:-1} $(PY) -m course_lib.authoring.run_notebooks --src solutions --out build/solutions

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# --- tests (the README's test command is `make test`) ----------------------
test: lint unit nbval-solutions nbval-notebooks sync

lint: $(STAMP)
	$(PY) -m ruff check course_lib tests benchmarks scripts

unit: $(STAMP)
	COURSE_FAST=1 COURSE_OFFLINE=1 $(PY) -m pytest tests

unit-fast: $(STAMP)
	COURSE_FAST=1 COURSE_OFFLINE=1 $(PY) -m pytest -m "not slow" tests

nbval-solutions: $(STAMP)
	COURSE_FAST=1 COURSE_OFFLINE=1 $(PY) -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with $(SANITIZE) -p no:cacheprovider solutions

nbval-notebooks: $(STAMP)
	COURSE_FAST=1 COURSE_OFFLINE=1 $(PY) -m pytest --nbval-lax --nbval-current-env \
		-p no:cacheprovider notebooks

sync: $(STAMP)
	$(PY) -m course_lib.authoring.make_student --check

# --- authors ---------------------------------------------------------------
notebooks: $(STAMP)
	$(PY) -m course_lib.authoring.make_student

results: $(STAMP)
	$(PY) scripts/make_results.py

solutions: $(STAMP)
	COURSE_FAST=1 COURSE_OFFLINE=1 $(PY) -m course_lib.authoring.run_notebooks --inplace --src solutions

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
