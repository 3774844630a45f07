"""The one config base: pydantic models that refuse unknown keys, read from YAML mappings, with the one
override syntax of every command (`--set key=value`, dotted for nested keys, the value read as YAML)."""
from __future__ import annotations

import copy
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound=BaseModel)
Positive = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _named(text: str) -> str:
    if not text.strip():  # "" would be the working directory, or the file system root once joined
        raise ValueError("is blank: name a path or URI")
    return text


Needed = Annotated[str, AfterValidator(_named)]  # a path or URI that must be given


class ConfigError(ValueError):
    """A config is invalid: one line per problem, each naming the key."""


class UsageError(ValueError):
    """A command's input cannot be used: `knowcoder` prints the message after the command's name, exit status 2."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Name the first unknown key with the known ones (pydantic's own message does not list them)."""
        known = [f.alias or name for name, f in cls.model_fields.items()]
        unknown = [k for k in data if k not in known] if isinstance(data, dict) else []
        if unknown:  # every Section forbids extra keys (model_config is inherited)
            raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(known)})")
        return data


def apply_overrides(d: dict, overrides: list[str] | dict | None) -> dict:
    """`["lr=1e-4", "data.seq_len=512"]` (or `{"data.seq_len": 512}`) applied to a copy of a config mapping."""
    d = copy.deepcopy(d or {})  # the caller's mapping stays as written
    for key, value in overrides.items() if isinstance(overrides, dict) else map(_split, overrides or ()):
        node = d
        *parents, last = str(key).strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a mapping")
        node[last] = value
    return d


def _split(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, value = item.split("=", 1)
    return key, _yaml(value, f"override {item!r}")  # numbers, booleans, lists as YAML reads them; never code


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:  # its own message spans several lines with a caret drawing
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or 'unreadable'}{at})") from None


def read_yaml(path: str) -> dict:
    from knowcoder_ray.storage import read_text

    data = _yaml(read_text(str(path)), str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def error_summary(errors: list[dict], source: str = "", sep: str = "\n") -> str:
    """Pydantic's errors as `source: dotted.location: message` each (empty parts left out, no "Value error, "
    prefix): the one summary of config, API argument and HTTP request validation errors."""
    return sep.join(": ".join(x for x in (source, ".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, "))
                              if x) for e in errors)


def parse(cls: type[M], data: Any, source: str = "") -> M:
    """`cls` validated from a mapping; ConfigError with one line per problem (`error_summary`)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(error_summary(e.errors(), source)) from None


def load(cls: type[M], path: str | None = None, overrides: list[str] | dict | None = None,
         flags: dict | None = None) -> M:
    """`cls` from a YAML file (or nothing), then `--set` overrides, then a command's own flags (dotted keys)."""
    return parse(cls, apply_overrides(apply_overrides(read_yaml(path) if path else {}, overrides), flags))


def whole_number(low: int = 1, high: int | None = None):
    """An argparse `type` for a count or port flag: a whole number from `low` (to `high`), else a usage
    error naming the flag, before anything starts."""
    import argparse

    def parse(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= (int(text) if high is None else high):
            bounds = f"of at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
        return int(text)
    return parse


def add_set_option(parser) -> None:
    """The `--set KEY=VALUE` option every command shares."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config key, dotted for nested keys, the value read as YAML (repeatable): "
                             "--set engine_config.max_new_tokens=64")
