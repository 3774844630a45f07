"""knowcoder-ray: KnowCoder code-style information extraction (schema library, corpora, training,
inference, evaluation, serving) on Ray. The Python front door is `KnowCoder` (knowcoder_ray.api); each
phase also has a `knowcoder` subcommand."""
from knowcoder_ray.api import KnowCoder, load_schema

__all__ = ["KnowCoder", "load_schema"]
