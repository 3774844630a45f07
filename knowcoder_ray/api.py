"""The Python front door: a model and a schema library in this process.

    from knowcoder_ray import KnowCoder
    kc = KnowCoder.load("build/demo-real/models/merged", schema="benchmarks")
    kc.extract("Barack Obama was born in Honolulu.", types=["Person", "Location"])

`extract` runs what the HTTP endpoint runs (knowcoder_ray.serve.extract) with one in-process engine and returns
the endpoint's typed results; `knowcoder extract` is the same on the command line.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside the functions: `knowcoder --help` imports this module
    from knowcoder_ray.schema.types import SchemaLibrary
    from knowcoder_ray.serve.models import TextResult


def load_schema(schema: "str | SchemaLibrary", data_dir: str | None = None) -> "SchemaLibrary":
    """A SchemaLibrary as is; "benchmarks": the classes of the benchmarks in `data_dir` (default
    $KNOWCODER_DATA_DIR, else ../shared/data), the ones the demo's corpora and evaluation use; otherwise a
    Parquet schema table or a folder of Entities.py / Relations.py / Events.py (path or URI)."""
    from knowcoder_ray.schema.types import SchemaLibrary

    if isinstance(schema, SchemaLibrary):
        return schema
    if schema == "benchmarks":
        from knowcoder_ray.data.benchmarks import default_data_dir
        from knowcoder_ray.data.sources import benchmark_library

        return benchmark_library(data_dir or default_data_dir())
    from knowcoder_ray.schema.table import load_library

    return load_library(str(schema))


@dataclass
class KnowCoder:
    """An engine (model folder or PEFT adapter folder) with the schema library it extracts against."""

    engine: object                 # knowcoder_ray.infer.engine.Engine: prompts in, texts out
    library: "SchemaLibrary"
    count: object                  # token counter for sharding (the model's tokenizer)
    model: str = ""
    shard_tokens: int = 1500       # token budget of a prompt's class definitions; larger schemas are sharded

    @classmethod
    def load(cls, model: str, schema: "str | SchemaLibrary" = "benchmarks", engine: str = "transformers",
             data_dir: str | None = None, shard_tokens: int = 1500, **engine_settings) -> "KnowCoder":
        """`model`: a model or adapter folder (path or URI); `engine_settings`: EngineConfig fields
        (max_new_tokens, batch_size, device, dtype...)."""
        from knowcoder_ray.infer.engine import check_checkpoint_folder, tokenizer_folder
        from knowcoder_ray.infer.llm import EngineSpec
        from knowcoder_ray.storage import isdir, name
        from knowcoder_ray.tokens import TokenCounter

        if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, int) or shard_tokens < 1:
            raise ValueError(f"shard_tokens: expected a whole number of at least 1, got {shard_tokens!r}")
        library = load_schema(schema, data_dir)  # the cheaper check first
        model = str(model)
        if engine in ("transformers", "vllm") and isdir(model):
            check_checkpoint_folder(model)
        spec = EngineSpec.of(engine, model, engine_settings)
        loaded = spec.load()  # the transformers engine has its tokenizer loaded already
        count = TokenCounter(getattr(loaded, "tokenizer", None) or tokenizer_folder(spec.checkpoint))
        return cls(loaded, library, count, name(model), shard_tokens)

    def extract(self, texts: str | list[str], task: str = "ner", types: list[str] | None = None,
                schema_code: str | None = None, triggers: list[list[dict]] | None = None,
                return_raw: bool = False) -> "TextResult | list[TextResult]":
        """Mentions of `types` (library names) and/or the classes of `schema_code` (class code, read with `ast`;
        else the library's types of the task's kind) in one text (one result) or a list of texts (a list).
        task: ner | re | ed | eae (`triggers`: confirmed triggers per text, eae only). ValueError names a bad
        argument."""
        from pydantic import ValidationError

        from knowcoder_ray.infer.extraction import local_executor
        from knowcoder_ray.serve.extract import RequestError, make_plan, resolve_schema, run
        from knowcoder_ray.serve.models import ExtractRequest, ExtractResponse
        from knowcoder_ray.settings import error_summary

        one = isinstance(texts, str)
        if not one and not isinstance(texts, (list, tuple)):
            raise ValueError(f"texts: expected a string or a list of strings, got {type(texts).__name__}")
        try:
            if isinstance(triggers, (list, tuple)):  # tuples are taken as lists are (the request model is strict)
                triggers = [list(t) if isinstance(t, tuple) else t for t in triggers]
            req = ExtractRequest(task=task, texts=[texts] if one else list(texts), return_raw=return_raw,
                                 types=list(types) if isinstance(types, tuple) else types,
                                 schema_code=schema_code, triggers=triggers)
        except ValidationError as e:
            raise ValueError(error_summary(e.errors(), sep="; ")) from None
        try:
            library, chosen = resolve_schema(req, self.library)
        except RequestError as e:
            raise ValueError(e.detail["error"] + (f" (line {e.detail['line']})" if e.detail.get("line") else "")) from None
        plan = make_plan(req, library, chosen, self.shard_tokens, self.count)
        body = run(req, plan, local_executor(self.engine.generate, [plan]))
        results = ExtractResponse(**body, model=self.model).results
        return results[0] if one else results


def add_commands(sub) -> None:
    from knowcoder_ray.settings import whole_number

    p = sub.add_parser("extract", help="extract from texts with a model in this process (JSON lines out)",
                       description="Texts from the arguments, else one per line of standard input; one JSON "
                                   "result per text on standard output.")
    p.add_argument("texts", nargs="*")
    p.add_argument("--model", required=True, help="model or PEFT adapter folder (path or URI)")
    p.add_argument("--schema", default="benchmarks",
                   help="`benchmarks` (the benchmark classes of --data-dir), a .parquet schema table or a "
                        "folder of Entities.py/Relations.py/Events.py")
    p.add_argument("--data-dir", help="benchmark data folder for --schema benchmarks")
    p.add_argument("--task", default="ner", choices=["ner", "re", "ed", "eae"])
    p.add_argument("--types", type=lambda v: [t.strip() for t in v.split(",") if t.strip()],
                   help="comma-separated library type names, e.g. Person,Location (default: every type of the task's kind)")
    p.add_argument("--schema-code", help="a file of your own KnowCoder class code (read, never executed)")
    p.add_argument("--engine", default="transformers")
    p.add_argument("--max-new-tokens", type=whole_number(1), default=640)
    p.set_defaults(func=_extract_cmd)


def _extract_cmd(args) -> None:
    from knowcoder_ray.settings import UsageError
    from knowcoder_ray.storage import read_text

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise UsageError("no texts (give them as arguments or on standard input)")
    code = read_text(args.schema_code) if args.schema_code else None
    try:
        kc = KnowCoder.load(args.model, args.schema, args.engine, args.data_dir, max_new_tokens=args.max_new_tokens)
        results = kc.extract(texts, args.task, args.types, code)
    except ValueError as e:
        raise UsageError(e) from None
    for r in results:
        print(json.dumps(r.model_dump(exclude_none=True), ensure_ascii=False))
