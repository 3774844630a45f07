"""The per-worker training loop run by Ray Train, and the resumable state it checkpoints.

A checkpoint holds the engine state (DeepSpeed ZeRO shards, one file set per rank, or the PyTorch
state), each worker's random state and `trainer_state.json` (optimizer step, epoch, micro-batches consumed in the epoch). Every
worker reads a fixed split of the packed data in a fixed order (dataset.OrderedSplit), so a run restarted
after a failure skips the micro-batches its checkpoint counted and continues where it left off.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass

import torch

from knowcoder_ray.train.config import TrainConfig
from knowcoder_ray.train.dataset import TRAIN_COLUMNS

STATE_FILE = "trainer_state.json"
EXPORT_DIR = "export"


@dataclass
class TrainState:
    step: int = 0             # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0   # micro-batches of this epoch already trained on (per worker)
    tokens: int = 0           # real (non-pad) tokens trained on, all workers

    def save(self, path: str) -> None:
        with open(os.path.join(path, STATE_FILE), "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> "TrainState":
        with open(os.path.join(path, STATE_FILE)) as f:
            return cls(**json.load(f))


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps an epoch and the whole run take, from the rows each worker holds."""

    steps_per_epoch: int
    total_steps: int

    @classmethod
    def of(cls, cfg: TrainConfig, rows_per_worker: int) -> "Plan":
        per_epoch = rows_per_worker // (cfg.micro_batch_size * cfg.grad_accum)
        if per_epoch < 1:
            raise ValueError(f"{rows_per_worker} packed rows per worker do not fill one optimizer step of "
                             f"{cfg.micro_batch_size} x {cfg.grad_accum} micro-batches")
        total = per_epoch * cfg.epochs
        return cls(per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total)


def fingerprint(input_ids: torch.Tensor) -> int:
    """A cheap, order-sensitive hash of a batch, logged so a test can see which data a step saw."""
    w = torch.arange(1, input_ids.shape[-1] + 1, dtype=torch.long, device=input_ids.device)
    return int((input_ids.long() * w).sum().item() % 1_000_000_007)


def train_loop(loop_config: dict) -> None:
    """Ray Train entry point (TorchTrainer's train_loop_per_worker)."""
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_dict(loop_config["train"])
    plan = Plan.of(cfg, loop_config["rows_per_worker"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        # as many threads as the worker's CPUs: on a busy machine extra OpenMP threads spin against the
        # other workers (two threads a worker on 2 shared cores made a step 22x slower)
        torch.set_num_threads(cfg.cpus_per_worker)

    from knowcoder_ray.train.engine import build_engine, export_model

    engine = build_engine(cfg, plan.total_steps, device)
    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            engine.load(d)
            state = TrainState.load(d)
            _load_rng(d, rank)
    resumed_at = state.step if checkpoint else None

    def report(final: bool, metrics: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="knowcoder-ckpt-") as d:
            engine.save(d)
            _save_rng(d, rank)
            if final:
                full = engine.full_state_dict(rank)  # collective under ZeRO-3
                if rank == 0:
                    export_model(engine.module, full, os.path.join(d, EXPORT_DIR), cfg.model)
            if rank == 0:
                state.save(d)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    log = _StepLog(cfg.log_file if rank == 0 else "", resumed_at)
    shard = ray.train.get_dataset_shard("train")
    metrics: dict = {"step": state.step}
    batches_per_epoch = plan.steps_per_epoch * cfg.grad_accum
    while state.step < plan.total_steps:
        epoch, skip = state.epoch, state.batch_in_epoch
        losses, fp, tokens, t0, c0 = [], 0, 0, time.perf_counter(), time.process_time()
        batches = shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="numpy", drop_last=True)
        for i, rows in enumerate(batches):
            if i < skip:  # trained on before the restart: skipped as numpy, never sent to the device
                continue
            batch = {k: torch.as_tensor(rows[k], dtype=torch.long).to(device) for k in TRAIN_COLUMNS}
            boundary = (i + 1) % cfg.grad_accum == 0
            losses.append(engine.micro_step(batch, boundary))
            tokens += int(rows["n_tokens"].sum())
            fp = (fp * 31 + fingerprint(batch["input_ids"])) % 1_000_000_007
            if not boundary:
                continue
            state.step += 1
            state.batch_in_epoch = i + 1
            if state.batch_in_epoch == batches_per_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            loss, step_tokens = _all_reduce_mean_sum(sum(losses) / len(losses), tokens, device)
            state.tokens += step_tokens
            metrics = {"step": state.step, "epoch": epoch, "loss": loss, "lr": engine.lr(), "tokens": state.tokens,
                       "step_tokens": step_tokens, "step_s": time.perf_counter() - t0,
                       "step_cpu_s": time.process_time() - c0, "fingerprint": fp}
            log.write(metrics)
            losses, fp, tokens = [], 0, 0
            if cfg.fail_at_step and state.step == cfg.fail_at_step and resumed_at is None and rank == world - 1:
                raise RuntimeError(f"injected failure at step {state.step} (fail_at_step)")
            if state.step % cfg.save_every == 0 and state.step < plan.total_steps:
                report(False, metrics)
            t0, c0 = time.perf_counter(), time.process_time()
            if state.epoch != epoch or state.step >= plan.total_steps:
                break
        else:
            raise RuntimeError(f"worker {rank}: data shard ran out in epoch {epoch} before the "
                               f"{batches_per_epoch} micro-batches planned per epoch")
    report(True, {**metrics, "final": True})


def _save_rng(path: str, rank: int) -> None:
    """Each worker's random state (LoRA dropout), so a resumed step repeats exactly."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    torch.save(state, os.path.join(path, f"rng_rank{rank}.pt"))


def _load_rng(path: str, rank: int) -> None:
    file = os.path.join(path, f"rng_rank{rank}.pt")
    if os.path.exists(file):  # absent when the world size changed
        state = torch.load(file, weights_only=True)
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])


def _all_reduce_mean_sum(loss: float, tokens: int, device) -> tuple[float, int]:
    if not torch.distributed.is_initialized():
        return loss, tokens
    t = torch.tensor([loss, float(tokens)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t[0]) / torch.distributed.get_world_size(), int(t[1])


class _StepLog:
    """Per-step metrics as JSON lines (rank 0), tagged with the step the attempt resumed from."""

    def __init__(self, path: str, resumed_at: int | None):
        self.path, self.resumed_at = path, resumed_at

    def write(self, metrics: dict) -> None:
        line = {**metrics, "resumed_at": self.resumed_at, "time": round(time.time(), 3)}
        print(json.dumps(line), flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")
