# Every target sets itself up: the venv is created and the project installed when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Stay on loopback (DESIGN.md section 6) and run DeepSpeed on the CPU where there is no GPU.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export DS_ACCELERATOR ?= cpu
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test bench demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	unset RAY_ADDRESS; $(PY) -m pytest -q tests

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
