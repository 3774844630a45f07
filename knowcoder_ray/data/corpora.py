"""`build_corpus(cfg)`: the schema-understanding or schema-following corpus, built with Ray Data.

Both write sharded Parquet (or JSONL) with a manifest under `out` (a path or URI), quarantine malformed
input records with the reason, and resume an interrupted run when started again with the same settings.
"""
from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field, field_validator

from knowcoder_ray.data.benchmarks import default_data_dir
from knowcoder_ray.data.following import Sampling, parse_benchmark_arg
from knowcoder_ray.settings import Needed, Positive, PositiveFloat, Section


class CorpusConfig(Section):
    out: Needed                            # output folder or URI
    library: str | None = None             # a Parquet schema table or a folder of Entities.py/Relations.py/
                                           # Events.py; None: the benchmark classes of data_dir
    data_dir: str = Field(default_factory=default_data_dir)
    format: Literal["parquet", "jsonl"] = "parquet"
    block_mb: PositiveFloat = 16  # input megabytes per shard
    tokenizer: str | None = None           # local Hugging Face tokenizer folder for exact token counts
    executor: Literal["ray", "local"] = "ray"  # ray: Ray Data on the connected cluster; local: this process
    workers: Positive | None = None        # Ray Data actors (default: the cluster's CPUs)
    overwrite: bool = False                # replace an output built with other settings
    max_shards: Positive | None = None     # stop after this many shards (rerun to go on)
    progress: bool = True                  # a line per finished shard


class UnderstandingConfig(CorpusConfig):
    kelm: list[str] = []                   # KELM JSON-lines files or folders (local or URI)
    entity_types: str | None = None        # entity -> P31 table, JSON lines {entity, instance_of: [...]}
    definitions: bool = True               # the definition codes of the library
    max_group: Positive = 16               # children per definition-code sample


class FollowingConfig(Sampling, CorpusConfig):
    universalner: list[str] = []           # UniversalNER / Pile-NER-type JSON files
    instructie: list[str] = []             # InstructIE JSON / JSON-lines files
    lsee: list[str] = []                   # LSEE wiki_sentence_annotated.with_trigger.tsv files
    benchmarks: list[str] = []             # NAME[:SPLIT] of data_dir (split: train)

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        """An unknown benchmark, or one without a train split named bare, fails here, before any build."""
        for name in names:
            if not name.startswith("records:"):  # a records file is read (and checked) when planned
                parse_benchmark_arg(name)
        return names


def build_corpus(cfg: UnderstandingConfig | FollowingConfig) -> dict:
    """Build one corpus (on the connected Ray cluster unless `executor: local`); its manifest."""
    from knowcoder_ray.data import following, pipeline, understanding
    from knowcoder_ray.data.sources import benchmark_library
    from knowcoder_ray.schema.table import load_library

    library = load_library(cfg.library) if cfg.library else benchmark_library(cfg.data_dir)
    block_bytes = max(1, int(cfg.block_mb * (1 << 20)))
    if isinstance(cfg, UnderstandingConfig):
        transform = understanding.UnderstandingTransform(library, understanding.load_entity_types(cfg.entity_types),
                                                         cfg.max_group)
        specs = understanding.plan(library, cfg.kelm, definitions=cfg.definitions, max_group=cfg.max_group,
                                   block_bytes=block_bytes)
    else:
        transform = following.FollowingTransform(library, cfg)
        specs = following.plan(universalner=cfg.universalner, instructie=cfg.instructie, lsee=cfg.lsee,
                               benchmarks=cfg.benchmarks, data_dir=cfg.data_dir, block_bytes=block_bytes)
    if not specs:
        files = cfg.kelm if isinstance(cfg, UnderstandingConfig) else [*cfg.universalner, *cfg.instructie, *cfg.lsee]
        raise ValueError("nothing to build: " + (f"the input files hold no records ({', '.join(files)})" if files
                                                 else "give at least one input"))
    if cfg.executor == "ray":
        import ray.data

        # Ray Data's bars on a terminal; in logs, the pipeline's own line per finished shard
        ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    return pipeline.run(transform, specs, cfg.out, fmt=cfg.format, tokenizer=cfg.tokenizer, workers=cfg.workers,
                        executor=cfg.executor, overwrite=cfg.overwrite, max_shards=cfg.max_shards,
                        progress=pipeline.print_progress(transform.corpus) if cfg.progress else None)


def build_corpora(understanding: UnderstandingConfig | None = None,
                  following: FollowingConfig | None = None) -> dict[str, dict]:
    """Both KnowCoder corpora (those given); their manifests by corpus."""
    return {name: build_corpus(cfg) for name, cfg in (("understanding", understanding), ("following", following))
            if cfg is not None}
