"""`knowcoder eval` (distributed benchmark evaluation) and `knowcoder report` (the plotly HTML report)."""
from __future__ import annotations

import argparse
import json
import os


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints on benchmarks with Ray Data; writes predictions, "
                                    "metrics and report.html")
    p.add_argument("--config", help="YAML file of EvalConfig settings; the flags below override it")
    p.add_argument("--checkpoint", action="append", dest="checkpoints", help="model folder (repeatable)")
    p.add_argument("--dataset", action="append", dest="datasets", help="benchmark name (repeatable)")
    p.add_argument("--output-dir")
    p.add_argument("--data-dir")
    p.add_argument("--split")
    p.add_argument("--limit", type=int, help="first N sentences per dataset")
    p.add_argument("--engine", choices=["transformers", "vllm"])
    p.add_argument("--num-actors", type=int)
    p.add_argument("--num-gpus-per-actor", type=float)
    p.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS or a local cluster)")
    p.set_defaults(func=_eval)

    r = sub.add_parser("report", help="(re)write report.html of an evaluation run")
    r.add_argument("run_dir", help="the eval output folder (holds summary.json)")
    r.add_argument("--out", help="report path (default: RUN_DIR/report.html)")
    r.set_defaults(func=_report)


def _eval(args: argparse.Namespace) -> int:
    from knowcoder_ray.eval.evaluate import EvalConfig, evaluate

    settings: dict = {}
    if args.config:
        import yaml
        with open(args.config) as f:
            settings = yaml.safe_load(f) or {}
    for key in ("checkpoints", "datasets", "output_dir", "data_dir", "split", "limit", "engine", "num_actors",
                "num_gpus_per_actor"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    cfg = EvalConfig.from_dict(settings)

    # a local cluster stays on loopback (DESIGN.md section 6)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    if not ray.is_initialized():
        ray.init(address=args.ray_address or os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    result = evaluate(cfg)
    print(json.dumps({c["checkpoint"]: c["summary"] for c in result["checkpoints"]}, indent=2))
    print(f"wrote {cfg.output_dir}/summary.json" + (" and report.html" if cfg.report else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from knowcoder_ray.eval.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0
