"""One checkpoint's evaluation as one Ray Data pipeline: benchmark records -> extraction -> `predictions.jsonl`
(the metrics are computed from the file). The extraction runs in-process engines (`EngineSpec.load()`) in one
actor stage, or a `ray.data.llm` processor: stage-1 prompt rows -> processor -> per record (a groupby) stage-2
rows -> processor -> per record its line. Both merge through `run_extraction`. Rows carry their record as
JSON (gold included); the plans go to the workers once as an object ref.
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence

import pandas as pd
import ray
from ray.data.datasource import BlockBasedFileDatasink

from knowcoder_ray import storage
from knowcoder_ray.infer.extraction import PARSED, Extraction, TaskPlan, local_executor, parse_row, run_extraction
from knowcoder_ray.infer.llm import EngineSpec
from knowcoder_ray.records import Record


@functools.lru_cache(maxsize=1)
def _plans(ref) -> dict[str, list[TaskPlan]]:
    """The plans per dataset, fetched once per worker process (and evaluation)."""
    return ray.get(ref)


def record_items(data: dict[str, Sequence[Record]]) -> list[dict]:
    """The pipeline's input rows: (dataset position, index in the dataset, dataset, record JSON)."""
    return [{"pos": pos, "index": i, "dataset": name, "record": json.dumps(r.to_dict())}
            for pos, (name, records) in enumerate(data.items()) for i, r in enumerate(records)]


def prediction_line(row: dict, gold: Record, parts: list[Extraction]) -> dict:
    """The predictions.jsonl row of one record: its plans' predictions together, the gold, the raw outputs."""
    pred = Record(gold.id, gold.text, *([m for ex in parts for m in getattr(ex.record, k)]
                                        for k in ("entities", "relations", "events")), gold.source)
    line = {"dataset": row["dataset"], "id": gold.id, "text": gold.text, "prediction": pred.to_dict(),
            "gold": gold.to_dict(), "outputs": [o for ex in parts for o in ex.outputs]}
    return {"pos": int(row["pos"]), "index": int(row["index"]), "line": json.dumps(line)}


# ---- in-process engines: one actor stage ----------------------------------------------------------------

class ExtractionStage:
    """A Ray Data actor: records in, prediction lines out (prompts, generation, parsing, both event stages)."""

    def __init__(self, spec: EngineSpec, plans: list) -> None:
        self.engine = spec.load()
        self.plans_ref = plans[0]

    def __call__(self, batch: dict) -> dict:
        started = time.perf_counter()
        plans = _plans(self.plans_ref)
        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["record"]))]
        golds = [Record.from_dict(json.loads(r["record"])) for r in rows]
        # group = the row's position in this batch: record ids may repeat across datasets
        jobs = [(str(i), p, [g]) for i, (r, g) in enumerate(zip(rows, golds)) for p in plans[r["dataset"]]]
        results = run_extraction(jobs, local_executor(self.engine.generate, [p for _, p, _ in jobs]))
        lines = [prediction_line(r, g, [results[(str(i), p.key, g.id)] for p in plans[r["dataset"]]])
                 for i, (r, g) in enumerate(zip(rows, golds))]
        took = time.perf_counter() - started
        print(f"eval: {len(rows)} sentences ({', '.join(sorted({r['dataset'] for r in rows}))}) in {took:.1f} s, "
              f"{len(rows) / max(took, 1e-9):.2f} sentences/s", flush=True)  # shown by drivers that log workers
        return {k: [x[k] for x in lines] for k in ("pos", "index", "line")}


def extract_in_actors(ds, spec: EngineSpec, plans_ref, num_actors: int, records_per_batch: int, num_cpus: float,
                      num_gpus: float):
    # one block at a time per actor: a second block queued on the first ready actor would wait while others idle
    return ds.map_batches(ExtractionStage, batch_size=records_per_batch, batch_format="numpy",
                          fn_constructor_kwargs={"spec": spec, "plans": [plans_ref]},
                          compute=ray.data.ActorPoolStrategy(size=num_actors, max_tasks_in_flight_per_actor=1),
                          num_cpus=num_cpus, num_gpus=num_gpus or None)


# ---- ray.data.llm: stages around the vLLM processor -------------------------------------------------------

_CARRIED = ("pos", "index", "dataset", "record")


def stage1_rows(row: dict, plans: list) -> list[dict]:
    record = Record.from_dict(json.loads(row["record"]))
    carried = {k: row[k] for k in _CARRIED}
    return [{**carried, **_flat(r)} for p in _plans(plans[0])[row["dataset"]] for r in p.stage1_rows(record)]


def _flat(row: dict) -> dict:
    """A prompt row for Arrow: `names` as JSON (an empty list column has no type), `source` as a string."""
    return {**row, "names": json.dumps(list(row["names"])), "source": row["source"] or ""}


def _unflat(row: dict) -> dict:
    names = row["names"]
    return {**row, "names": json.loads(names) if isinstance(names, str) else list(names),
            "source": row["source"] or None, "stage": int(row["stage"]), "shard": int(row["shard"])}


def parse_rows_json(row: dict, plans: list) -> dict:
    """Parse one generated row; its parse travels as JSON (mentions are nested, often empty)."""
    plan = {p.key: p for ps in _plans(plans[0]).values() for p in ps}[row["plan"]]
    parsed = parse_row(_unflat(row), plan.library)
    return {**row, "parsed": json.dumps({k: parsed[k] for k in PARSED})}


def _replay(df, plans: list) -> tuple[dict, Record, dict, list[dict]]:
    """A record's group of executed rows run through `run_extraction` again, each stage answered with the
    group's rows of that stage: its first row, its record, the Extractions and the stage-2 rows asked for."""
    rows = [{**_unflat(r), **json.loads(r["parsed"]), "group": ""} for r in df.to_dict("records")]
    record = Record.from_dict(json.loads(rows[0]["record"]))
    asked: list[dict] = []

    def execute(batch: list[dict]) -> list[dict]:
        asked.extend(batch)
        return [r for r in rows if r["stage"] == batch[0]["stage"]]
    results = run_extraction([("", p, [record]) for p in _plans(plans[0])[rows[0]["dataset"]]], execute)
    return rows[0], record, results, [r for r in asked if r["stage"] == 2]


def stage2_rows(df, plans: list):
    """Per record (a groupby group of stage-1 rows): the stage-2 prompt rows of two-stage events."""
    out = []
    if len(df):
        first, _, _, rows = _replay(df, plans)
        out = [{**{k: first[k] for k in _CARRIED}, **_flat(r)} for r in rows]
    return pd.DataFrame(out, columns=[*_CARRIED, "plan", "record_id", "source", "task", "stage", "shard", "prompt",
                                      "prefix_chars", "names"])


def merge_record(df, plans: list):
    """Per record: all its parsed rows (both stages) -> its prediction line."""
    first, gold, results, _ = _replay(df, plans)
    return pd.DataFrame([prediction_line(first, gold, list(results.values()))])


def extract_with_processor(ds, processor, plans_ref, two_stage: bool):
    """Records -> prediction lines through a `ray.data.llm` processor (see the module docstring)."""
    refs = {"plans": [plans_ref]}
    rows = processor(ds.flat_map(stage1_rows, fn_kwargs=refs)).map(parse_rows_json, fn_kwargs=refs)
    if two_stage:
        rows = rows.materialize()  # kept in the object store: read twice below
        second = rows.groupby(["pos", "index"]).map_groups(stage2_rows, fn_kwargs=refs, batch_format="pandas")
        rows = rows.union(processor(second).map(parse_rows_json, fn_kwargs=refs))
    # records whose rows all failed to appear would go missing: evaluate() checks the line count
    return rows.groupby(["pos", "index"]).map_groups(merge_record, fn_kwargs=refs, batch_format="pandas")


def write_predictions(lines, folder: str) -> None:
    """Sorted by dataset and record: the official per-type metrics depend on the order."""
    lines.sort(["pos", "index"]).repartition(1).write_datasink(_JsonLinesSink(folder, "predictions.jsonl"))


class _JsonLinesSink(BlockBasedFileDatasink):
    """Writes the `line` column (JSON texts already), one line per row, to one file."""

    def __init__(self, folder: str, name: str) -> None:
        self.filename = name
        fs, inner = storage.filesystem(folder)  # a local folder or a bucket URI
        super().__init__(inner, filesystem=fs, file_format="jsonl", filename_provider=self)

    def get_filename_for_task(self, write_uuid, task_index) -> str:
        """The sink names its own file: the write is one task (`repartition(1)`)."""
        return self.filename

    def write_block_to_file(self, block, file) -> None:
        column = block.to_arrow().column("line").to_pylist()
        file.write("".join(x + "\n" for x in column).encode("utf-8"))
