"""`knowcoder merge`: fold a PEFT LoRA adapter into its base model and write a plain HF model folder
(what the official recipe does after schema-following tuning, and what vLLM serves fastest)."""
from __future__ import annotations

import json
from pathlib import Path

from knowcoder_ray import storage


def adapter_base(path: str | Path) -> str | None:
    """The base model a PEFT adapter folder (path or URI) was trained on, or None for a full model folder."""
    cfg = storage.join(str(path), "adapter_config.json")
    if not storage.isfile(cfg):
        return None
    try:
        base = json.loads(storage.read_text(cfg)).get("base_model_name_or_path")
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        raise ValueError(f"{cfg} is not a JSON object") from None
    if not base:
        raise ValueError(f"{cfg} names no base_model_name_or_path")
    return base


def merge_lora(adapter_dir: str, out_dir: str, base_dir: str | None = None, dtype: str = "auto") -> str:
    """Write base + adapter, merged, to `out_dir` (local path or URI) with the tokenizer; return out_dir."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from knowcoder_ray.train.dataset import check_model_folder, check_safetensors

    recorded = adapter_base(adapter_dir)
    if recorded is None:
        raise ValueError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    weights = ("adapter_model.safetensors", "adapter_model.bin")
    if not any(storage.isfile(storage.join(adapter_dir, f)) for f in weights):
        raise ValueError(f"{adapter_dir} holds no adapter weights (adapter_model.safetensors or adapter_model.bin)")
    base_local, adapter_local = storage.local_copy(base_dir or recorded), storage.local_copy(adapter_dir)
    check_model_folder(base_local)  # no weights, or a damaged file: one line, not a traceback
    check_safetensors(str(Path(adapter_local, weights[0])))
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base_local, dtype=torch_dtype)
    try:
        merged = PeftModel.from_pretrained(model, adapter_local).merge_and_unload()
    except KeyError as e:  # peft's table of adapter kinds
        raise ValueError(f"{adapter_dir}/adapter_config.json names an unknown peft_type {e}") from None
    tok_dir = adapter_local if Path(adapter_local, "tokenizer_config.json").exists() else base_local
    with storage.output_folder(out_dir) as target:
        merged.save_pretrained(target)
        AutoTokenizer.from_pretrained(tok_dir).save_pretrained(target)
    return out_dir
