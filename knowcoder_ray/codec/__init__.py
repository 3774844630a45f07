"""The KnowCoder code format, both directions: prompts and outputs (render) and the safe parser (parse)."""
from knowcoder_ray.codec.parse import ParseResult, Parser, split_items
from knowcoder_ray.codec.render import (
    RELEASED, STOP, TASK_KIND, TASKS, Layout, prompt_prefix, prompt_suffix, quote, render_class, render_output,
    render_prompt, wrap,
)

__all__ = [
    "RELEASED", "Layout", "STOP", "TASK_KIND", "TASKS", "ParseResult", "Parser", "prompt_prefix", "prompt_suffix",
    "quote", "render_class", "render_output", "render_prompt", "split_items", "wrap",
]
