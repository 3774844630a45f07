"""Training configuration: a YAML file and dotted `--set key=value` overrides, validated by pydantic. One
`TrainConfig` serves both phases; `phase` picks the defaults that differ (pretrain: full-parameter, loss on
every token; sft: LoRA, loss on the output tokens only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from knowcoder_ray.settings import (ConfigError, Needed, NonNegative, Positive, PositiveFloat, Section, apply_overrides,
                                    parse, read_yaml)

CONFIG_DIR = Path(__file__).parent / "configs"


class DataSpec(Section):
    path: Needed                  # Parquet or JSONL file/folder, local or URI; rows {"text"} or {"prompt","output"}
    format: Literal["auto", "parquet", "json"] = "auto"
    seq_len: Annotated[int, Field(ge=8)] = 2048
    packing: bool = True          # False pads every sample to seq_len, as the official code does
    pack_window: Positive = 1024  # samples packed together (one Ray Data batch)
    shuffle: bool = True          # shuffle packed rows once, with `seed`, before training


class DeepSpeedSpec(Section):
    stage: Literal[0, 1, 2, 3] = 3    # ZeRO stage; 0 is plain data parallelism
    offload_optimizer: bool = False   # stage 1-3
    offload_params: bool = False      # stage 3 only

    @model_validator(mode="after")
    def _offload(self) -> DeepSpeedSpec:
        if self.offload_params and self.stage != 3:
            raise ValueError("offload_params needs ZeRO stage 3")
        if self.offload_optimizer and self.stage == 0:
            raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3")
        return self


class LoraSpec(Section):
    enabled: bool = True
    r: Positive = 32
    alpha: Positive = 64
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    target_modules: str | list[str] = "all-linear"  # every linear layer but lm_head, as the official recipe


class TrainConfig(Section):
    phase: Literal["pretrain", "sft"] = "pretrain"
    model: Needed                 # HF model folder (local path or URI)
    data: DataSpec
    output_dir: Needed            # final HF model folder (pretrain) or PEFT adapter folder (sft); path or URI
    storage_path: Needed          # Ray Train checkpoints; path or URI
    run_name: str = "knowcoder-train"
    num_workers: Positive = 2
    use_gpu: bool = False
    cpus_per_worker: Positive = 1
    bf16: bool = True             # on GPUs only; CPU runs are fp32
    micro_batch_size: Positive = 1
    grad_accum: Positive = 1
    lr: PositiveFloat = 5e-6
    weight_decay: NonNegative = 0.0
    warmup_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: NonNegative = 1.0
    epochs: Positive = 1
    max_steps: Annotated[int, Field(ge=0)] = 0  # 0: run the epochs out
    save_every: Positive = 100    # optimizer steps between checkpoints
    keep_checkpoints: Positive = 2
    max_failures: Annotated[int, Field(ge=-1)] = 0  # worker-failure restarts (Ray Train FailureConfig; -1: no limit)
    seed: int = 0
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # or flash_attention_2 on GPUs that have it
    deepspeed: DeepSpeedSpec = DeepSpeedSpec()
    lora: LoraSpec = LoraSpec(enabled=False)
    log_file: str = ""            # optional local JSONL of per-step metrics (rank 0)

    @model_validator(mode="before")
    @classmethod
    def _phase_defaults(cls, d: Any) -> Any:
        """sft: LoRA on (the official schema-following recipe) unless the config says otherwise."""
        if isinstance(d, dict) and d.get("phase") == "sft" and isinstance(d.get("lora", {}), dict):
            d = {**d, "lora": {"enabled": True, **d.get("lora", {})}}
        return d


def resolve_config(name: str | Path) -> str | Path:
    """A YAML path or URI, or a packaged config name."""
    from knowcoder_ray import storage

    if storage.isfile(str(name)):
        return name
    packaged = CONFIG_DIR / (name if str(name).endswith(".yaml") else f"{name}.yaml")
    if packaged.exists():
        return packaged
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name)!r} is neither a file nor a packaged config ({', '.join(known)})")


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                phase: str | None = None) -> TrainConfig:
    """A YAML config (a file, a packaged name, or nothing) with overrides, for `phase` when given."""
    path = resolve_config(path) if path else None
    d = apply_overrides(read_yaml(path) if path else {}, overrides)
    if phase:
        if d.get("phase", phase) != phase:
            raise ConfigError(f"config {path} is for phase {d['phase']!r}, not {phase!r}")
        d["phase"] = phase
    return parse(TrainConfig, d)
