"""The schema-following corpus (KnowCoder's instruction tuning data): {prompt, output} samples for NER,
RE, ED and EAE.

Sources: UniversalNER / Pile-NER (NER), InstructIE (RE), LSEE (ED, EAE) and every benchmark of
`load_benchmark` (its own tasks, its whole schema as the positive classes). For each record and task
the classes shown are the record's positive classes plus `distractors` negative classes sampled from
the library, shuffled and cut into schema shards of at most `shard_size` classes; each shard is one
sample whose output holds only the annotations of its classes (`results = []` when none). EAE samples
carry the confirmed triggers of their events and are made only for shards holding an event. Sampling
is seeded by (seed, task, source, record id), so the corpus is the same however it is scheduled.
Rows: {"prompt", "output", "task", "source", "types": class names shown, "n_tokens"}.
"""
from __future__ import annotations

import random
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import pyarrow as pa
from pydantic import Field

from knowcoder_ray.codec.render import TASK_KIND, TASKS, render_output, render_prompt
from knowcoder_ray.data.benchmarks import get_benchmark
from knowcoder_ray.data.pipeline import (DEFAULT_BLOCK_BYTES, Item, ShardSpec, Transform, plan_benchmark,
                                         plan_files)
from knowcoder_ray.data.sources import (Example, TypeIndex, library_fingerprint, read_instructie, read_lsee,
                                        read_universalner)
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import SchemaLibrary, SchemaType
from knowcoder_ray.settings import Section

SCHEMA = pa.schema([("prompt", pa.string()), ("output", pa.string()), ("task", pa.string()),
                    ("source", pa.string()), ("types", pa.list_(pa.string())), ("n_tokens", pa.int64())])
READERS = {"universalner": read_universalner, "instructie": read_instructie, "lsee": read_lsee}


class Sampling(Section):
    """How classes are picked and cut into prompts (the corpus config, `FollowingConfig`, is one)."""
    seed: int = 0
    shard_size: int = Field(8, ge=1)         # classes per prompt at most
    distractors: int = Field(4, ge=0)        # negative classes sampled from the library per record and task
    tasks: tuple[Literal[TASKS], ...] = Field(TASKS, min_length=1)


def restrict(record: Record, task: str, types: dict[str, SchemaType]) -> Record:
    """The annotations of `record` for `task` whose class is among `types`; event arguments whose role
    the class does not declare are left out (the prompt shows the class signature)."""
    if task == "ner":
        return replace(record, entities=[e for e in record.entities if e.type in types], relations=[], events=[])
    if task == "re":
        return replace(record, entities=[], relations=[r for r in record.relations if r.type in types], events=[])
    events = [replace(e, arguments=tuple(a for a in e.arguments if not t.roles or t.role(a.role) is not None))
              for e in record.events if (t := types.get(e.type)) is not None]
    return replace(record, entities=[], relations=[], events=events)


class FollowingTransform(Transform):
    corpus = "following"
    schema = SCHEMA

    def __init__(self, library: SchemaLibrary, config: Sampling = Sampling()) -> None:
        self.library, self.config = library, config
        self.index = TypeIndex(library)
        self.pool = {k: sorted(library.names(k)) for k in ("entity", "relation", "event")}

    def fingerprint(self) -> dict:
        c = self.config  # "n_distractors": the name earlier corpora were hashed under
        return {"library": library_fingerprint(self.library), "seed": c.seed, "shard_size": c.shard_size,
                "n_distractors": c.distractors, "tasks": list(c.tasks)}

    def example(self, spec: ShardSpec, item: Item) -> Example:
        if spec.kind == "benchmark":
            record, schema = item.payload
            return Example(record, list(schema), _benchmark(spec.path).tasks)
        if spec.source not in READERS:
            raise ValueError(f"the following corpus has no source {spec.source!r}; known: {sorted(READERS)}")
        return READERS[spec.source](item.payload, self.index, id=item.key)

    def rows(self, spec: ShardSpec, item: Item) -> list[tuple[str, dict]]:
        ex = self.example(spec, item)
        return [(task, row) for task in ex.tasks if task in self.config.tasks for row in self.samples(task, ex)]

    def samples(self, task: str, ex: Example) -> list[dict]:
        kind, rec = TASK_KIND[task], ex.record
        positives = {t.name: t for t in ex.types if t.kind == kind}
        # every annotated class is shown, even if the source omitted it
        for x in {"ner": rec.entities, "re": rec.relations}.get(task, rec.events):
            positives.setdefault(x.type, self.index.get(kind, x.type))
        rng = random.Random(f"{self.config.seed}|{task}|{rec.source}|{rec.id}")
        shown = list(positives.values())
        pool, k = self.pool[kind], self.config.distractors
        if k and pool:
            picked = [n for n in rng.sample(pool, min(len(pool), k + len(positives))) if n not in positives]
            shown += [self.library[n] for n in picked[:k]]
        rng.shuffle(shown)
        rows = []
        for i in range(0, len(shown), self.config.shard_size):
            chunk = shown[i:i + self.config.shard_size]
            sub = restrict(rec, task, {t.name: t for t in chunk})
            triggers = [(e.type, e.trigger) for e in sub.events] if task == "eae" else []
            if task == "eae" and not triggers:
                continue
            rows.append({
                "prompt": render_prompt(task, chunk, rec.text, library=self.library, triggers=triggers),
                "output": render_output(task, sub), "task": task, "source": rec.source,
                "types": [t.name for t in chunk],
            })
        return rows

    def token_text(self, row: dict) -> str:
        return row["prompt"] + row["output"]


def parse_benchmark_arg(arg: str) -> tuple[str, str]:
    """'conll04' -> ('conll04', 'train'); 'phee:dev' -> ('phee', 'dev'); 'records:<path.jsonl>' (unified
    records) -> (arg, its only split). A benchmark without a train split needs its split named (its test
    split is evaluation data)."""
    if arg.startswith("records:"):
        return arg, _benchmark(arg).splits[0]
    name, _, split = arg.partition(":")
    splits = _benchmark(name).splits
    if not split and "train" not in splits:
        raise ValueError(f"benchmark {name!r} has no train split; name one of {splits} as {name}:<split>")
    return name, split or "train"


_benchmark = lru_cache(maxsize=64)(get_benchmark)  # a records file is parsed once per process


def plan(*, universalner: Sequence[str] = (), instructie: Sequence[str] = (), lsee: Sequence[str] = (),
         benchmarks: Sequence[str] = (), data_dir: str | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES,
         records_per_shard: int = 5_000) -> list[ShardSpec]:
    """Shard specs of the following corpus over its source files and benchmarks ('name[:split]')."""
    specs = [s for source, paths in (("universalner", universalner), ("instructie", instructie), ("lsee", lsee))
             for s in plan_files(source, paths, block_bytes)]
    if benchmarks and data_dir is None:
        raise ValueError("benchmarks need the data directory (data_dir)")
    return specs + [s for arg in benchmarks
                    for s in plan_benchmark(*parse_benchmark_arg(arg), data_dir, records_per_shard)]
