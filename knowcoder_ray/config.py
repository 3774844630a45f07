"""The pipeline config (jobs/configs/*.yaml), validated before any cluster time is spent.

Every section is a pydantic model that refuses unknown keys, so a misspelled key fails with its location
instead of being ignored. Settings a section hands on to a library config (the training `set:` overrides,
`eval`, `serve`) are checked by that config's own loader, which stays the one list of its fields.
Unset keys keep the jobs' defaults: the jobs read the YAML mapping itself once it has passed.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

ARTIFACTS = {  # artifact -> path under workdir, the one layout every job and the demo check agree on
    "schema": "schema", "understanding": "corpus/understanding", "following": "corpus/following",
    "tiny_model": "models/tiny-base", "pretrained": "models/pretrained", "adapter": "models/sft-adapter",
    "merged": "models/merged", "checkpoints": "checkpoints", "eval": "eval",
}
Library = Literal["schema", "benchmarks"]  # the schema slice built by the run, or the benchmarks' own classes


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Name the first unknown key with the known ones (pydantic's own message does not list them)."""
        known = [f.alias or name for name, f in cls.model_fields.items()]
        unknown = [k for k in data if k not in known] if isinstance(data, dict) else []
        if unknown and cls.model_config["extra"] == "forbid":
            raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(known)})")
        return data


class Ray(Section):
    num_cpus: int | None = None


class BaseModelSource(Section):
    import_: str = Field(alias="import")  # a GGUF file or an installed model package (`knowcoder model import`)
    cache_dir: str | None = None


class TinyModel(Section):
    vocab_size: int | None = None


# aliased: the artifact `schema` would shadow BaseModel.schema
Paths = create_model("Paths", __base__=Section, **{f"{a}_": (str | None, Field(None, alias=a)) for a in ARTIFACTS})


class Schema(Section):
    dump: str
    corpus: list[str] | None = None
    types: list[str] | None = None
    event_root: str | None = None


class Understanding(Section):
    library: Library | None = None
    kelm: list[str] | None = None
    max_group: int | None = None
    args: list[str] | None = None


class Following(Section):
    library: Library | None = None
    benchmarks: list[str] | None = None
    universalner: list[str] | None = None
    instructie: list[str] | None = None
    lsee: list[str] | None = None
    shard_size: int | None = None
    distractors: int | None = None
    seed: int | None = None
    args: list[str] | None = None


class Train(Section):
    config: str                          # a TrainConfig YAML, or the name of a packaged one
    set: dict[str, Any] = {}             # TrainConfig overrides, dotted for nested keys


class Pretrain(Train):
    model: str | None = None             # the model folder, when neither tiny_model nor base_model is set


class Serve(Section):
    """The serve job's own keys; every other key is a ServeConfig field."""
    model_config = ConfigDict(extra="allow")
    enabled: bool | None = None
    host: str | None = None
    port: int | None = None
    proxy_location: str | None = None
    keep_running: bool | None = None
    smoke_text: str | None = None


class Eval(Section):
    """EvalConfig fields; the job names the checkpoints' folders, their labels and the output folder."""
    model_config = ConfigDict(extra="allow")
    checkpoints: list[Literal["base", "pretrained", "merged", "adapter"]] | None = None


class PipelineConfig(Section):
    workdir: str
    data_dir: str | None = None
    ray: Ray | None = None
    base_model: BaseModelSource | None = None
    tiny_model: TinyModel | None = None
    paths: Paths | None = None
    schema_: Schema | None = Field(None, alias="schema")
    understanding: Understanding | None = None
    following: Following | None = None
    pretrain: Pretrain | None = None
    sft: Train | None = None
    eval: Eval | None = None
    serve: Serve | None = None

    @model_validator(mode="after")
    def _handed_on(self) -> PipelineConfig:
        if self.pretrain is not None and not (self.pretrain.model or self.tiny_model or self.base_model):
            raise ValueError("pretrain.model: needed when neither tiny_model nor base_model is set")
        for phase, section in (("pretrain", self.pretrain), ("sft", self.sft)):
            if section is not None:
                from knowcoder_ray.train.cli import resolve_config

                path = _check(f"{phase}.config", resolve_config, section.config)
                _check(f"{phase}.set", _check_train, path, section.set, phase)
        if self.eval is not None:
            from knowcoder_ray.infer.engine import EngineConfig

            _check("eval", _check_eval, self.eval)
            _check("eval.engine_config", EngineConfig.from_dict, self.eval.model_extra.get("engine_config"))
        if self.serve is not None:
            _check("serve", _check_serve, self.serve.model_extra)
        return self


def _check(where: str, check, *args) -> Any:
    """Run a library config's own check; its error, whatever its kind, names the location."""
    try:
        return check(*args)
    except (ValueError, TypeError, SystemExit) as e:
        raise ValueError(f"{where}: {e}") from None


PLACEHOLDER = "<set by the job>"


def _check_train(path, settings: dict, phase: str) -> None:
    from knowcoder_ray.train.config import load_config

    filled = {"model": PLACEHOLDER, "data.path": PLACEHOLDER, "output_dir": PLACEHOLDER, "storage_path": PLACEHOLDER}
    load_config(path, set_items({**filled, **settings}), phase=phase)  # as `knowcoder train` reads them


def _check_eval(section: Eval) -> None:
    from knowcoder_ray.eval.evaluate import EvalConfig

    filled = [k for k in ("labels", "output_dir") if k in section.model_extra]
    if filled:
        raise ValueError(f"{filled[0]} is set by the job (`paths: {{eval: ...}}` moves the output)")
    EvalConfig.from_dict({**section.model_extra, "checkpoints": section.checkpoints or ["base"]})


def _check_serve(extra: dict) -> None:
    from knowcoder_ray.serve.config import ServeConfig

    known = [*Serve.model_fields, *(f.name for f in fields(ServeConfig))]
    unknown = [k for k in extra if k not in known]
    if unknown:  # ServeConfig's own message would not list the job's keys
        raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(known)})")
    ServeConfig.from_dict({"model_dir": PLACEHOLDER, "library": PLACEHOLDER, **extra})


def validate(cfg: Any, source: str = "config") -> PipelineConfig:
    """The checked config; ValueError with one line per problem, each `source: location: what`."""
    try:
        return PipelineConfig.model_validate(cfg)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            what = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where + ': ' if where else ''}{what}")
        raise ValueError("\n".join(lines)) from None


def set_items(settings: dict | None) -> list[str]:
    """{"data.seq_len": 512} -> ["data.seq_len=512"]: `knowcoder train --set` items, values as YAML."""
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in (settings or {}).items()]
