"""The pipeline config (jobs/configs/*.yaml), validated before any cluster time is spent: every section refuses
unknown keys (a misspelled key fails with its location); a phase's section is that phase's own config model
(corpora, training, eval, serve) with the keys the jobs fill in (artifact paths) left optional, and the training
`set:` overrides are checked by building the TrainConfig they make.
"""
from __future__ import annotations

import os
import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, create_model, field_validator, model_validator

from knowcoder_ray.data.benchmarks import default_data_dir, require_benchmarks
from knowcoder_ray.data.corpora import FollowingConfig, UnderstandingConfig
from knowcoder_ray.eval.evaluate import EvalConfig
from knowcoder_ray.schema.build import BuildConfig
from knowcoder_ray.serve.config import ServeConfig
from knowcoder_ray.settings import Needed, Positive, Section, parse, read_yaml
from knowcoder_ray.storage import absolute
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
    num_cpus: Positive | None = None  # 0: a local cluster that can run nothing


class BaseModelSource(Section):
    import_: str = Field(alias="import")  # a GGUF file or an installed model package (`knowcoder model import`)
    cache_dir: str | None = None


class TinyModel(Section):
    vocab_size: Positive = 1024


# aliased: the artifact `schema` would shadow BaseModel.schema
Paths = create_model("Paths", __base__=Section, **{f"{a}_": (str | None, Field(None, alias=a)) for a in ARTIFACTS})


class Schema(BuildConfig):
    dump: str                            # a Wikidata JSON dump (.json, .gz, .bz2; path or URI)


# the corpus sections: their phase's config, `out` the job's (`paths: {understanding: ...}` moves it)
Understanding, Following = (create_model(c.__name__.removesuffix("Config"), __base__=c, out=(str | None, None),
                                         library=(Library, "schema")) for c in (UnderstandingConfig, FollowingConfig))


class Train(Section):
    phase: ClassVar[str] = "sft"
    # a TrainConfig YAML, or the name of a packaged one (ConfigError when it is neither)
    config: Annotated[str, AfterValidator(lambda name: resolve_config(name) and name)]
    set: dict[str, Any] = {}             # TrainConfig overrides, dotted for nested keys

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
        if filled := [k for k in ("labels", "output_dir") if k in self.model_fields_set]:
            raise ValueError(f"{filled[0]} is set by the job (`paths: {{eval: ...}}` moves the output)")
        return self


class Serve(ServeConfig):
    """ServeConfig fields and the serve job's own keys; the job names the model and the library."""
    model_dir: str | None = None
    library: str | None = None
    enabled: bool = True
    host: str = "127.0.0.1"              # loopback by default; `0.0.0.0` on a cluster, where the proxy serves others
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    proxy_location: str = "EveryNode"
    keep_running: bool = False
    smoke_text: str = "Barack Obama was born in Honolulu."


class PipelineConfig(Section):
    workdir: Needed
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

    @classmethod
    def load(cls, path: str | os.PathLike) -> PipelineConfig:
        """The pipeline YAML (path or URI), validated: ConfigError names a misspelled or misplaced key."""
        return validate(read_yaml(str(path)), str(path))

    def artifact(self, name: str) -> str:
        """Path (or URI) of an artifact (ARTIFACTS): `workdir/<layout>`, unless `paths` names one."""
        return absolute(getattr(self.paths, f"{name}_") or f"{self.workdir.rstrip('/')}/{ARTIFACTS[name]}")

    def benchmark_dir(self, names=()) -> str:
        """The benchmark data folder (`data_dir`, else $KNOWCODER_DATA_DIR, else ../shared/data), after
        checking that it holds every benchmark in `names` (FileNotFoundError naming the missing ones)."""
        return require_benchmarks(absolute(self.data_dir or default_data_dir()), names)

    def start_model(self) -> str:
        """The model the run starts from: the tiny model it creates, a model imported once from a GGUF file
        or an installed package (`base_model.import`, cached), or a model folder (`pretrain.model`)."""
        if self.tiny_model:
            return self.artifact("tiny_model")
        if self.base_model:
            from knowcoder_ray.train.hub import import_model

            started, source = time.perf_counter(), self.base_model.import_
            path = str(import_model(source, cache_dir=self.base_model.cache_dir))
            print(f"base model {source} -> {path} ({time.perf_counter() - started:.0f} s)", flush=True)
            return path
        return self.pretrain.model

    def corpus_config(self, name: Literal["understanding", "following"]) -> UnderstandingConfig | FollowingConfig:
        """The corpus phase's config: its section, with the data folder, the output and the library filled in
        (`library: benchmarks`: the classes of the benchmarks in the data folder, as the evaluation uses)."""
        section = getattr(self, name)
        library = f"{self.artifact('schema')}/schema.parquet" if section.library == "schema" else None
        kind = UnderstandingConfig if name == "understanding" else FollowingConfig
        return kind(**{"data_dir": self.benchmark_dir(self.following.benchmarks),
                       **section.model_dump(exclude_unset=True), "out": self.artifact(name), "library": library})

    def eval_config(self) -> EvalConfig:
        """The eval phase's config with the checkpoints it names (default: pretrained and merged, and base when
        the run starts from a tiny or imported model), their labels, the data and the output folders filled in."""
        e = self.eval
        which = e.checkpoints or (["base", "pretrained", "merged"] if self.tiny_model or self.base_model
                                  else ["pretrained", "merged"])
        settings = e.model_dump(exclude_unset=True, exclude={"checkpoints"})
        if "data_dir" not in settings and any(not d.startswith("records:") for d in e.datasets):
            settings["data_dir"] = self.benchmark_dir(e.datasets)
        return EvalConfig(**settings, labels=list(which), output_dir=self.artifact("eval"),
                          checkpoints=[self.start_model() if c == "base" else self.artifact(c) for c in which])

    def serve_config(self) -> ServeConfig:
        """The serve phase's config: the merged model and the run's schema library, then the section's keys."""
        job_keys = set(Serve.model_fields) - set(ServeConfig.model_fields)
        return ServeConfig(**{"model_dir": self.artifact("merged"), "library": f"{self.artifact('schema')}/schema.parquet",
                              **self.serve.model_dump(exclude_unset=True, exclude=job_keys)})


def validate(cfg: Any, source: str = "config") -> PipelineConfig:
    """The checked config; ConfigError with one line per problem, each `source: location: what`."""
    return parse(PipelineConfig, cfg, source)
