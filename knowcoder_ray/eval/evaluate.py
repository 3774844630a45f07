"""Distributed benchmark evaluation with Ray Data.

benchmark files -> records -> prompt rows (one per record, task and schema shard; every checkpoint) ->
engine actors (`map_batches` with an actor class, a fixed pool, `num_gpus` per actor on a cluster) ->
parse tasks -> merge per record (two-stage events run a second pass) -> official metrics overall, per
dataset and per type -> `<output_dir>/<checkpoint>/predictions.jsonl` + `metrics.json`, a `summary.json`
over all checkpoints and the plotly `report.html`.

All checkpoints are evaluated in one run: rows carry their checkpoint, sorted so that each batch holds
one model and one schema shard; an actor keeps the models it was asked for (LRU, `max_loaded_models`),
and with vLLM, PEFT adapters of one base are served by one engine as LoRA requests.
"""
from __future__ import annotations

import io
import json
import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from knowcoder_ray import storage
from knowcoder_ray.codec.render import Layout
from knowcoder_ray.eval.metrics import METRICS, MODES, Score, score, summary
from knowcoder_ray.infer.extraction import Executor, Extraction, TaskPlan, parse_row, run_extraction
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import SchemaLibrary


@dataclass
class EvalConfig:
    checkpoints: list[str]                      # model folders or PEFT adapter folders, in plot order
    datasets: list[str]                         # BENCHMARKS names, or records:<path.jsonl> (get_benchmark)
    output_dir: str = "runs/eval"
    data_dir: str = "../shared/data"
    split: str = "test"
    limit: int | None = None                    # first N sentences of each dataset (None: all)
    tasks: list[str] | None = None              # benchmark tasks to run and score (None: all a benchmark has)
    labels: list[str] | None = None             # checkpoint names in outputs (default: folder names)
    engine: str = "transformers"                # transformers | vllm
    engine_config: dict = field(default_factory=dict)   # EngineConfig fields (max_new_tokens, batch_size...)
    vllm: dict = field(default_factory=dict)    # VLLMEngine options (tensor_parallel_size, gpu_memory_utilization...)
    num_actors: int = 1                         # engine actor pool size
    num_gpus_per_actor: float = 0.0             # 1 on a GPU cluster; vLLM tensor parallel: its tensor_parallel_size,
                                                # so the actor holds every GPU its engine's workers use
    num_cpus_per_actor: float = 1.0
    max_loaded_models: int = 1                  # models an actor keeps loaded at once
    rows_per_batch: int = 32                    # Ray Data batch size for the engine stage
    shard_tokens: int = 3000                    # token budget of a prompt head (instruction + classes)
    filter_outlier: bool = True                 # the official filter_outlier option
    metric_mode: str = "official"               # official | strict: the mode of `summary`; metrics.json has both
    class_names: str = "official"               # official (the released evaluation's class names) | project
    few_shot: int = 0                           # first-k-shot prompts: k annotated train (else dev) records
    layout: dict = field(default_factory=dict)  # codec Layout options (escape, relation_entity_classes);
                                                # default: the released prompt layout
    wikidata_upper: bool = False                # NER: a predicted ancestor type of the gold type counts
    report: bool = True                         # also write report.html

    @classmethod
    def from_dict(cls, d: dict) -> "EvalConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown eval settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        missing = [k for k in ("checkpoints", "datasets") if not d.get(k)]
        if missing:
            raise ValueError(f"eval config needs {missing}")
        bad_layout = set(d.get("layout") or {}) - set(Layout.__dataclass_fields__)
        if bad_layout:
            raise ValueError(f"unknown layout options {sorted(bad_layout)}; known: {sorted(Layout.__dataclass_fields__)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "EvalConfig":
        import yaml

        data = yaml.safe_load(storage.read_text(str(path))) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of eval settings, got {type(data).__name__}")
        return cls.from_dict(data)

    def checkpoint_labels(self) -> list[str]:
        if self.labels is not None:
            if len(self.labels) != len(self.checkpoints) or len(set(self.labels)) != len(self.labels):
                raise ValueError("labels must name each checkpoint once")
            return list(self.labels)
        out: list[str] = []
        for c in self.checkpoints:
            name = storage.name(c) or "model"
            label, k = name, 2
            while label in out:
                label, k = f"{name}-{k}", k + 1
            out.append(label)
        return out


def benchmark_tasks(cfg: EvalConfig, name: str) -> tuple[str, ...]:
    """The tasks of benchmark `name` this run evaluates: all it has, or those of `cfg.tasks`."""
    from knowcoder_ray.data.benchmarks import get_benchmark

    tasks = get_benchmark(name).tasks
    return tasks if cfg.tasks is None else tuple(t for t in tasks if t in cfg.tasks)


def plan_tasks(benchmark_tasks: tuple[str, ...]) -> list[str]:
    """Benchmark tasks -> extraction plans: NER and RE run apart; ED+EAE run as two-stage events."""
    out = [t for t in benchmark_tasks if t in ("ner", "re")]
    if "eae" in benchmark_tasks:
        out.append("ee")
    elif "ed" in benchmark_tasks:
        out.append("ed")
    return out


# ---- the Ray stages --------------------------------------------------------------------------------------

class EngineActor:
    """A Ray Data actor: generates the `output` column for a batch of prompt rows."""

    def __init__(self, kind: str, engine_config: dict, vllm_options: dict, checkpoints: dict[str, str],
                 max_loaded_models: int = 1) -> None:
        from knowcoder_ray.infer.engine import EngineConfig

        self.kind, self.vllm_options, self.checkpoints = kind, vllm_options, checkpoints
        self.engine_config = EngineConfig.from_dict(engine_config)
        self.max_loaded = max(1, max_loaded_models)
        self.engines: OrderedDict[str, object] = OrderedDict()
        if kind == "vllm":  # one base engine serves every adapter of that base: LoRA on when any is one
            from knowcoder_ray.infer.engine import adapter_base
            if any(adapter_base(p) for p in checkpoints.values()):
                self.vllm_options = {"enable_lora": True, **vllm_options}

    def _engine(self, label: str):
        """(engine, adapter path or None). vLLM serves an adapter folder as a LoRA request on its base."""
        from knowcoder_ray.infer.engine import adapter_base, load_engine

        path = self.checkpoints[label]
        adapter = None
        model = path
        if self.kind == "vllm" and adapter_base(path):
            model, adapter = adapter_base(path), path
        if model not in self.engines:
            while len(self.engines) >= self.max_loaded:
                self.engines.popitem(last=False)
            opts = self.vllm_options if self.kind == "vllm" else {}
            self.engines[model] = load_engine(self.kind, model, self.engine_config, **opts)
        self.engines.move_to_end(model)
        return self.engines[model], adapter

    def __call__(self, batch):
        from knowcoder_ray.infer.engine import Prompt

        outputs = [""] * len(batch)
        for label, idx in batch.groupby("group", sort=False).indices.items():
            engine, adapter = self._engine(label)
            prompts = [Prompt(batch["prompt"].iat[i], int(batch["prefix_chars"].iat[i])) for i in idx]
            texts = engine.generate(prompts) if adapter is None else engine.generate(prompts, adapter=adapter)
            for i, t in zip(idx, texts):
                outputs[i] = t
        batch["output"] = outputs
        return batch


_LIBRARIES: dict[str, dict[str, SchemaLibrary]] = {}  # per worker process: built once per run


def parse_batch(batch, libraries: list):
    """A Ray Data task: parse each output against its prompt's classes; mentions travel as JSON.
    `libraries` holds one object ref to {plan key: library rows}: fetched and built once per worker
    process (a full library has tens of thousands of types), not once per batch."""
    import pandas as pd
    import ray

    ref = libraries[0]
    libs = _LIBRARIES.get(ref.hex())
    if libs is None:
        libs = {k: SchemaLibrary.from_rows(v) for k, v in ray.get(ref).items()}
        _LIBRARIES.clear()
        _LIBRARIES[ref.hex()] = libs
    rows = []
    for row in batch.to_dict("records"):
        row["names"] = [str(n) for n in row["names"]]
        parsed = parse_row(row, libs[row["plan"]])
        rows.append({**row, "parsed": json.dumps({k: parsed[k] for k in
                                                   ("entities", "relations", "events", "errors", "hallucinated",
                                                    "truncated")})})
    return pd.DataFrame(rows, columns=[*batch.columns, "parsed"])


def ray_executor(cfg: EvalConfig, plans: list[TaskPlan], checkpoints: dict[str, str]) -> Executor:
    """Runs rows through a Ray Data pipeline: engine actor pool, then parse tasks."""
    import ray

    libraries = [ray.put({p.key: p.library.to_rows() for p in plans})]  # a list: Ray passes the ref as is

    def execute(rows: list[dict]) -> list[dict]:
        # batches that share a model and a schema shard reuse the loaded model and the prefix cache
        rows = sorted(rows, key=lambda r: (r["group"], r["plan"], r["stage"], r["shard"]))
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / cfg.rows_per_batch)))
        ds = ds.map_batches(
            EngineActor, batch_format="pandas", batch_size=cfg.rows_per_batch,
            fn_constructor_kwargs={"kind": cfg.engine, "engine_config": cfg.engine_config,
                                   "vllm_options": cfg.vllm, "checkpoints": checkpoints,
                                   "max_loaded_models": cfg.max_loaded_models},
            compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
            num_gpus=cfg.num_gpus_per_actor or None, num_cpus=cfg.num_cpus_per_actor)
        ds = ds.map_batches(parse_batch, batch_format="pandas", fn_kwargs={"libraries": libraries})
        out = []
        for row in ds.iter_rows():
            row = dict(row)
            row.update(json.loads(row.pop("parsed")))
            row["names"] = list(row["names"])
            out.append(row)
        if len(out) != len(rows):
            raise RuntimeError(f"the Ray pipeline returned {len(out)} rows for {len(rows)} prompts")
        return out
    return execute


# ---- the run ---------------------------------------------------------------------------------------------

def _token_counter(checkpoint: str):
    from transformers import AutoTokenizer

    from knowcoder_ray.infer.engine import adapter_base
    from knowcoder_ray.infer.sharding import token_counter

    path = checkpoint
    if adapter_base(checkpoint) and not storage.isfile(storage.join(checkpoint, "tokenizer_config.json")):
        path = adapter_base(checkpoint)
    return token_counter(AutoTokenizer.from_pretrained(storage.local_copy(path)))


def parse_stats(extractions: list[Extraction]) -> dict:
    outs = [o for ex in extractions for o in ex.outputs]
    return {"prompts": len(outs), "outputs_with_errors": sum(bool(o["errors"]) for o in outs),
            "errors": sum(len(o["errors"]) for o in outs), "hallucinated": sum(len(o["hallucinated"]) for o in outs),
            "truncated": sum(bool(o["truncated"]) for o in outs)}


def evaluate(cfg: EvalConfig, execute: Executor | None = None) -> dict:
    """Evaluate every checkpoint on every dataset; returns the summary written to summary.json."""
    from knowcoder_ray.data.benchmarks import few_shot_records, load_benchmark

    labels = cfg.checkpoint_labels()
    # local folders made absolute (actors run elsewhere); URIs as given, fetched by each node's cache
    checkpoints = dict(zip(labels, (c if storage.is_uri(c) else os.path.abspath(c) for c in cfg.checkpoints)))
    for label, path in checkpoints.items():
        if not storage.isdir(path):
            raise FileNotFoundError(f"checkpoint {label!r}: no model folder at {path}")
    count = _token_counter(checkpoints[labels[0]])
    data: dict[str, tuple[list[Record], SchemaLibrary, list]] = {}
    plans: dict[str, list[TaskPlan]] = {}
    for name in cfg.datasets:
        bad: list = []
        records, library = load_benchmark(name, cfg.data_dir, cfg.split, bad, class_names=cfg.class_names)
        shots = few_shot_records(name, cfg.data_dir, cfg.few_shot, cfg.split, cfg.class_names) if cfg.few_shot else []
        records = records[:cfg.limit] if cfg.limit is not None else records
        data[name] = (records, library, bad)
        plans[name] = [TaskPlan(f"{name}:{t}", t, library, budget=cfg.shard_tokens, count=count, shots=shots,
                                layout=Layout(**cfg.layout), as_written=True)  # scored as written: repeats and hallucinations count
                       for t in plan_tasks(benchmark_tasks(cfg, name))]
    all_plans = [p for ps in plans.values() for p in ps]
    jobs = [(label, p, data[name][0]) for label in labels for name in cfg.datasets for p in plans[name]]
    results = run_extraction(jobs, execute or ray_executor(cfg, all_plans, checkpoints))

    out_dir = cfg.output_dir
    summary_rows = []
    for label in labels:
        metrics = write_checkpoint(cfg, label, checkpoints[label], data, plans, results, storage.join(out_dir, label))
        summary_rows.append({"checkpoint": label, "path": checkpoints[label], "metrics": f"{label}/metrics.json",
                             "predictions": f"{label}/predictions.jsonl", "summary": metrics["summary"]})
    result = {"split": cfg.split, "datasets": list(cfg.datasets), "checkpoints": summary_rows,
              "config": asdict(cfg)}
    storage.write_text(storage.join(out_dir, "summary.json"), json.dumps(result, indent=2))
    if cfg.report:
        from knowcoder_ray.eval.report import write_report
        write_report(out_dir)
    return result


def write_checkpoint(cfg: EvalConfig, label: str, path: str, data, plans, results, out: str) -> dict:
    """predictions.jsonl and metrics.json of one checkpoint, side by side."""
    if cfg.metric_mode not in MODES:
        raise ValueError(f"metric_mode must be one of {MODES}, got {cfg.metric_mode!r}")
    overall: dict[str, dict[str, Score]] = {mode: {} for mode in MODES}
    datasets = {}
    extractions: list[Extraction] = []
    with io.StringIO() as f:  # predictions.jsonl, written whole: an object store takes whole objects
        for name, (records, library, bad) in data.items():
            preds = []
            for r in records:
                parts = [results[(label, p.key, r.id)] for p in plans[name]]
                extractions.extend(parts)
                pred = Record(r.id, r.text, source=r.source)
                for ex in parts:
                    pred.entities += ex.record.entities
                    pred.relations += ex.record.relations
                    pred.events += ex.record.events
                preds.append(pred)
                f.write(json.dumps({"dataset": name, "id": r.id, "text": r.text, "prediction": pred.to_dict(),
                                    "gold": r.to_dict(), "outputs": [o for ex in parts for o in ex.outputs]}) + "\n")
            metric_names = [m for t in benchmark_tasks(cfg, name) for m in METRICS[t]]
            modes = {}
            for mode in MODES:
                scores = score(records, preds, metric_names, mode=mode, filter_outlier=cfg.filter_outlier,
                               schema_types=library.names(),
                               ancestors=library.ancestors if cfg.wikidata_upper else None)
                for m, s in scores.items():
                    overall[mode][m] = overall[mode][m] + s if m in overall[mode] else s
                modes[mode] = {"summary": summary(scores), "metrics": {m: s.to_dict() for m, s in scores.items()}}
            datasets[name] = {"records": len(records), "malformed_inputs": [b.to_dict() for b in bad],
                              **modes[cfg.metric_mode], "modes": modes}
        storage.write_text(storage.join(out, "predictions.jsonl"), f.getvalue())
    by_mode = {mode: {"summary": summary(s), "overall": {m: v.to_dict() for m, v in s.items()}}
               for mode, s in overall.items()}
    metrics = {"checkpoint": label, "path": path, "split": cfg.split, "mode": cfg.metric_mode,
               "options": {"filter_outlier": cfg.filter_outlier, "wikidata_upper": cfg.wikidata_upper,
                           "shard_tokens": cfg.shard_tokens, "engine": cfg.engine, "metric_mode": cfg.metric_mode,
                           "class_names": cfg.class_names, "few_shot": cfg.few_shot, "layout": cfg.layout},
               **by_mode[cfg.metric_mode], "modes": by_mode, "datasets": datasets, "parse": parse_stats(extractions)}
    storage.write_text(storage.join(out, "metrics.json"), json.dumps(metrics, indent=2))
    return metrics
