"""knowcoder-ray: KnowCoder code-style information extraction (schema library, corpora, training,
inference, evaluation, serving) on Ray. The Python front door is `KnowCoder` (knowcoder_ray.api) and one
function per phase, each taking its config model; each phase also has a `knowcoder` subcommand."""
from importlib import import_module

from knowcoder_ray.api import KnowCoder, load_schema

# phase function -> "module:name", imported on first use so `import knowcoder_ray` stays light;
# `train_model`, not `train`: the subpackage knowcoder_ray.train takes that attribute once imported
PHASES = {"connect": "connect:connect", "build_schema": "schema.build:build_schema", "deploy": "serve.run:deploy",
          "build_corpus": "data.corpora:build_corpus", "build_corpora": "data.corpora:build_corpora",
          "train_model": "train.run:train", "evaluate": "eval.evaluate:evaluate"}
__all__ = ["KnowCoder", "load_schema", *PHASES]


def __getattr__(name: str):
    if name in PHASES:
        module, attr = PHASES[name].split(":")
        return getattr(import_module(f"knowcoder_ray.{module}"), attr)
    raise AttributeError(f"module 'knowcoder_ray' has no attribute {name!r}")
