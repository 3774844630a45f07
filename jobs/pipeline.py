"""The whole KnowCoder pipeline, one phase after the other, on a local Ray cluster or under
`ray job submit --working-dir . -- python jobs/pipeline.py --config jobs/configs/tiny.yaml`:

schema slice -> corpora -> (tiny model) -> pretrain -> sft -> merge -> eval + report -> serve check.
Every phase writes its artifacts under `workdir`; `--from`/`--only` rerun part of it.
"""
import argparse
import json
import time

import corpora
import evaluate
import merge
import pretrain
import schema_build
import serve
import sft
from common import init_ray, load_config, missing_inputs_end_the_job

from knowcoder_ray import storage

PHASES = {"schema": schema_build.run, "corpora": corpora.run, "pretrain": pretrain.run, "sft": sft.run,
          "merge": merge.run, "eval": evaluate.run, "serve": serve.run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--from", dest="start", choices=list(PHASES), help="skip the phases before this one")
    parser.add_argument("--only", choices=list(PHASES), action="append", help="run just these phases")
    parser.add_argument("--check", action="store_true", help="validate the config and exit (starts nothing)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.check:
        print(f"{args.config}: config OK")
        return
    names = list(PHASES)[list(PHASES).index(args.start):] if args.start else list(PHASES)
    names = [n for n in names if (not args.only or n in args.only) and (n != "serve" or cfg.serve.enabled)]
    init_ray(cfg)
    started = time.perf_counter()
    for i, name in enumerate(names, 1):
        print(f"\n=== [{i}/{len(names)}] {name} ({time.perf_counter() - started:.0f} s elapsed) ===", flush=True)
        with missing_inputs_end_the_job():
            PHASES[name](cfg)
    print(f"\n=== pipeline done in {time.perf_counter() - started:.0f} s ===")
    summary_path = f"{cfg.artifact('eval')}/summary.json"
    if not storage.isfile(summary_path):
        return
    summary = json.loads(storage.read_text(summary_path))
    print_metrics(summary)
    print(f"report: {cfg.artifact('eval')}/report.html")


def print_metrics(summary: dict) -> None:
    """The metrics table: one row per checkpoint, one column per metric (overall F1, %)."""
    rows = [(c["checkpoint"], c["summary"]) for c in summary.get("checkpoints", [])]
    metrics = sorted({m for _, s in rows for m in s})
    print("\n" + " | ".join(["checkpoint".ljust(12), *(m.rjust(6) for m in metrics)]))
    for name, s in rows:
        print(" | ".join([name.ljust(12), *(f"{s.get(m, float('nan')):6.1f}" for m in metrics)]))


if __name__ == "__main__":
    main()
