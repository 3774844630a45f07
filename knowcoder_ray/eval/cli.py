"""`knowcoder eval` (distributed benchmark evaluation), `knowcoder score` (a predictions file, no model) and
`knowcoder report` (the plotly HTML report)."""
from __future__ import annotations

import argparse
import json

from knowcoder_ray.settings import UsageError, add_set_option, load


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints on benchmarks with Ray Data; writes predictions, "
                                    "metrics and report.html")
    p.add_argument("--config", help="YAML file of EvalConfig settings; --set and the flags below override it")
    add_set_option(p)
    p.add_argument("--checkpoint", action="append", dest="checkpoints", help="model folder (repeatable)")
    p.add_argument("--dataset", action="append", dest="datasets", help="benchmark name (repeatable)")
    p.add_argument("--output-dir")
    p.add_argument("--data-dir")
    p.add_argument("--split")
    p.add_argument("--limit", type=int, help="first N sentences per dataset")
    p.add_argument("--engine", choices=["transformers", "vllm"])
    p.add_argument("--num-actors", type=int)
    p.add_argument("--num-gpus-per-actor", type=float)
    p.add_argument("--metric-mode", choices=["official", "strict"], help="mode of the summary (both are written)")
    p.add_argument("--class-names", choices=["official", "project"], help="benchmark class names (default official)")
    p.add_argument("--few-shot", type=int, help="first-k-shot prompts from the train (else dev) split")
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS or a local cluster)")
    p.set_defaults(func=_eval)

    s = sub.add_parser("score", help="score a predictions file (P/R/F1) without running a model")
    s.add_argument("predictions", help="JSON lines: {task, sentence, gold, pred} rows or an eval predictions.jsonl")
    s.add_argument("--mode", choices=["official", "strict"], default="official",
                   help="official: the released KnowCoder scorer's counting (default); strict: one-to-one")
    s.add_argument("--filter-outlier", action="store_true", help="drop outlier predictions before scoring")
    s.add_argument("--schema-types", help="comma-separated class names for --filter-outlier's type check")
    s.add_argument("--data-dir", help="benchmark data folder: eval rows of a known benchmark take its schema "
                                      "(those of a records:<file> dataset take that file's, as in evaluation)")
    s.add_argument("--per-type", action="store_true", help="also score each type")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_score)

    r = sub.add_parser("report", help="(re)write report.html of an evaluation run")
    r.add_argument("run_dir", help="the eval output folder (holds summary.json)")
    r.add_argument("--out", help="report path (default: RUN_DIR/report.html)")
    r.set_defaults(func=_report)


def _eval(args: argparse.Namespace) -> int:
    from knowcoder_ray.connect import connect
    from knowcoder_ray.eval.evaluate import EvalConfig, evaluate

    flags = {k: v for k, v in vars(args).items() if k in EvalConfig.model_fields and v is not None}
    cfg = load(EvalConfig, args.config, args.overrides, flags)
    connect(args.ray_address)
    result = evaluate(cfg)
    print(json.dumps({c["checkpoint"]: c["summary"] for c in result["checkpoints"]}, indent=2))
    print(f"wrote {cfg.output_dir}/summary.json" + (" and report.html" if cfg.report else ""))
    return 0


def _score(args: argparse.Namespace) -> int:
    from knowcoder_ray.eval.scorefile import ScoreFileError, read_rows, score_rows, table, to_json

    try:
        rows = read_rows(args.predictions)
    except (OSError, ValueError) as e:  # ScoreFileError, and a file that is not UTF-8 text
        raise UsageError(e) from None
    schemas = {}
    from knowcoder_ray import storage
    from knowcoder_ray.data.benchmarks import BENCHMARKS, get_benchmark, with_official_names
    for (_, source), (golds, _) in rows.items():
        # a known benchmark's schema (with --data-dir), or that of the records: file it names, as evaluate's
        if source not in schemas and (source in BENCHMARKS and args.data_dir or source.startswith("records:")
                                      and storage.isfile(source.partition(":")[2])):
            project = get_benchmark(source).schema(str(args.data_dir))
            used = {m.type for g in golds for m in (*g.entities, *g.relations, *g.events)}
            # the file's gold tells which class names it was written with
            names = project.names()
            schemas[source] = names if used <= set(names) else with_official_names([], project)[1].names()
    types = [t.strip() for t in args.schema_types.split(",") if t.strip()] if args.schema_types else None
    results = score_rows(rows, args.mode, args.filter_outlier, types, schemas)
    if args.json:
        print(json.dumps({"mode": args.mode, "filter_outlier": args.filter_outlier,
                          "scores": to_json(results, args.per_type)}, indent=2))
    else:
        print(f"mode: {args.mode}, filter_outlier: {args.filter_outlier}")
        print(table(results, args.per_type))
    return 0


def _report(args: argparse.Namespace) -> int:
    from knowcoder_ray.eval.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0
