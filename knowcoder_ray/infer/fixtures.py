"""Tiny models for CPU tests and benchmarks of the engines.

The shared factory (`knowcoder_ray.train.tiny.make_tiny_model`) initialises weights with a small spread,
so an untrained model repeats one token for every prompt: useless for checking that two decoding paths
give the same text. `make_engine_test_model` redraws the weights wider so greedy outputs differ from
prompt to prompt, and trains the tokenizer on real KnowCoder prompts (class definitions tokenize short).
"""
from __future__ import annotations

from pathlib import Path

from knowcoder_ray.codec.render import render_prompt


def corpus_prompts(data_dir: str | Path, per_dataset: int = 40) -> list[str]:
    """Real prompts (NER/RE/ED/EAE over the benchmark schemas) to train the tiny tokenizer on."""
    from knowcoder_ray.data.benchmarks import load_benchmark

    texts = []
    for name, tasks in (("conll04", ("ner", "re")), ("crossner_ai", ("ner",)), ("wikievents", ("ed", "eae")),
                        ("phee", ("ed", "eae"))):
        records, library = load_benchmark(name, data_dir)
        for task in tasks:
            kind = {"ner": "entity", "re": "relation"}.get(task, "event")
            types = library.of_kind(kind)[:40]
            for r in records[:per_dataset]:
                texts.append(render_prompt(task, types, r.text, library=library))
    return texts


def make_engine_test_model(out_dir: str | Path, data_dir: str | Path, std: float = 0.5, seed: int = 0,
                           **spec) -> Path:
    """The shared tiny model (TinySpec fields may be overridden), its weights redrawn with `std`."""
    import torch
    from transformers import AutoModelForCausalLM

    from knowcoder_ray.train.tiny import TinySpec, make_tiny_model

    out = make_tiny_model(out_dir, corpus_prompts(data_dir), seed=seed, spec=TinySpec(**spec))
    model = AutoModelForCausalLM.from_pretrained(out)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:  # matrices and embeddings; norms keep their ones
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    model.save_pretrained(out)
    return out


def cached_engine_test_model(base_dir: str | Path, data_dir: str | Path, name: str = "engine-tiny", **kwargs) -> Path:
    """`make_engine_test_model` into `base_dir/name`, reused when already there (one per test session)."""
    out = Path(base_dir) / name
    if not (out / "config.json").is_file() or not (out / "tokenizer_config.json").is_file():
        make_engine_test_model(out, data_dir, **kwargs)
    return out
