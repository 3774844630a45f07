"""`knowcoder schema ...`: build the schema library from a Wikidata dump, convert between Parquet and .py."""
from __future__ import annotations

import argparse
import json
import sys

from knowcoder_ray.settings import UsageError, parse, whole_number


def add_commands(sub: argparse._SubParsersAction) -> None:
    schema = sub.add_parser("schema", help="schema library: build from Wikidata, convert Parquet <-> .py")
    ssub = schema.add_subparsers(dest="schema_command", required=True)

    b = ssub.add_parser("build", help="build the library from a Wikidata JSON dump (.json, .json.gz, .json.bz2)")
    b.add_argument("dump", help="dump path or s3:// / gs:// URI")
    b.add_argument("--out", required=True, help="output folder (path or URI)")
    b.add_argument("--event-root", default="Q1190554", help="event types descend from this class ('none': no events)")
    b.add_argument("--types", default="", help="keep only these types (names, Wikidata ids or labels, comma-separated) "
                                               "and their ancestors and constraint types")
    b.add_argument("--types-file", help="like --types, one per line")
    b.add_argument("--corpus", action="append", default=[], help="keep the types this Record JSONL uses (repeatable)")
    b.add_argument("--descriptions", help="TSV of descriptions to fill in (the missing_descriptions.tsv, completed)")
    b.add_argument("--max-examples", type=whole_number(0), default=5)
    b.add_argument("--max-roles", type=whole_number(0), default=8)
    b.add_argument("--min-role-support", type=float, default=0.2)
    b.add_argument("--local", action="store_true", help="plain loop in this process instead of Ray")
    b.add_argument("--ray-address", help="Ray cluster to join (default: a local one, on 127.0.0.1)")
    b.add_argument("--num-cpus", type=whole_number(1), help="CPUs for a local Ray cluster")
    b.add_argument("--parallelism", type=int, default=-1, help="read tasks (byte ranges of a plain dump)")
    b.set_defaults(func=_build)

    t = ssub.add_parser("to-py", help="render a schema Parquet table as Entities.py, Relations.py, Events.py")
    t.add_argument("parquet")
    t.add_argument("out")
    t.set_defaults(func=_to_py)

    f = ssub.add_parser("from-py", help="read Entities.py / Relations.py / Events.py (e.g. the released library, "
                                        "schema_pys/) with ast into a schema Parquet table")
    f.add_argument("src")
    f.add_argument("parquet")
    f.set_defaults(func=_from_py)


def _build(args: argparse.Namespace) -> int:
    from knowcoder_ray.storage import join, read_text
    from knowcoder_ray.schema.build import BuildConfig, BuildInputError, build_schema

    words = args.types.split(",") + (read_text(args.types_file).splitlines() if args.types_file else [])
    types = [w.strip() for w in words if w.strip()]
    config = parse(BuildConfig, dict(event_root=args.event_root, max_examples=args.max_examples,
                                     max_roles=args.max_roles, min_role_support=args.min_role_support,
                                     corpus=args.corpus, types=types if (args.types or args.types_file) else None,
                                     descriptions=args.descriptions))  # ConfigError names a bad value
    started = False
    if not args.local:
        from knowcoder_ray.connect import connect

        started = connect(args.ray_address, args.num_cpus, log_to_driver=False)
    try:
        report = build_schema(args.dump, args.out, config, use_ray=not args.local, parallelism=args.parallelism).report
    except BuildInputError as e:  # no entity in the dump, a descriptions TSV without its columns
        raise UsageError(e) from None
    finally:
        if started:
            import ray

            ray.shutdown()
    print(json.dumps(report.summary()), *report.notes, sep="\n")
    if report.malformed:
        print(f"{len(report.malformed)} malformed lines written to {join(args.out, 'malformed.jsonl')}")
    if report.truncated:  # outputs are written, but the status tells scripts the input was incomplete
        print(f"knowcoder schema build: {args.dump}: {report.truncated}", file=sys.stderr)
        return 3
    return 0


def _to_py(args: argparse.Namespace) -> int:
    from knowcoder_ray.schema import pyfile, table

    try:
        paths = pyfile.write_pyfiles(table.read_parquet(args.parquet), args.out)
    except ValueError as e:  # not Parquet, not a schema table, a bad row, a type that does not render
        raise UsageError(e) from None
    print(*paths, sep="\n")
    return 0


def _from_py(args: argparse.Namespace) -> int:
    from knowcoder_ray.schema import pyfile, table

    problems: list = []
    try:
        library = pyfile.read_pyfiles(args.src, problems)
    except (OSError, ValueError) as e:  # no schema files, unreadable folder, conflicting definitions
        raise UsageError(e) from None
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    if not len(library):
        raise UsageError(f"no class could be read under {args.src} ({len(problems)} skipped)")
    table.write_parquet(library, args.parquet)
    print(json.dumps({k: len(library.of_kind(k)) for k in ("entity", "relation", "event")}))
    return 0
