"""Tiny models for CPU tests and benchmarks of the engines.

The shared factory (`knowcoder_ray.train.tiny.make_tiny_model`) initialises weights with a small spread,
so an untrained model repeats one token for every prompt: useless for checking that two decoding paths
give the same text. `make_engine_test_model` redraws the weights wider so greedy outputs differ from
prompt to prompt, and trains the tokenizer on real KnowCoder prompts (class definitions tokenize short).
"""
from __future__ import annotations

from pathlib import Path


def corpus_prompts(data_dir: str | Path, per_dataset: int = 12) -> list[str]:
    """Real prompt text (NER/RE/ED/EAE over the benchmark schemas) to train the tiny tokenizer on: each
    shard's shared head once, and the sentence part of each prompt."""
    from knowcoder_ray.codec.render import TASK_KIND
    from knowcoder_ray.data.benchmarks import load_benchmark
    from knowcoder_ray.infer.sharding import make_shard

    texts = []
    for name, tasks in (("conll04", ("ner", "re")), ("crossner_ai", ("ner",)), ("wikievents", ("ed", "eae")),
                        ("phee", ("ed", "eae"))):
        records, library = load_benchmark(name, data_dir)
        for task in tasks:
            shard = make_shard(task, library.of_kind(TASK_KIND[task])[:40], library)
            texts.append(shard.head)
            texts += [shard.prompt(r.text)[len(shard.head):] for r in records[:per_dataset]]
    return texts


def make_engine_test_model(out_dir: str | Path, data_dir: str | Path, std: float = 0.5, seed: int = 0,
                           **spec) -> Path:
    """The shared tiny model (TinySpec fields may be overridden), its weights redrawn with `std`."""
    from knowcoder_ray.train.tiny import TinySpec, make_tiny_model

    out = make_tiny_model(out_dir, corpus_prompts(data_dir), seed=seed, spec=TinySpec(**spec))
    return redraw_weights(out, out, std, seed)


def redraw_weights(src: str | Path, out_dir: str | Path, std: float = 0.5, seed: int = 0) -> Path:
    """A copy of the model folder `src` (same tokenizer and config) with weights drawn N(0, std):
    another "checkpoint" of the same model without training a tokenizer again."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    src, out = Path(src), Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(src)
    if src.resolve() != out.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("tokenizer*"):
            shutil.copy(f, out)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:  # matrices and embeddings; norms keep their ones
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    model.save_pretrained(out)
    return out


def cached_engine_test_model(base_dir: str | Path, data_dir: str | Path, name: str = "engine-tiny", seed: int = 0,
                             **spec) -> Path:
    """`make_engine_test_model` into `base_dir/name`, reused when already there (one per test session);
    another seed of the default model only redraws the weights."""
    out = Path(base_dir) / name
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    if seed != 0 and not spec:
        return redraw_weights(cached_engine_test_model(base_dir, data_dir), out, seed=seed)
    return make_engine_test_model(out, data_dir, seed=seed, **spec)


class OracleEngine:
    """A plugin engine for tests of the evaluation path (`engine: engine_helpers:OracleEngine`):
    answers each prompt with the text `<model>/oracle.json` maps it to ({"answers": {prompt: output},
    "default": output or null}); a prompt it does not know is an error unless a default is given."""

    def __init__(self, model_path, config=None) -> None:
        import json

        d = json.loads((Path(model_path) / "oracle.json").read_text())
        self.answers, self.default = d["answers"], d.get("default")

    def generate(self, prompts) -> list[str]:
        from knowcoder_ray.infer.engine import as_prompt

        out = []
        for p in prompts:
            text = as_prompt(p).text
            if text not in self.answers and self.default is None:
                raise KeyError(f"the oracle has no answer for a prompt of {len(text)} characters")
            out.append(self.answers.get(text, self.default))
        return out
