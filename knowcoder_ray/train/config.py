"""Training configuration: YAML files loaded into dataclasses, with dotted `key=value` overrides.

One `TrainConfig` serves both phases; `phase` picks the defaults that differ (pretrain: full-parameter,
loss on every token; sft: LoRA, loss on the output tokens only).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PHASES = ("pretrain", "sft")


class ConfigError(ValueError):
    """A training config is invalid (unknown key, bad value)."""


@dataclass
class DataSpec:
    path: str = ""                # Parquet or JSONL file/folder, local or URI; rows {"text"} or {"prompt","output"}
    format: str = "auto"          # auto | parquet | json
    seq_len: int = 2048
    packing: bool = True          # False pads every sample to seq_len, as the official code does
    pack_window: int = 1024       # samples packed together (one Ray Data batch)
    shuffle: bool = True          # shuffle packed rows once, with `seed`, before training


@dataclass
class DeepSpeedSpec:
    enabled: bool = True
    stage: int = 3                # ZeRO stage: 2 or 3
    offload_optimizer: bool = False
    offload_params: bool = False  # stage 3 only


@dataclass
class LoraSpec:
    enabled: bool = True
    r: int = 32
    alpha: int = 64
    dropout: float = 0.1
    target_modules: Any = "all-linear"  # every linear layer but lm_head, as the official recipe


@dataclass
class TrainConfig:
    phase: str = "pretrain"
    model: str = ""               # HF model folder (local path or URI)
    data: DataSpec = field(default_factory=DataSpec)
    output_dir: str = ""          # final HF model folder (pretrain) or PEFT adapter folder (sft); path or URI
    storage_path: str = ""        # Ray Train checkpoints; path or URI
    run_name: str = "knowcoder-train"
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: int = 1
    bf16: bool = True             # on GPUs only; CPU runs are fp32
    micro_batch_size: int = 1
    grad_accum: int = 1
    lr: float = 5e-6
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    lr_schedule: str = "cosine"   # cosine | linear | constant
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int = 0            # 0: run the epochs out
    save_every: int = 100         # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    max_failures: int = 0         # worker-failure restarts (Ray Train FailureConfig)
    seed: int = 0
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # or flash_attention_2 on GPUs that have it
    deepspeed: DeepSpeedSpec = field(default_factory=DeepSpeedSpec)
    lora: LoraSpec = field(default_factory=lambda: LoraSpec(enabled=False))
    log_file: str = ""            # optional local JSONL of per-step metrics (rank 0)
    fail_at_step: int = 0         # testing: one worker raises at this step on a run not resumed

    def validate(self) -> "TrainConfig":
        if self.phase not in PHASES:
            raise ConfigError(f"phase must be one of {PHASES}, got {self.phase!r}")
        for name in ("model", "output_dir", "storage_path"):
            if not getattr(self, name):
                raise ConfigError(f"config needs `{name}`")
        if not self.data.path:
            raise ConfigError("config needs `data.path`")
        if self.data.format not in ("auto", "parquet", "json"):
            raise ConfigError(f"data.format must be auto, parquet or json, got {self.data.format!r}")
        if self.deepspeed.enabled and self.deepspeed.stage not in (2, 3):
            raise ConfigError(f"deepspeed.stage must be 2 or 3, got {self.deepspeed.stage}")
        if self.deepspeed.offload_params and self.deepspeed.stage != 3:
            raise ConfigError("deepspeed.offload_params needs ZeRO stage 3")
        if self.lr_schedule not in ("cosine", "linear", "constant"):
            raise ConfigError(f"lr_schedule must be cosine, linear or constant, got {self.lr_schedule!r}")
        for name in ("num_workers", "micro_batch_size", "grad_accum", "epochs", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data.seq_len < 8:
            raise ConfigError(f"data.seq_len must be >= 8, got {self.data.seq_len}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "").validate()


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} in {where or 'top level'}; known: {sorted(fields)}")
    kwargs = {}
    for k, v in d.items():
        sub = {"data": DataSpec, "deepspeed": DeepSpeedSpec, "lora": LoraSpec}.get(k) if cls is TrainConfig else None
        kwargs[k] = _build(sub, v, f"{where}{k}.") if sub else _coerce(v, fields[k].type, f"{where}{k}")
    return cls(**kwargs)


def _coerce(value: Any, type_name: str, key: str) -> Any:
    """Numbers as the field's type (YAML reads `3e-4` as a string); a clear error for the wrong kind."""
    try:
        if type_name == "float" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return float(value)
        if type_name == "int" and isinstance(value, (int, str)) and not isinstance(value, bool):
            return int(value)
    except ValueError:
        pass
    else:
        ok = {"float": float, "int": int, "bool": bool, "str": str}.get(type_name)
        if ok is None or isinstance(value, ok):
            return value
    raise ConfigError(f"config key {key!r} needs a {type_name}, got {value!r}")


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)  # numbers, booleans, lists as YAML reads them; never evaluates code


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """`["lr=1e-4", "data.seq_len=512"]` applied to a config mapping (nested keys by dots)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        node = d
        *parents, last = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = _parse_value(value)
    return d


def load_config(path: str | Path | None = None, overrides: list[str] = (), phase: str | None = None) -> TrainConfig:
    """Read a YAML config (or start empty), apply overrides and phase defaults, and validate."""
    from knowcoder_ray.storage import read_text

    d = yaml.safe_load(read_text(str(path))) if path else {}
    d = apply_overrides(d or {}, list(overrides))
    if phase:
        if d.get("phase", phase) != phase:
            raise ConfigError(f"config {path} is for phase {d['phase']!r}, not {phase!r}")
        d["phase"] = phase
    if d.get("phase") == "sft":  # the official schema-following recipe, unless the file says otherwise
        d.setdefault("lora", {}).setdefault("enabled", True)
    return TrainConfig.from_dict(d)


CONFIG_DIR = Path(__file__).parent / "configs"
