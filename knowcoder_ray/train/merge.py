"""`knowcoder merge`: fold a PEFT LoRA adapter into its base model and write a plain HF model folder
(what the official recipe does after schema-following tuning, and what vLLM serves fastest)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from knowcoder_ray.train.storage import copy_dir, ensure_local, is_uri


def adapter_base(adapter_dir: str) -> str:
    """The base model path an adapter folder was trained on (its adapter_config.json)."""
    with open(os.path.join(ensure_local(adapter_dir), "adapter_config.json")) as f:
        return json.load(f).get("base_model_name_or_path") or ""


def merge_lora(adapter_dir: str, out_dir: str, base_dir: str | None = None, dtype: str = "auto") -> str:
    """Write base + adapter, merged, to `out_dir` (local path or URI) with the tokenizer; return out_dir."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = base_dir or adapter_base(adapter_dir)
    if not base_dir:
        raise ValueError(f"adapter at {adapter_dir} names no base model; pass base_dir")
    base_local, adapter_local = ensure_local(base_dir), ensure_local(adapter_dir)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base_local, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(model, adapter_local).merge_and_unload()
    tok_dir = adapter_local if Path(adapter_local, "tokenizer_config.json").exists() else base_local
    with tempfile.TemporaryDirectory(prefix="knowcoder-merge-") as tmp:
        target = tmp if is_uri(out_dir) else out_dir
        merged.save_pretrained(target)
        AutoTokenizer.from_pretrained(tok_dir).save_pretrained(target)
        if is_uri(out_dir):
            copy_dir(tmp, out_dir)
    return out_dir
