"""`knowcoder parse`: read model outputs with the safe parser (never executes them)."""
from __future__ import annotations

import argparse
import json
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="parse a KnowCoder output (stdin) into JSON mentions")
    p.add_argument("--task", required=True, choices=["ner", "re", "ed", "eae"])
    p.add_argument("--types", required=True, help="comma-separated class names the prompt showed")
    p.set_defaults(func=_parse)


def _parse(args: argparse.Namespace) -> int:
    from knowcoder_ray.codec.parse import Parser

    result = Parser(args.task, [t for t in args.types.split(",") if t]).parse(sys.stdin.read())
    print(json.dumps(result.to_dict("stdin"), indent=2))
    return 0
