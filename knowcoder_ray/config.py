"""The pipeline config (jobs/configs/*.yaml), validated before any cluster time is spent.

Every section is a pydantic model that refuses unknown keys, so a misspelled key fails with its location
instead of being ignored. The sections of a phase are that phase's own config model (corpora, training,
eval, serve), with the keys the jobs fill in (artifact paths) left optional; the training `set:` overrides
are checked by building the TrainConfig they make.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, create_model, field_validator, model_validator

from knowcoder_ray.data.corpora import FollowingCorpusConfig, UnderstandingConfig
from knowcoder_ray.eval.evaluate import EvalConfig
from knowcoder_ray.schema.build import BuildConfig
from knowcoder_ray.serve.config import ServeConfig
from knowcoder_ray.settings import Section, parse
from knowcoder_ray.train.config import TrainConfig, load_config, resolve_config

ARTIFACTS = {  # artifact -> path under workdir, the one layout every job and the demo check agree on
    "schema": "schema", "understanding": "corpus/understanding", "following": "corpus/following",
    "tiny_model": "models/tiny-base", "pretrained": "models/pretrained", "adapter": "models/sft-adapter",
    "merged": "models/merged", "checkpoints": "checkpoints", "eval": "eval",
}
Library = Literal["schema", "benchmarks"]  # the schema slice built by the run, or the benchmarks' own classes
PLACEHOLDER = "<set by the job>"
JOB_KEYS = ("model", "data.path", "output_dir", "storage_path")  # the TrainConfig keys a training job fills in


class Ray(Section):
    num_cpus: int | None = None


class BaseModelSource(Section):
    import_: str = Field(alias="import")  # a GGUF file or an installed model package (`knowcoder model import`)
    cache_dir: str | None = None


class TinyModel(Section):
    vocab_size: int = 1024


# aliased: the artifact `schema` would shadow BaseModel.schema
Paths = create_model("Paths", __base__=Section, **{f"{a}_": (str | None, Field(None, alias=a)) for a in ARTIFACTS})


class Schema(BuildConfig):
    dump: str                            # a Wikidata JSON dump (.json, .gz, .bz2; path or URI)


class Understanding(UnderstandingConfig):
    out: str | None = None               # the job's: `paths: {understanding: ...}` moves it
    library: Library = "schema"


class Following(FollowingCorpusConfig):
    out: str | None = None
    library: Library = "schema"


class Train(Section):
    phase: ClassVar[str] = "sft"
    config: str                          # a TrainConfig YAML, or the name of a packaged one
    set: dict[str, Any] = {}             # TrainConfig overrides, dotted for nested keys

    @field_validator("config")
    @classmethod
    def _exists(cls, name: str) -> str:
        resolve_config(name)
        return name

    @field_validator("set")
    @classmethod
    def _builds(cls, settings: dict, info) -> dict:
        if "config" in info.data:  # as the job will build it, with its paths filled in
            load_config(info.data["config"], {**dict.fromkeys(JOB_KEYS, PLACEHOLDER), **settings}, phase=cls.phase)
        return settings

    def build(self, paths: dict[str, str]) -> TrainConfig:
        """The TrainConfig: the `config` file, the job's `paths` (JOB_KEYS), then `set`."""
        return load_config(self.config, {**paths, **self.set}, phase=self.phase)


class Pretrain(Train):
    phase: ClassVar[str] = "pretrain"
    model: str | None = None             # the model folder, when neither tiny_model nor base_model is set


class Eval(EvalConfig):
    """EvalConfig fields; the job names the checkpoints' folders, their labels and the output folder."""
    checkpoints: list[Literal["base", "pretrained", "merged", "adapter"]] | None = None

    @model_validator(mode="after")
    def _job_keys(self) -> Eval:
        filled = [k for k in ("labels", "output_dir") if k in self.model_fields_set]
        if filled:
            raise ValueError(f"{filled[0]} is set by the job (`paths: {{eval: ...}}` moves the output)")
        return self


class Serve(ServeConfig):
    """ServeConfig fields and the serve job's own keys; the job names the model and the library."""
    model_dir: str | None = None
    library: str | None = None
    enabled: bool = True
    host: str = "127.0.0.1"              # loopback by default; `0.0.0.0` on a cluster, where the proxy serves others
    port: int = 8000
    proxy_location: str = "EveryNode"
    keep_running: bool = False
    smoke_text: str = "Barack Obama was born in Honolulu."


class PipelineConfig(Section):
    workdir: str
    data_dir: str | None = None
    ray: Ray = Ray()
    base_model: BaseModelSource | None = None
    tiny_model: TinyModel | None = None
    paths: Paths = Paths()
    schema_: Schema | None = Field(None, alias="schema")
    understanding: Understanding = Understanding()
    following: Following = Following()
    pretrain: Pretrain | None = None
    sft: Train | None = None
    eval: Eval | None = None
    serve: Serve = Serve()

    @model_validator(mode="after")
    def _model(self) -> PipelineConfig:
        if self.pretrain is not None and not (self.pretrain.model or self.tiny_model or self.base_model):
            raise ValueError("pretrain.model: needed when neither tiny_model nor base_model is set")
        return self


def validate(cfg: Any, source: str = "config") -> PipelineConfig:
    """The checked config; ConfigError with one line per problem, each `source: location: what`."""
    return parse(PipelineConfig, cfg, source)
