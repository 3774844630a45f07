"""The per-worker training loop run by Ray Train, and the resumable state it checkpoints.

A checkpoint holds the DeepSpeed state, each worker's random state and `trainer_state.json`. Workers read fixed
splits in a fixed order (dataset.OrderedSplit), so a restarted run skips the micro-batches its checkpoint counted.
Each rank lists the size and CRC32 of the files it wrote (`files_rank<r>.json`): a missing, cut or altered file
makes the run fall back to the newest whole older checkpoint instead of failing in a pickle error every attempt.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from knowcoder_ray.train.config import TrainConfig
from knowcoder_ray.train.dataset import TRAIN_COLUMNS, DataError
from knowcoder_ray.train.engine import build_engine, export_model, full_state_dict, micro_step

STATE_FILE = "trainer_state.json"
EXPORT_DIR = "export"
FILES = "files_rank{}.json"  # per rank: {relative path: [size, crc32]} of the files it wrote


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def write_file_list(d: str, rank: int) -> None:
    """Record what this rank wrote into checkpoint folder `d` (call last, after every file is written)."""
    paths = [os.path.join(root, n) for root, _, names in os.walk(d) for n in names
             if not (n.startswith("files_rank") and n.endswith(".json"))]
    files = {os.path.relpath(p, d): [os.path.getsize(p), _crc32(p)] for p in paths}
    Path(d, FILES.format(rank)).write_text(json.dumps(files))


def checkpoint_problem(d: str, rank: int) -> str | None:
    """Why this rank's part of the checkpoint in `d` cannot be used (a file missing, cut or altered, or no
    trainer state), or None. A checkpoint from before file lists were written is taken as it is."""
    listing = Path(d, FILES.format(rank))
    try:
        files = json.loads(listing.read_text()) if listing.exists() else {}
    except (OSError, ValueError) as e:
        return f"{FILES.format(rank)} is unreadable ({e})"
    for rel, (size, crc) in sorted(files.items()):
        path = os.path.join(d, rel)
        if not os.path.isfile(path):
            return f"{rel} is missing"
        if os.path.getsize(path) != size:
            return f"{rel} has {os.path.getsize(path)} bytes, {size} were written (cut short)"
        if _crc32(path) != crc:
            return f"{rel} does not match the CRC32 written with it (corrupt)"
    return None if os.path.isfile(os.path.join(d, STATE_FILE)) else f"{STATE_FILE} is missing"


@dataclass
class TrainState:
    step: int = 0             # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0   # micro-batches of this epoch already trained on (per worker)
    tokens: int = 0           # real (non-pad) tokens trained on, all workers


def step_counts(cfg: TrainConfig, rows_per_worker: int) -> tuple[int, int]:
    """(optimizer steps an epoch, steps of the whole run), from the rows each worker holds."""
    per_epoch = rows_per_worker // (cfg.micro_batch_size * cfg.grad_accum)
    if per_epoch < 1:
        raise DataError(f"{rows_per_worker} packed rows per worker do not fill one optimizer step of "
                         f"{cfg.micro_batch_size} x {cfg.grad_accum} micro-batches")
    total = per_epoch * cfg.epochs
    return per_epoch, min(total, cfg.max_steps) if cfg.max_steps else total


def fingerprint(input_ids: torch.Tensor) -> int:
    """A cheap, order-sensitive hash of a batch, logged so a test can see which data a step saw."""
    w = torch.arange(1, input_ids.shape[-1] + 1, dtype=torch.long, device=input_ids.device)
    return int((input_ids.long() * w).sum().item() % 1_000_000_007)


def train_loop(loop_config: dict) -> None:
    """Ray Train entry point (the trainer's train_loop_per_worker)."""
    import ray.train

    marks = {"t_enter": time.time()}  # wall-clock marks of the fixed costs, reported with the final metrics
    cfg = TrainConfig.model_validate(loop_config["train"])
    steps_per_epoch, total_steps = step_counts(cfg, loop_config["rows_per_worker"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if cfg.use_gpu:  # the worker's GPU as Ray Train assigned it (ray.train.torch is not imported on CPUs)
        import ray.train.torch
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    if device.type == "cpu":  # more OpenMP threads than CPUs spin against the other workers (a step 22x slower)
        torch.set_num_threads(cfg.cpus_per_worker)
    engine = build_engine(cfg, total_steps, device)
    state, resumed_at = TrainState(), None
    log = _StepLog(cfg.log_file if rank == 0 else "", total_steps if rank == 0 else 0)
    if checkpoint := ray.train.get_checkpoint():
        state = _resume(checkpoint, engine, rank, log)
        resumed_at = log.resumed_at = state.step
    marks["t_loaded"] = time.time()

    def report(final: bool, metrics: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="knowcoder-ckpt-") as d:
            engine.save_checkpoint(d, tag="deepspeed", exclude_frozen_parameters=True)  # LoRA: no frozen base
            _save_rng(d, rank)
            if final:
                full = full_state_dict(engine, rank)  # collective under ZeRO-3
                if rank == 0:
                    export_model(engine.module, full, os.path.join(d, EXPORT_DIR), cfg.model)
                metrics["t_saved"] = time.time()
            if rank == 0:
                Path(d, STATE_FILE).write_text(json.dumps(asdict(state)))
            write_file_list(d, rank)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    shard = ray.train.get_dataset_shard("train")
    metrics: dict = {"step": state.step}
    batches_per_epoch = steps_per_epoch * cfg.grad_accum
    while state.step < total_steps:
        epoch, skip = state.epoch, state.batch_in_epoch
        losses, fp, tokens, t0, c0 = [], 0, 0, time.perf_counter(), time.process_time()
        batches = shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="numpy", drop_last=True)
        for i, rows in enumerate(batches):
            if i < skip:  # trained on before the restart: skipped as numpy, never sent to the device
                continue
            batch = {k: torch.as_tensor(rows[k], dtype=torch.long).to(device) for k in TRAIN_COLUMNS}
            losses.append(micro_step(engine, batch))
            tokens += int(rows["n_tokens"].sum())
            fp = (fp * 31 + fingerprint(batch["input_ids"])) % 1_000_000_007
            if (i + 1) % cfg.grad_accum:  # not yet an accumulation boundary
                continue
            state.step += 1
            state.batch_in_epoch = i + 1
            if state.batch_in_epoch == batches_per_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            summed = torch.tensor([sum(losses) / len(losses), float(tokens)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(summed)  # the mean loss and the tokens of all workers
            loss, step_tokens = float(summed[0]) / world, int(summed[1])
            state.tokens += step_tokens
            metrics = {"step": state.step, "epoch": epoch, "loss": loss, "lr": float(engine.get_lr()[0]),
                       "tokens": state.tokens, "step_tokens": step_tokens, "step_s": time.perf_counter() - t0,
                       "step_cpu_s": time.process_time() - c0, "fingerprint": fp}
            log.write(metrics)
            losses, fp, tokens = [], 0, 0
            for hook in loop_config.get("step_hooks", ()):  # a hook that raises fails this worker
                hook({**metrics, "rank": rank, "world_size": world, "resumed_at": resumed_at})
            if state.step % cfg.save_every == 0 and state.step < total_steps:
                report(False, metrics)
            t0, c0 = time.perf_counter(), time.process_time()
            if state.epoch != epoch or state.step >= total_steps:
                break
        else:
            raise RuntimeError(f"worker {rank}: data shard ran out in epoch {epoch} before the "
                               f"{batches_per_epoch} micro-batches planned per epoch")
    marks["t_trained"] = time.time()
    report(True, {**metrics, **marks, "final": True})


def _resume(latest, engine, rank: int, log: "_StepLog") -> TrainState:
    """Load the newest whole checkpoint: `latest`, else the older ones kept beside it, newest first. All
    ranks check their own files and agree before any rank loads (loading under DeepSpeed is collective)."""
    problems = []
    for cp in [latest, *_older_checkpoints(latest)]:
        with cp.as_directory() as d:
            every = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(every, checkpoint_problem(d, rank))  # each rank's, in rank order
            bad = [f"rank {r}: {p}" for r, p in enumerate(every) if p]
            if bad:
                problems.append(f"checkpoint {cp.path} is unusable ({'; '.join(bad)})")
                log.event({"event": "checkpoint_skipped", "checkpoint": cp.path, "problem": "; ".join(bad)})
                continue
            try:
                whole = all(p.requires_grad for p in engine.module.parameters())
                if engine.load_checkpoint(d, tag="deepspeed", load_module_strict=whole)[0] is None:
                    raise RuntimeError(f"DeepSpeed could not load the checkpoint at {d}")
                state = TrainState(**json.loads(Path(d, STATE_FILE).read_text()))
                _load_rng(d, rank)
            except Exception as e:  # not recorded as altered, yet unreadable: name it rather than a bare pickle error
                raise RuntimeError(f"checkpoint {cp.path} could not be loaded: {type(e).__name__}: {e}") from e
            if problems:
                log.event({"event": "checkpoint_fallback", "checkpoint": cp.path, "step": state.step,
                           "skipped": problems})
            return state
    raise RuntimeError("no usable checkpoint to resume from: " + " | ".join(problems))


def _older_checkpoints(cp) -> list:
    """The run's other checkpoints older than `cp` (Ray Train names them checkpoint_<timestamp>), newest first."""
    import pyarrow.fs as pafs
    import ray.train

    parent, name = os.path.dirname(cp.path.rstrip("/")), os.path.basename(cp.path.rstrip("/"))
    infos = cp.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    older = sorted((i.path for i in infos if i.type == pafs.FileType.Directory
                    and i.base_name.startswith("checkpoint_") and i.base_name < name), reverse=True)
    return [ray.train.Checkpoint(p, filesystem=cp.filesystem) for p in older]


def _save_rng(path: str, rank: int) -> None:
    """Each worker's random state (LoRA dropout): a resumed step repeats exactly."""
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


class _StepLog:
    """Per-step metrics as JSON lines (rank 0), tagged with the step the attempt resumed from, and a
    progress line per step on rank 0's output (`total_steps` 0: none)."""

    def __init__(self, path: str, total_steps: int):
        self.path, self.total_steps, self.resumed_at = path, total_steps, None
        self.started, self.first_step = time.perf_counter(), None

    def event(self, line: dict) -> None:
        """A line about the run itself (a skipped checkpoint), printed by every rank, logged by rank 0."""
        line = {**line, "time": round(time.time(), 3)}
        print(json.dumps(line), flush=True)
        self._append(line)

    def write(self, metrics: dict) -> None:
        if self.total_steps:  # not print(): Ray Train patches it to write the line twice
            sys.stdout.write(self.progress(metrics) + "\n")
            sys.stdout.flush()
        self._append({**metrics, "resumed_at": self.resumed_at, "time": round(time.time(), 3)})

    def _append(self, line: dict) -> None:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")

    def progress(self, m: dict) -> str:
        """`step 12/44  loss 0.6121  1,640 tokens/s  1m23s, ~3m40s left` (the pace of this attempt)."""
        if self.first_step is None:
            self.first_step = m["step"] - 1
        done, elapsed = m["step"] - self.first_step, time.perf_counter() - self.started
        left = elapsed / max(done, 1) * (self.total_steps - m["step"])
        return (f"step {m['step']}/{self.total_steps}  loss {m['loss']:.4f}  "
                f"{m['step_tokens'] / max(m['step_s'], 1e-9):,.0f} tokens/s  {_clock(elapsed)}, ~{_clock(left)} left")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
