"""Driver side of a training run: pack the corpus with Ray Data, run the Ray Train trainer, and copy the
exported model (pretrain: HF folder; sft: PEFT adapter folder) to `output_dir`. Re-running with the same
`run_name` and `storage_path` resumes from the run's latest checkpoint, as a worker-failure restart does.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knowcoder_ray import storage
from knowcoder_ray.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: str
    checkpoint_path: str
    metrics: dict
    data: dict          # dataset.prepare_dataset's summary
    rejects: list[str]
    timings: dict       # seconds: prepare (read, tokenize, pack), fit (Ray Train run), total


def fit_phases(metrics: dict, fit_start: float, fit_end: float) -> dict:
    """Where a fit's wall time went, from the loop's marks (rank 0's clock, the driver's machine or not):
    start (workers, process group, data split), load (engine build, resume), steps, save (checkpoint and
    export written), report (checkpoint persisted, workers shut down). Empty without the marks."""
    keys = ("t_enter", "t_loaded", "t_trained", "t_saved")
    if not all(k in metrics for k in keys):
        return {}
    t = [fit_start, *(metrics[k] for k in keys), fit_end]
    return {name: round(b - a, 3) for name, a, b in zip(("start", "load", "steps", "save", "report"), t, t[1:])}


# Ray Train settings for a one-node cluster, unless the user set them: workers polled every 0.25 s, not 2 s
# (a run's end was seen 4-5 s late); no preemption watcher and no metrics for a dashboard that is off.
SMALL_CLUSTER_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                     "RAY_TRAIN_METRICS_ENABLED": "0"}


def _trainer_class(cfg: TrainConfig):
    """TorchTrainer, except for one CPU worker: a plain data-parallel trainer spares the controller its
    import of torch (1.3 s on 2 cores); the engine makes the worker a process group of its own."""
    from ray.train.backend import BackendConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    if cfg.num_workers == 1 and not cfg.use_gpu:
        return DataParallelTrainer, {"backend_config": BackendConfig()}
    return TorchTrainer, {"torch_config": TorchConfig(backend="nccl" if cfg.use_gpu else "gloo")}


def train(cfg: TrainConfig, step_hooks: Sequence[Callable] = ()) -> TrainResult:
    """Run one training phase on the connected Ray cluster (`connect()` first). `step_hooks` are called on
    every worker after each optimizer step with the step's metrics, `rank`, `world_size` and `resumed_at`
    (the step this attempt restored, else None); one that raises fails the worker (`max_failures`)."""
    import ray.train

    from knowcoder_ray.train.dataset import OrderedSplit, check_model_folder, fmt_of, prepare_dataset
    from knowcoder_ray.train.loop import EXPORT_DIR, step_counts, train_loop

    start = time.perf_counter()
    fmt_of(cfg.data)  # a corpus without data files is named first
    check_model_folder(cfg.model)
    packed, summary, rejects = prepare_dataset(cfg.data, cfg.model, mask_prompt=cfg.phase == "sft", seed=cfg.seed)
    rows_per_worker = summary["rows"] // cfg.num_workers
    _, total_steps = step_counts(cfg, rows_per_worker)  # fail early, before workers start, if the data is too small
    log.info("data %s; %d steps", summary, total_steps)
    if len([n for n in ray.nodes() if n.get("Alive")]) == 1:
        for k, v in SMALL_CLUSTER_ENV.items():
            os.environ.setdefault(k, v)  # read by the driver; Ray Train passes them on to its controller
    trainer_cls, backend = _trainer_class(cfg)
    trainer = trainer_cls(
        train_loop, train_loop_config={"train": cfg.model_dump(), "rows_per_worker": rows_per_worker,
                                       "step_hooks": list(step_hooks)},
        **backend,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=cfg.run_name, storage_path=storage.absolute(cfg.storage_path),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints)),
        datasets={"train": packed},
        # split (and so computed) here, before the workers take their CPUs: see OrderedSplit
        dataset_config=OrderedSplit({"train": packed.split(cfg.num_workers, equal=True)}))
    prepared, fit_start = time.perf_counter(), time.time()
    result = trainer.fit()
    fitted, fit_end = time.perf_counter(), time.time()
    if result.error:
        raise result.error
    checkpoint = storage.outer_path(cfg.storage_path, result.checkpoint.path)  # a URI when the storage is one
    # only the exported model: the optimizer state and ZeRO shards beside it (~112 GB for 7B) stay where they are
    storage.copy_dir(storage.join(checkpoint, EXPORT_DIR), cfg.output_dir)
    timings = {"prepare": prepared - start, "fit": fitted - prepared, "total": time.perf_counter() - start,
               "fit_phases": fit_phases(result.metrics, fit_start, fit_end)}
    storage.write_text(storage.join(cfg.output_dir, "training_summary.json"), json.dumps(
        {"metrics": result.metrics, "data": summary, "timings": timings, "rejects": rejects[:1000],
         "checkpoint": checkpoint, "config": cfg.model_dump()}, indent=2, default=str))
    return TrainResult(cfg.output_dir, checkpoint, dict(result.metrics), summary, rejects, timings)
