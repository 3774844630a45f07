"""`knowcoder data understanding|following`: the two KnowCoder corpora (knowcoder_ray.data.corpora)."""
from __future__ import annotations

import argparse
import json

from knowcoder_ray.settings import UsageError, add_set_option, load, whole_number


def add_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build the schema-understanding and schema-following corpora")
    dsub = data.add_subparsers(dest="data_command", required=True)

    # flags not given stay out of the namespace: the corpus configs hold the defaults
    u = dsub.add_parser("understanding", help="definition codes of the library + instance codes from KELM",
                        argument_default=argparse.SUPPRESS)
    u.add_argument("--kelm", nargs="*", help="KELM JSON-lines files or directories (local or URI)")
    u.add_argument("--entity-types", help="entity -> P31 table, JSON lines {entity, instance_of: [...]}")
    u.add_argument("--no-definitions", dest="definitions", action="store_false", help="leave out the definition codes")
    u.add_argument("--max-group", type=int, help="children per definition-code sample")
    _common(u)

    f = dsub.add_parser("following", help="{prompt, output} samples for NER, RE, ED and EAE",
                        argument_default=argparse.SUPPRESS)
    f.add_argument("--universalner", nargs="*", help="UniversalNER / Pile-NER-type JSON files")
    f.add_argument("--instructie", nargs="*", help="InstructIE JSON / JSON-lines files")
    f.add_argument("--lsee", nargs="*", help="LSEE wiki_sentence_annotated.with_trigger.tsv files")
    f.add_argument("--benchmark", dest="benchmarks", nargs="*", metavar="NAME[:SPLIT]",
                   help="benchmarks of --data-dir (split defaults to train)")
    f.add_argument("--seed", type=int)
    f.add_argument("--shard-size", type=int, help="classes per prompt at most")
    f.add_argument("--distractors", type=int, help="negative classes per record and task")
    f.add_argument("--tasks", type=lambda s: [t for t in s.split(",") if t], help="comma-separated tasks (default all)")
    _common(f)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of the corpus settings; --set and the flags below override it")
    add_set_option(p)
    p.add_argument("--out", help="output directory or URI")
    p.add_argument("--library", help="schema library: a Parquet schema table or a directory of "
                                     "Entities.py/Relations.py/Events.py (default: the benchmark schemas)")
    p.add_argument("--data-dir", help="benchmark data directory (default: $KNOWCODER_DATA_DIR or ../shared/data)")
    p.add_argument("--format", choices=["parquet", "jsonl"])
    p.add_argument("--block-mb", type=float, help="input megabytes per shard")
    p.add_argument("--tokenizer", help="local Hugging Face tokenizer folder for exact token counts")
    p.add_argument("--executor", choices=["ray", "local"], help="ray: Ray Data on the cluster; local: this process")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--num-cpus", type=whole_number(1), help="CPUs of the local Ray cluster")
    p.add_argument("--workers", type=int, help="Ray Data actors (default: the cluster's CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace an output built with other options")
    p.add_argument("--max-shards", type=int, help="stop after this many shards (rerun to go on)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no per-shard progress lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Build; usage problems (bad inputs, an output built with other options) end with one line, not a traceback."""
    from knowcoder_ray.data import corpora
    from knowcoder_ray.data.pipeline import PipelineError

    given = {k: v for k, v in vars(args).items() if k not in ("command", "data_command", "func", "config", "overrides")}
    address, num_cpus = given.pop("address", None), given.pop("num_cpus", None)
    kind = corpora.UnderstandingConfig if args.data_command == "understanding" else corpora.FollowingConfig
    try:
        cfg = load(kind, getattr(args, "config", None), getattr(args, "overrides", []), given)
        if cfg.executor == "ray":
            from knowcoder_ray.connect import connect

            connect(address, num_cpus, log_to_driver=False)
        manifest = corpora.build_corpus(cfg)
    except (PipelineError, ValueError) as e:  # a shard's too: the pipeline raises it here (a missing file:
        raise UsageError(e) from None           # cli.main names it, as for every command)
    print(json.dumps({k: v for k, v in manifest.items() if k != "shards"}, indent=1))
    return 0
