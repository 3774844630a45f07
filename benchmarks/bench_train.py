"""Training throughput: useful (non-pad) tokens/s of packed rows against rows padded to the maximum
length (what the official KnowCoder code does), on the real length distribution of a schema-following
corpus; and the overhead of the Ray Train loop against a bare single-process PyTorch loop running the
same steps on the same rows.

The corpus is built from ../shared/data (KnowCoder prompts and outputs for NER, RE and ED over CoNLL04,
the five CrossNER domains, MIT Restaurant and PHEE), or read from --corpus (a `knowcoder data following`
output). Model: the tiny Llama of `knowcoder model tiny` with its tokenizer trained on the corpus. Both
loops use one CPU thread (a Ray Train worker with 1 CPU gets one), the PyTorch engine (no DeepSpeed)
and the same micro-batches. Timings on this shared 2-core machine are noisy.

    python benchmarks/bench_train.py [--data-dir ../shared/data] [--steps 20] [--seq-len 2048]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)

SOURCES = [("conll04", ("ner", "re")), ("mit_restaurant", ("ner",)), ("phee", ("ed",))] + \
    [(f"crossner_{d}", ("ner",)) for d in ("ai", "literature", "music", "politics", "science")]
KIND = {"ner": "entity", "re": "relation", "ed": "event"}


def build_corpus(data_dir: str, path: Path, per_source: int) -> int:
    from knowcoder_ray.codec.render import render_output, render_prompt
    from knowcoder_ray.data.benchmarks import load_benchmark

    n = 0
    with open(path, "w") as f:
        for name, tasks in SOURCES:
            records, library = load_benchmark(name, data_dir, "test")
            for task in tasks:
                types = library.of_kind(KIND[task])
                for r in records[:per_source]:
                    prompt = render_prompt(task, types, r.text, library=library)
                    f.write(json.dumps({"prompt": prompt, "output": render_output(task, r)}) + "\n")
                    n += 1
    return n


def bare_loop(cfg, rows: list[dict], steps: int) -> list[tuple[float, int]]:
    """(seconds, useful tokens) per optimizer step of a plain single-process loop."""
    import numpy as np
    import torch

    from knowcoder_ray.train.dataset import TRAIN_COLUMNS
    from knowcoder_ray.train.engine import build_engine

    torch.set_num_threads(cfg.cpus_per_worker)
    engine = build_engine(cfg, steps, torch.device("cpu"))
    mb = cfg.micro_batch_size
    out = []
    for step in range(steps):
        t0, tokens = time.perf_counter(), 0
        for k in range(cfg.grad_accum):
            chunk = rows[(step * cfg.grad_accum + k) * mb:(step * cfg.grad_accum + k + 1) * mb]
            batch = {c: torch.from_numpy(np.stack([r[c] for r in chunk])).long() for c in TRAIN_COLUMNS}
            engine.micro_step(batch, k == cfg.grad_accum - 1)
            tokens += sum(int(r["n_tokens"]) for r in chunk)
        out.append((time.perf_counter() - t0, tokens))
    return out


def steady(per_step: list[tuple[float, int]]) -> tuple[float, float]:
    """(median seconds per step, useful tokens/s) leaving out the first (warm-up) step."""
    rest = per_step[1:] or per_step
    return statistics.median(s for s, _ in rest), sum(t for _, t in rest) / sum(s for s, _ in rest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--corpus", help="a following corpus (Parquet/JSONL, prompt/output rows) instead of building one")
    ap.add_argument("--per-source", type=int, default=150, help="records per benchmark and task")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seq-len", type=int, default=2048, help="the official cutoff is 2048")
    ap.add_argument("--micro-batch", type=int, default=2)
    args = ap.parse_args()

    import ray

    from knowcoder_ray.train.config import load_config
    from knowcoder_ray.train.dataset import prepare_dataset
    from knowcoder_ray.train.run import train
    from knowcoder_ray.train.tiny import corpus_texts, make_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    corpus = args.corpus or str(work / "following.jsonl")
    if not args.corpus:
        print(f"corpus: {build_corpus(args.data_dir, Path(corpus), args.per_source)} samples from {args.data_dir}")
    model = make_tiny_model(work / "tiny", corpus_texts(corpus), seed=0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    def config(packing: bool, name: str, **extra):
        sets = [f"model={model}", f"data.path={corpus}", f"data.seq_len={args.seq_len}", f"data.packing={packing}",
                f"output_dir={work / name}", f"storage_path={work / 'ckpt'}", f"run_name={name}",
                "deepspeed.enabled=false", "num_workers=1", f"micro_batch_size={args.micro_batch}",
                f"max_steps={args.steps}", f"save_every={args.steps}", "lr=1e-3"]
        return load_config(None, sets + [f"{k}={v}" for k, v in extra.items()], phase="sft")

    print(f"{'':28s} {'fill':>6s} {'rows':>6s} {'s/step':>8s} {'useful tok/s':>13s}")
    results = {}
    for packing in (True, False):
        cfg = config(packing, "packed" if packing else "padded")
        t0 = time.perf_counter()
        ds, summary, _ = prepare_dataset(cfg.data, cfg.model, mask_prompt=True, seed=cfg.seed)
        prep_s = time.perf_counter() - t0
        rows = ds.take(args.steps * args.micro_batch)
        t0 = time.perf_counter()
        per_step = bare_loop(cfg, rows, args.steps)
        bare_s = time.perf_counter() - t0
        results[packing] = (summary, per_step, prep_s, bare_s)
        sec, tps = steady(per_step)
        label = "packed" if packing else f"padded to {args.seq_len} (official)"
        print(f"bare loop, {label:17s} {summary.fill:6.1%} {summary.rows:6d} {sec:8.3f} {tps:13.0f}")
    packed_tps, padded_tps = steady(results[True][1])[1], steady(results[False][1])[1]
    print(f"samples {results[True][0].samples} (rejected {results[True][0].rejected}, "
          f"truncated {results[True][0].truncated}); rows to train one epoch: "
          f"packed {results[True][0].rows}, padded {results[False][0].rows} "
          f"({results[False][0].rows / results[True][0].rows:.2f}x)")
    print(f"ratio useful tokens/s packed / padded: {packed_tps / padded_tps:.2f}x")

    # the same packed steps through Ray Train (1 worker, 1 CPU), read from its per-step log
    log_file = work / "ray.jsonl"
    cfg = config(True, "ray", log_file=log_file)
    t0 = time.perf_counter()
    train(cfg)
    ray_s = time.perf_counter() - t0
    lines = [json.loads(x) for x in open(log_file)]
    ray_steps = [(x["step_s"], x["step_tokens"]) for x in lines]
    (bare_sec, bare_tps), (ray_sec, ray_tps) = steady(results[True][1]), steady(ray_steps)
    _, _, prep_s, bare_s = results[True]
    print(f"Ray Train loop, packed, {args.steps} steps: {ray_sec:.3f} s/step, {ray_tps:.0f} useful tok/s")
    print(f"ratio Ray Train / bare per step (steady state): {ray_sec / bare_sec:.2f}x")
    print(f"end to end incl. packing, worker start, checkpoint and export: Ray Train {ray_s:.1f} s, "
          f"bare {prep_s + bare_s:.1f} s (packing {prep_s:.1f} s + loop {bare_s:.1f} s): "
          f"ratio {ray_s / (prep_s + bare_s):.2f}x")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
