"""Training throughput: useful (non-pad) tokens/s of packed rows against one sample a row, padded (the
training pass here stops after a micro-batch's last labelled token, and computes logits only where the
loss needs them), and against the official KnowCoder step on the same padded rows (pretraining rows 2,048
wide, SFT one sample a pass, logits everywhere), on the real length
distributions of a schema-following corpus (SFT, prompt masked) and a schema-understanding corpus
(pretraining: short instance codes and definition codes); and the overhead of the Ray Train loop against a bare single-process PyTorch loop
running the same steps on the same rows.

The following corpus is built from ../shared/data (KnowCoder prompts and outputs for NER, RE and ED over
CoNLL04, the five CrossNER domains, MIT Restaurant and PHEE), or read from --corpus (a `knowcoder data
following` output); the understanding corpus holds the instance codes (the layout KELM lines give) of the
CoNLL04 and NYT test records and the definition codes of their schema libraries. Model: the tiny Llama
of `knowcoder model tiny` with its tokenizer trained on both corpora. Both loops use one CPU thread (a Ray
Train worker with 1 CPU gets one), DeepSpeed at stage 0 (plain data parallelism) and the same micro-batches. Timings on this shared 2-core machine are noisy.

    python benchmarks/bench_train.py [--data-dir ../shared/data] [--steps 20] [--seq-len 2048]
"""
from __future__ import annotations

import argparse
import json
import logging
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


def build_corpus(data_dir: str, path: Path, per_source: int) -> int:
    from knowcoder_ray.codec.render import TASK_KIND, render_output, render_prompt
    from knowcoder_ray.data.benchmarks import load_benchmark

    n = 0
    with open(path, "w") as f:
        for name, tasks in SOURCES:
            records, library = load_benchmark(name, data_dir, "test")
            for task in tasks:
                types = library.of_kind(TASK_KIND[task])
                for r in records[:per_source]:
                    prompt = render_prompt(task, types, r.text, library=library)
                    f.write(json.dumps({"prompt": prompt, "output": render_output(task, r)}) + "\n")
                    n += 1
    return n


def build_understanding(data_dir: str, path: Path, per_source: int) -> int:
    """Instance codes of real records (what `knowcoder data understanding` writes for KELM lines) and
    definition codes of their libraries, as {"text"} rows."""
    from knowcoder_ray.data.benchmarks import load_benchmark
    from knowcoder_ray.data.understanding import definition_code, definition_groups, instance_codes

    n = 0
    with open(path, "w") as f:
        for name in ("conll04", "nyt"):
            records, library = load_benchmark(name, data_dir, "test")
            texts = [code for r in records[:per_source] for _, code in instance_codes(r)]
            texts += [definition_code(g, library) for g in definition_groups(library)]
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
            n += len(texts)
    return n


def official_step(engine, batch: dict, width: int | None) -> None:
    """The official KnowCoder step on one-sample-a-row padding, with HF's label loss (the whole
    vocabulary's logits at every position): pretraining rows `width` tokens wide (pretrain/feeder.py pads
    every text to max_seq_len) under an attention mask; SFT (width None) one sample a forward pass, cut
    to its length (sft/scripts/train.sh: per-device batch 1, gradients accumulated)."""
    import torch

    rows = [(batch["input_ids"][r:r + 1, :n], batch["labels"][r:r + 1, :n]) for r, n in enumerate(batch["n_real"])]
    if width:
        mask = (torch.arange(width)[None, :] < torch.tensor(batch["n_real"])[:, None]).long()
        rows = [(batch["input_ids"][:, :width], batch["labels"][:, :width], mask)]
    for ids, labels, *mask in rows:
        loss = engine(input_ids=ids, attention_mask=mask[0] if mask else None, labels=labels,
                             use_cache=False).loss
        engine.backward(loss / len(rows))  # accumulated: one update after the last row
    engine.step()  # clips, updates and zeroes the gradients


def bare_steps(cfg, rows: list[dict], steps: int, official_width: int | None | bool = False):
    """A plain single-process loop (no Ray Train) over `rows`: yields (wall s, CPU s, useful tokens) per
    optimizer step; with `official_width` (not False) the official step instead (see official_step).
    The engine is built before the first step is asked for."""
    import numpy as np
    import torch

    from knowcoder_ray.train.dataset import TRAIN_COLUMNS
    from knowcoder_ray.train.engine import build_engine, micro_step

    torch.set_num_threads(cfg.cpus_per_worker)
    engine = build_engine(cfg, steps, torch.device("cpu"))
    mb, ga = cfg.micro_batch_size, cfg.grad_accum

    def run():
        for step in range(steps):
            t0, c0, tokens = time.perf_counter(), time.process_time(), 0
            for k in range(ga):
                chunk = rows[(step * ga + k) * mb:(step * ga + k + 1) * mb]
                batch = {c: torch.from_numpy(np.stack([r[c] for r in chunk])).long() for c in TRAIN_COLUMNS}
                if official_width is False:
                    micro_step(engine, batch)
                else:
                    official_step(engine, {**batch, "n_real": [int(r["n_tokens"]) for r in chunk]}, official_width)
                tokens += sum(int(r["n_tokens"]) for r in chunk)
            yield time.perf_counter() - t0, time.process_time() - c0, tokens
    return run()


def interleaved(*loops) -> list[list[tuple]]:
    """Run the loops step by step in turn, so each sees the same load on a shared machine."""
    out = [[] for _ in loops]
    for steps in zip(*loops):
        for o, s in zip(out, steps):
            o.append(s)
    return out


def steady(per_step: list[tuple], warmup: int = 1) -> dict:
    """Medians over steps (robust to load spikes on a shared machine) of wall and CPU seconds per step
    and of useful tokens per wall and per CPU second, leaving out the first (warm-up) steps."""
    rest = per_step[warmup:] or per_step
    med = statistics.median
    return {"wall": med(s[0] for s in rest), "cpu": med(s[1] for s in rest),
            "tps": med(s[2] / s[0] for s in rest), "tpc": med(s[2] / s[1] for s in rest)}


def row(label: str, st: dict) -> str:
    return f"{label:40s} {st['wall']:8.3f} {st['cpu']:8.3f} {st['tps']:10.0f} {st['tpc']:12.0f}"


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
    import ray.data

    from knowcoder_ray.train.config import load_config
    from knowcoder_ray.train.dataset import prepare_dataset
    from knowcoder_ray.train.run import train
    from knowcoder_ray.train.tiny import corpus_texts, make_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    corpus = args.corpus or str(work / "following.jsonl")
    if not args.corpus:
        print(f"following corpus: {build_corpus(args.data_dir, Path(corpus), args.per_source)} samples from {args.data_dir}")
    understanding = str(work / "understanding.jsonl")
    print(f"understanding corpus: {build_understanding(args.data_dir, Path(understanding), 4 * args.per_source)} "
          f"samples from {args.data_dir}")
    model = make_tiny_model(work / "tiny", corpus_texts(corpus) + corpus_texts(understanding), seed=0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    def config(packing: bool, name: str, path: str = corpus, phase: str = "sft", **extra):
        sets = [f"model={model}", f"data.path={path}", f"data.seq_len={args.seq_len}", f"data.packing={packing}",
                f"output_dir={work / name}", f"storage_path={work / 'ckpt'}", f"run_name={name}",
                "deepspeed.stage=0", "num_workers=1", f"micro_batch_size={args.micro_batch}",
                f"max_steps={args.steps}", f"save_every={args.steps}", "lr=1e-3"]
        return load_config(None, sets + [f"{k}={v}" for k, v in extra.items()], phase=phase)

    header = f"{'':40s} {'s/step':>8s} {'cpu/step':>8s} {'tok/s':>10s} {'tok/cpu-s':>12s}"
    ratios = {}
    for label, path, phase in (("following", corpus, "sft"), ("understanding", understanding, "pretrain")):
        data, rows = {}, {}
        for packing in (True, False):
            cfg = config(packing, f"{label}-{'packed' if packing else 'padded'}", path, phase)
            t0 = time.perf_counter()
            ds, summary, _ = prepare_dataset(cfg.data, cfg.model, mask_prompt=phase == "sft", seed=cfg.seed)
            data[packing] = (cfg, summary, time.perf_counter() - t0)
            rows[packing] = ds.take(args.steps * args.micro_batch)
        (cfg_p, sum_p, prep), (cfg_u, sum_u, _) = data[True], data[False]
        if label == "following":
            prep_s, following_rows = prep, rows[True]
        print(f"\n{label} corpus: samples {sum_p.samples} (rejected {sum_p.rejected}, truncated {sum_p.truncated}); "
              f"rows of {args.seq_len} tokens for one epoch: packed {sum_p.rows} (fill {sum_p.fill:.1%}), "
              f"padded {sum_u.rows} (fill {sum_u.fill:.1%}): {sum_u.rows / sum_p.rows:.2f}x the rows")
        width = args.seq_len if phase == "pretrain" else None  # the official rows (see official_step)
        packed, padded, official = interleaved(bare_steps(cfg_p, rows[True], args.steps),
                                               bare_steps(cfg_u, rows[False], args.steps),
                                               bare_steps(cfg_u, rows[False], args.steps, official_width=width))
        print(f"useful (non-pad) tokens, micro-batch {args.micro_batch} rows, {args.steps} steps, 1 thread\n{header}")
        sp, su, so = steady(packed), steady(padded), steady(official)
        fill = {k: sum(int(r["n_tokens"]) for r in v) / (len(v) * args.seq_len) for k, v in rows.items()}
        print(row(f"bare loop, packed (fill {fill[True]:.0%})", sp))
        print(row(f"bare loop, padded (fill {fill[False]:.0%})", su))
        print(row(f"official step, {f'rows {width} wide' if width else 'one sample a pass'}", so))
        # a pass stops after the last labelled token of its micro-batch, so padded rows cost their batch's longest
        passed = {k: sum(len(v[i:i + args.micro_batch]) * max(int(r["n_tokens"]) for r in v[i:i + args.micro_batch])
                         for i in range(0, len(v), args.micro_batch)) / sum(int(r["n_tokens"]) for r in v)
                  for k, v in rows.items()}
        print(f"positions a pass computes per useful token: packed {passed[True]:.2f}, padded {passed[False]:.2f} "
              f"(padding left out of the pass)")
        ratios[label] = (sp["tps"] / su["tps"], sp["tpc"] / su["tpc"], sp["tps"] / so["tps"], sp["tpc"] / so["tpc"])
        print(f"ratio packed / padded ({label}): useful tokens/s {ratios[label][0]:.2f}x, "
              f"per CPU second {ratios[label][1]:.2f}x; packed / official step: {ratios[label][2]:.2f}x, "
              f"per CPU second {ratios[label][3]:.2f}x")
        if label == "following":
            following = (cfg_p, packed)
    print("\npacked / padded useful tokens/s: " + ", ".join(
        f"{k} {w:.2f}x (per CPU second {c:.2f}x)" for k, (w, c, _, _) in ratios.items()))
    print("packed / official step useful tokens/s: " + ", ".join(
        f"{k} {w:.2f}x (per CPU second {c:.2f}x)" for k, (_, _, w, c) in ratios.items()))
    cfg_p, packed = following
    rows = {True: following_rows}

    # the same packed steps through Ray Train (1 worker, 1 CPU, its per-step log), bracketed by two bare runs
    log_file = work / "ray.jsonl"
    ray_timings = train(config(True, "ray", log_file=log_file)).timings
    ray_fit_s = ray_timings["fit"]
    t0 = time.perf_counter()
    after = list(bare_steps(cfg_p, rows[True], args.steps))
    bare_s = time.perf_counter() - t0
    ray_steps = [(x["step_s"], x["step_cpu_s"], x["step_tokens"]) for x in map(json.loads, open(log_file))]
    sb, sr = steady(packed[1:] + after[1:], warmup=0), steady(ray_steps)
    print(f"\nRay Train loop vs bare loop, the same {args.steps} packed steps (following corpus)\n{header}")
    print(row("bare loop (before and after)", sb))
    print(row("Ray Train loop (1 worker)", sr))
    print(f"ratio Ray Train / bare per step: wall {sr['wall'] / sb['wall']:.2f}x, CPU {sr['cpu'] / sb['cpu']:.2f}x")
    print(f"whole run after packing: Ray Train {ray_fit_s:.1f} s (worker start, model load, steps, checkpoint, "
          f"export) vs bare {bare_s:.1f} s (model load, steps): ratio {ray_fit_s / bare_s:.2f}x, "
          f"fixed cost {ray_fit_s - bare_s:.1f} s; packing the corpus with Ray Data took {prep_s:.1f} s (cold)")
    print("Ray Train fit phases, s: " + ", ".join(f"{k} {v:.1f}" for k, v in ray_timings["fit_phases"].items())
          + " (start: workers and data split; load: model; save: checkpoint and export; report: persist, shutdown)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
